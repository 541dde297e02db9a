"""tools/train.py and tools/test.py: errors that say what to do, and ``--vis``.

- an unknown top-level ``--cfg-options`` key is refused with the closest keys, unless
  ``--cfg-allow-new-keys`` (then the real Runner trains with it in the dumped config);
- a config path that does not exist names near configs under ``configs/``;
- ``--vis`` adds mmengine's backend to the visualizer (TensorBoard built and written for real);
  a missing optional package (wandb, mlflow) is one clear line.
"""
import importlib.util
import pathlib
import subprocess
import sys

import pytest
from mmengine.config import Config

from hvp_mtl.apis.cli_checks import add_vis_backends, check_cfg_option_keys, find_config
from tests.helpers.dist_launch import launch_env as _env
from tests.helpers.dist_launch import write_cfg as _write_cfg

ROOT = pathlib.Path(__file__).resolve().parents[2]
TRAIN, TEST = ROOT / 'tools' / 'train.py', ROOT / 'tools' / 'test.py'
FINETUNE = ROOT / 'configs' / 'demo' / 'swin-demo_cls.py'
PRETRAIN = ROOT / 'configs' / 'demo' / 'hvp_swin-demo_pretrain.py'


def load_tool(path):
    spec = importlib.util.spec_from_file_location(path.stem + '_tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exit_message(tool, argv):
    """The ``SystemExit`` message of ``tool.main(argv)`` (it must exit before any run)."""
    with pytest.raises(SystemExit) as exc:
        load_tool(tool).main(list(map(str, argv)))
    return str(exc.value.code)


def test_a_misspelt_top_level_key_is_refused_with_suggestions():
    msg = exit_message(TRAIN, [FINETUNE, '--cfg-options', 'chekpoint=/data/backbone.pth'])
    assert msg.startswith("error: --cfg-options: the config has no top-level key 'chekpoint' "
                          "(did you mean 'checkpoint'?)"), msg
    assert '--cfg-allow-new-keys' in msg
    msg = exit_message(TEST, [FINETUNE, 'ckpt.pth', '--cfg-options', 'test_dataloder.x=1'])
    assert "'test_dataloder' (did you mean 'test_dataloader'" in msg, msg


def test_nested_and_known_keys_pass_and_the_opt_in_allows_new_ones():
    cfg = Config.fromfile(str(FINETUNE))
    check_cfg_option_keys(cfg, {'checkpoint': 'x', 'model.backbone.drop_path_rate': 0.})
    check_cfg_option_keys(cfg, None)
    with pytest.raises(ValueError, match="'zzz_unrelated' \\(no similar key\\)"):
        check_cfg_option_keys(cfg, {'zzz_unrelated': 1})
    check_cfg_option_keys(cfg, {'zzz_unrelated': 1}, allow_new=True)


def test_keys_the_runner_reads_with_a_default_pass_on_a_config_without_them():
    """The demo sets ``randomness.seed`` on mmdet/mmseg configs that have no ``randomness``."""
    cfg = Config.fromfile(str(FINETUNE))
    for key in ('randomness', 'env_cfg', 'load_from', 'resume', 'compile'):
        cfg.pop(key, None)
        check_cfg_option_keys(cfg, {f'{key}.x' if key in ('randomness', 'env_cfg') else key: 0})
    with pytest.raises(ValueError, match="'randomnes' \\(did you mean 'randomness'"):
        check_cfg_option_keys(cfg, {'randomnes.seed': 0})


def test_a_missing_config_names_near_configs():
    msg = exit_message(TRAIN, ['configs/pretrain/hvp_swin-x.py'])
    assert msg.startswith('error: config file not found: configs/pretrain/hvp_swin-x.py; near '
                          'names under configs/: '), msg
    assert 'configs/pretrain/hvp_swin-s.py' in msg and 'configs/pretrain/hvp_swin-t.py' in msg
    with pytest.raises(FileNotFoundError, match='configs/demo/swin-demo_cls.py'):
        find_config('configs/demo/swin_demo-cls.py')
    assert find_config(str(FINETUNE)) == str(FINETUNE)
    msg = exit_message(TEST, ['configs/finetune/mmdet/mask-rcnn_swin.py', 'ckpt.pth'])
    assert 'configs/finetune/mmdet/mask-rcnn_swin-b-p4-w7_hvp-pre_fpn_ms-crop-1x_coco.py' in msg


def test_vis_tensorboard_adds_a_backend_that_writes_events(tmp_path):
    from mmengine.visualization import Visualizer
    from mmpretrain.registry import VISUALIZERS
    cfg = Config.fromfile(str(FINETUNE))
    before = [b['type'] for b in cfg.visualizer.vis_backends]
    assert 'TensorboardVisBackend' not in before
    add_vis_backends(cfg, ['tensorboard'])
    add_vis_backends(cfg, ['tensorboard'])  # idempotent
    assert [b['type'] for b in cfg.visualizer.vis_backends] == before + ['TensorboardVisBackend']
    vis = VISUALIZERS.build(dict(cfg.visualizer, name='vis_cli_test', save_dir=str(tmp_path)))
    vis.add_scalars({'loss': 0.5}, step=1)
    vis.close()
    assert list(tmp_path.rglob('events.out.tfevents.*'))
    assert list(tmp_path.rglob('scalars.json'))
    Visualizer._instance_dict.pop('vis_cli_test', None)


@pytest.mark.parametrize('name', ['wandb', 'mlflow'])
def test_vis_of_a_missing_optional_package_is_one_clear_line(name):
    if importlib.util.find_spec(name) is not None:
        cfg = Config.fromfile(str(PRETRAIN))
        add_vis_backends(cfg, [name], run_name='demo')
        assert cfg.visualizer.vis_backends[-1]['type'].lower().startswith(name[:5])
        return
    msg = exit_message(TRAIN, [PRETRAIN, '--vis', name])
    assert msg == (f"error: --vis {name} needs the optional package '{name}', which is not "
                   f"installed: pip install {name} (or pip install -e .[{name}])"
                   + (', then `wandb login`' if name == 'wandb' else '')), msg


@pytest.mark.slow
def test_opt_in_new_key_trains_with_the_real_runner(demo_world, tmp_path):
    """2 iterations of a tiny pre-training: the refused key, then the same with the opt-in;
    the run logs to scalars.json and TensorBoard (the inherited visualizer)."""
    cfg = _write_cfg(tmp_path, demo_world / 'pretrain', iters=2)
    work = tmp_path / 'work'
    base = [sys.executable, str(TRAIN), str(cfg), '--work-dir', str(work), '--cfg-options',
            'run_note=first-day']
    refused = subprocess.run(base, cwd=ROOT, env=_env(), capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode == 1 and 'run_note' in refused.stderr and not work.exists()
    proc = subprocess.run(base + ['--cfg-allow-new-keys'], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / 'iter_2.pth').is_file()
    dumped = Config.fromfile(str(work / cfg.name))
    assert dumped.run_note == 'first-day'
    assert list(work.rglob('events.out.tfevents.*')) and list(work.rglob('scalars.json'))


def test_a_mistyped_list_or_dictionary_names_near_files(demo_world):
    """The dataset itself, built for real on the demo world."""
    from hvp_mtl.datasets import TencentMLImages
    root = demo_world / 'pretrain'
    with pytest.raises(FileNotFoundError, match=r'list file \(ann_file\) not found: .*trian\.txt; '
                       r'near names in .*: train\.txt'):
        TencentMLImages(ann_file='trian.txt', data_root=str(root), data_prefix='images/',
                        dictionary_file='dictionary_and_semantic_hierarchy.txt', pipeline=[])
    with pytest.raises(FileNotFoundError, match=r'class dictionary \(dictionary_file\) not found: '
                       r'.*dictionary\.txt; near names in .*dictionary_and_semantic_hierarchy'):
        TencentMLImages(ann_file='train.txt', data_root=str(root), dictionary_file='dictionary.txt')
    with pytest.raises(FileNotFoundError, match='does not exist either: check data_root'):
        TencentMLImages(ann_file='train.txt', data_root=str(root / 'nowhere'),
                        dictionary_file='dictionary_and_semantic_hierarchy.txt')


@pytest.mark.slow
def test_train_py_prints_one_line_for_a_mistyped_list(demo_world, tmp_path):
    cfg = _write_cfg(tmp_path, demo_world / 'pretrain', iters=2)
    proc = subprocess.run([sys.executable, str(TRAIN), str(cfg), '--work-dir',
                           str(tmp_path / 'work'), '--cfg-options',
                           'train_dataloader.dataset.ann_file=trian.txt'],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and 'trian.txt' in last and 'train.txt' in last, last
    assert 'Traceback' not in proc.stderr
