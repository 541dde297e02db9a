"""Analysis tools on real logs and checkpoints: loss curves of a resumed mmengine run, and the MIM
picture (input, mask, reconstruction) of a real HVP-MTL checkpoint."""
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from hvp_mtl.apis.loss_curves import plot_curves
from hvp_mtl.apis.work_dir_logs import training_records

ROOT = pathlib.Path(__file__).resolve().parents[2]

import hvp_mtl  # noqa: E402,F401  (weights_only allow-list for the resume)

pytestmark = pytest.mark.slow


class TwoLossModel(BaseModel):
    """Logs two task losses, like a multi-task pre-training does."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 1)

    def forward(self, inputs, targets, mode='tensor'):
        out = self.fc(inputs).squeeze(1)
        return dict(loss_fit=(out - targets).pow(2).mean(), loss_small=1e-2 * out.pow(2).mean())


def _train(work_dir, max_iters, resume):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, generator=g)
    loader = DataLoader(TensorDataset(x, x @ torch.tensor([1., -2., .5])),
                        batch_size=4,
                        shuffle=True,
                        collate_fn=lambda b: dict(inputs=torch.stack([i for i, _ in b]),
                                                  targets=torch.stack([t for _, t in b])))
    train_cfg = dict(by_epoch=False, max_iters=max_iters)
    runner = Runner(model=TwoLossModel(),
                    work_dir=str(work_dir),
                    experiment_name=f'curves{max_iters}',
                    train_dataloader=loader,
                    train_cfg=train_cfg,
                    resume=resume,
                    optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05)),
                    param_scheduler=dict(type='LinearLR', start_factor=0.1, by_epoch=False, end=6),
                    default_hooks=dict(logger=dict(type='LoggerHook', interval=1),
                                       checkpoint=dict(type='CheckpointHook',
                                                       interval=4,
                                                       by_epoch=False)),
                    log_processor=dict(by_epoch=False, window_size=1),
                    cfg=dict(train_cfg=train_cfg))
    runner.train()


@pytest.fixture(scope='module')
def resumed_run(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('curves') / 'run'
    _train(work_dir, 4, resume=False)
    import time
    time.sleep(1.1)  # a new launch folder (mmengine names them by the second)
    _train(work_dir, 10, resume=True)
    return work_dir


def test_loss_curves_cover_both_launches(resumed_run, tmp_path):
    records = training_records(str(resumed_run))
    assert [r['iter'] for r in records] == list(range(1, 11))  # resumed at 4, one series
    out = tmp_path / 'curves.png'
    panels = plot_curves(str(resumed_run), str(out), window=3)
    assert panels == ['loss_fit', 'loss_small', 'loss', 'lr']
    img = np.asarray(Image.open(out).convert('RGB'))
    assert img.shape[0] > 200 and img.shape[1] > 600
    assert img.std() > 10  # something is drawn
    lrs = [r['lr'] for r in records]
    assert lrs[0] < lrs[-1]  # the warm-up the panel shows


def test_loss_curves_cli_and_missing_logs(resumed_run, tmp_path):
    proc = subprocess.run([
        sys.executable,
        str(ROOT / 'tools' / 'analysis_tools' / 'plot_loss_curves.py'),
        str(resumed_run), '--out',
        str(tmp_path / 'c.png'), '--keys', 'loss', 'lr'
    ],
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '2 panels: loss, lr' in proc.stdout and (tmp_path / 'c.png').is_file()
    with pytest.raises(FileNotFoundError, match='scalars.json'):
        plot_curves(str(tmp_path), str(tmp_path / 'none.png'))


@pytest.fixture(scope='module')
def pretrained_hvp(demo_world, tmp_path_factory):
    """Two real HVP-MTL iterations on the demo world: (dumped config, checkpoint)."""
    from tests.helpers.tiny_configs import tiny_pretrain_cfg
    work_dir = tmp_path_factory.mktemp('hvp') / 'run'
    cfg = tiny_pretrain_cfg('swin',
                            work_dir=work_dir,
                            data_root=demo_world / 'pretrain',
                            max_iters=2,
                            batch_size=2,
                            img_size=64)
    Runner.from_cfg(cfg).train()
    cfg.dump(str(work_dir / 'hvp_tiny.py'))
    return work_dir / 'hvp_tiny.py', work_dir / 'iter_2.pth'


def test_mim_picture_from_a_real_checkpoint(pretrained_hvp, demo_world, tmp_path):
    from hvp_mtl.apis.mim_visualizer import load_model, read_image, reconstruct
    config, ckpt = pretrained_hvp
    images = sorted((demo_world / 'ade' / 'images' / 'validation').glob('*.jpg'))[:2]
    out = tmp_path / 'mim.png'
    proc = subprocess.run([
        sys.executable,
        str(ROOT / 'tools' / 'analysis_tools' / 'visualize_mim.py'),
        str(config),
        str(ckpt), *map(str, images), '--out',
        str(out)
    ],
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = [
        float(line.rsplit(' ', 1)[1]) for line in proc.stdout.splitlines() if 'L1 on masked' in line
    ]
    assert len(printed) == 2 and all(np.isfinite(printed))
    img = np.asarray(Image.open(out).convert('RGB'))
    assert img.shape[0] > 300 and img.shape[1] > 800  # two rows of four panels

    # the figure's reconstruction is the model's: recompute eq. (4) in-process with the same mask
    model, cfg = load_model(str(config), str(ckpt))
    rgb = read_image(str(images[0]), 64)
    mask = np.zeros((16, 16), dtype=np.float32)
    mask[:8] = 1  # the top half masked, at the 4-px patch grid
    rec, pixels, l1 = reconstruct(model, rgb, mask)
    assert rec.shape == (64, 64, 3) and pixels[:32].all() and not pixels[32:].any()
    x = (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() - model.data_preprocessor.mean) \
        / model.data_preprocessor.std
    with torch.no_grad():
        pred = model.mim_head(model.backbone(x, torch.from_numpy(mask)[None])[-1])
    loss = model.mim_head.loss_module(pred, x, torch.from_numpy(pixels)[None])
    assert l1 == pytest.approx(float(loss), rel=1e-5)
