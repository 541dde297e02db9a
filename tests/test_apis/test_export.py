"""Export of an HVP-MTL pre-training checkpoint to a downstream backbone file.

The export must hold only ``backbone.*`` tensors plus plain-type ``meta`` (so it
loads with ``torch.load(weights_only=True)`` without this package), drop
pre-training-only parts with a key report, and refuse a file without backbone.
"""

import pytest
import torch

from tests.helpers.exporter import export_in_process, load_plain, run_exporter

TINY_SWIN = dict(embed_dims=32, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])


_EXPORTS = {}


def pretrain_and_export(backbone, demo_world, tmp_path_factory):
    """A real tiny HVP-MTL pre-training run (2 iterations) and its default export.

    Cached for the session (the fine-tuning tests of every toolkit share it).

    Returns:
        dict: ``pretrain`` (the mmengine checkpoint), ``export`` (backbone
        file), ``report`` (the exporter's stdout), ``cfg`` (pre-training config).
    """
    if backbone not in _EXPORTS:
        from mmengine.runner import Runner

        from tests.helpers.tiny_configs import tiny_pretrain_cfg
        root = tmp_path_factory.mktemp(f'hvp_{backbone}')
        cfg = tiny_pretrain_cfg(backbone, root / 'pretrain', data_root=demo_world / 'pretrain',
                                max_iters=2, batch_size=2)
        Runner.from_cfg(cfg).train()
        ckpt = root / 'pretrain' / 'iter_2.pth'
        out = root / 'backbone.pth'
        error, report = export_in_process(ckpt, out)
        assert error is None, error
        _EXPORTS[backbone] = dict(pretrain=ckpt, export=out, report=report, cfg=cfg)
    return _EXPORTS[backbone]


@pytest.fixture(scope='session')
def swin_export(demo_world, tmp_path_factory):
    return pretrain_and_export('swin', demo_world, tmp_path_factory)


@pytest.fixture(scope='session')
def vit_export(demo_world, tmp_path_factory):
    return pretrain_and_export('vit', demo_world, tmp_path_factory)


@pytest.mark.slow
def test_export_is_backbone_only_and_loads_without_the_plugin(swin_export):
    proc = load_plain(swin_export['export'])
    assert proc.returncode == 0, proc.stderr
    ckpt = torch.load(swin_export['export'], weights_only=True)
    assert sorted(ckpt) == ['meta', 'state_dict']
    state = ckpt['state_dict']
    assert state and all(k.startswith('backbone.') for k in state)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert not any('mask_token' in k or 'relative_position_index' in k for k in state)
    # every stage of the tiny Swin is there
    depths = swin_export['cfg'].model.backbone.arch['depths']
    for i in range(len(depths)):
        assert any(k.startswith(f'backbone.stages.{i}.') for k in state)
    assert ckpt['meta']['hvp_mtl']['weights'] == 'teacher'
    assert ckpt['meta']['iter'] == 2


@pytest.mark.slow
def test_default_export_is_the_ema_teacher(swin_export):
    """Values equal the teacher's backbone, not the student's (they differ after 2 steps)."""
    import hvp_mtl  # noqa: F401  (allow-list for the full pre-training checkpoint)
    full = torch.load(swin_export['pretrain'], map_location='cpu', weights_only=True)['state_dict']
    state = torch.load(swin_export['export'], weights_only=True)['state_dict']
    differs = 0
    for key, value in state.items():
        name = key[len('backbone.'):]
        assert torch.equal(value, full[f'teacher.backbone.{name}']), key
        differs += not torch.equal(value, full[f'backbone.{name}'])
    assert differs > 0, 'teacher and student are identical: the test proves nothing'
    # the report names every group it kept and why it dropped the rest
    report = swin_export['report']
    for group in ('backbone.stages.0', 'backbone.stages.3', 'backbone.patch_embed'):
        assert group in report
    for why in ('mlc_head', 'swav_head', 'mim_head', 'pre-training only',
                'student backbone (exporting the teacher)', 'rebuilt by the model'):
        assert why in report


@pytest.mark.slow
def test_student_export(swin_export, tmp_path):
    import hvp_mtl  # noqa: F401
    from hvp_mtl.apis.checkpoint_export import export_checkpoint
    out = tmp_path / 'student.pth'
    export_checkpoint(str(swin_export['pretrain']), str(out), weights='student')
    full = torch.load(swin_export['pretrain'], map_location='cpu', weights_only=True)['state_dict']
    state = torch.load(out, weights_only=True)['state_dict']
    assert set(state) == set(torch.load(swin_export['export'], weights_only=True)['state_dict'])
    for key, value in state.items():
        assert torch.equal(value, full[key]), key


@pytest.mark.slow
def test_vit_export(vit_export):
    state = torch.load(vit_export['export'], weights_only=True)['state_dict']
    assert {'backbone.cls_token', 'backbone.pos_embed', 'backbone.ln1.weight'} <= set(state)
    assert 'backbone.mask_token' not in state
    assert any(k.startswith('backbone.layers.1.') for k in state)


def test_refuses_a_checkpoint_without_backbone(tmp_path):
    bad = tmp_path / 'heads_only.pth'
    torch.save({'state_dict': {'mlc_head.fc.weight': torch.zeros(2, 2)}, 'meta': {}}, bad)
    proc = run_exporter(bad, tmp_path / 'out.pth')
    assert proc.returncode != 0
    assert 'no backbone' in proc.stderr and str(bad) in proc.stderr
    assert not (tmp_path / 'out.pth').exists()


def test_teacher_requested_but_absent(tmp_path):
    ckpt = tmp_path / 'student_only.pth'
    torch.save({'state_dict': {'backbone.patch_embed.projection.weight': torch.zeros(2)}}, ckpt)
    error, _ = export_in_process(ckpt, tmp_path / 'out.pth')
    assert error is not None and '--weights student' in error and str(ckpt) in error
    error, report = export_in_process(ckpt, tmp_path / 'out.pth', '--weights', 'student')
    assert error is None and 'backbone.patch_embed' in report


def test_refuses_a_teacher_that_was_never_updated(tmp_path):
    ckpt = tmp_path / 'untrained_teacher.pth'
    weight = torch.zeros(2)
    torch.save({'state_dict': {'backbone.patch_embed.projection.weight': weight,
                               'teacher.backbone.patch_embed.projection.weight': weight,
                               'teacher.steps': torch.tensor(0)}}, ckpt)
    error, _ = export_in_process(ckpt, tmp_path / 'out.pth')
    assert error is not None and 'never updated' in error and str(ckpt) in error
    assert not (tmp_path / 'out.pth').exists()
