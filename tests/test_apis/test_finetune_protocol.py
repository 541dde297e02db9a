"""The evidence protocol's fine-tune rules: splits and subsets from train only, the schedule and
lr rules, and the LP-FT options in two real mmpretrain fine-tunes."""
import pathlib

import pytest
import torch

from hvp_mtl.apis.demo import Demo
from hvp_mtl.apis.demo.finetune_protocol import (
    choose_lr,
    choose_schedule,
    per_class_subset,
    protocol_options,
    read_ann,
    stratified_split,
    write_ann,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROWS = [(f'c{c}/img_{i:03d}.jpg', c) for i in range(40) for c in range(4) if i < 10 * (c + 1)]


def test_split_is_stratified_seeded_and_disjoint():
    fit, held = stratified_split(ROWS, 0.2, seed=3)
    assert sorted(fit + held) == sorted(ROWS) and not set(fit) & set(held)
    for c in range(4):  # 10, 20, 30, 40 images: 2, 4, 6, 8 held out
        assert sum(r[1] == c for r in held) == 2 * (c + 1)
    assert stratified_split(ROWS, 0.2, seed=3) == (fit, held)
    assert stratified_split(ROWS, 0.2, seed=4)[1] != held
    assert [r for r in ROWS if r in fit] == fit  # order kept


def test_low_label_subset_comes_from_the_fit_part_only():
    fit, held = stratified_split(ROWS, 0.2, seed=0)
    sub = per_class_subset(fit, 10, seed=0)
    assert not set(sub) & set(held)
    assert [sum(r[1] == c for r in sub) for c in range(4)] == [8, 10, 10, 10]  # class 0 has 8


def test_schedule_rule():
    assert choose_schedule({16: 60.0, 32: 60.5, 64: 70.0})[0] == 16
    assert choose_schedule({16: 50.0, 32: 60.0, 64: 60.9})[0] == 32
    epochs, why = choose_schedule({16: 50.0, 32: 60.0, 64: 70.0})
    assert epochs == 64 and 'no schedule' in why


def test_lr_rule_prefers_the_smaller_lr_on_a_tie():
    assert choose_lr({3e-4: 50.0, 1e-3: 55.0, 3e-3: 40.0}) == 1e-3
    assert choose_lr({3e-4: 55.0, 1e-3: 55.0, 3e-3: 40.0}) == 3e-4


def test_bad_list_file_line_is_named(tmp_path):
    path = tmp_path / 'train.txt'
    path.write_text('a/1.jpg 0\nbroken line here\n')
    with pytest.raises(ValueError, match=r'train.txt:2: expected'):
        read_ann(path)


def _state(path):
    state = torch.load(path, map_location='cpu', weights_only=True)
    return state.get('state_dict', state)


@pytest.mark.slow
@pytest.mark.integration
def test_lp_then_ft_on_a_held_out_split(demo_world, tmp_path):
    """Stage 1 trains the head alone (every backbone tensor as loaded), evaluated on the held-out
    part of train; stage 2 starts from stage 1's weights and trains everything."""
    demo = Demo(str(tmp_path / 'work'), str(demo_world), 'tiny')
    rows = read_ann(demo_world / 'cls' / 'meta' / 'train.txt')
    fit, held = stratified_split(rows, 0.25, seed=0)
    fit_ann = write_ann(fit, str(tmp_path / 'splits' / 'fit.txt'))
    held_ann = write_ann(held, str(tmp_path / 'splits' / 'held.txt'))
    lp, ft = tmp_path / 'lp', tmp_path / 'ft'
    demo.finetune('lp', 'cls', str(lp), None, 0, extra_opts=protocol_options(
        fit_ann, 2, 1e-3, held_ann, 'train', linear_probe=True))
    demo.finetune('ft', 'cls', str(ft), None, 0, extra_opts=protocol_options(
        fit_ann, 2, 1e-3, held_ann, 'train', load_from=str(lp / 'epoch_2.pth')))
    after_lp, after_ft = _state(lp / 'epoch_2.pth'), _state(ft / 'epoch_2.pth')
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import set_random_seed
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(str(ROOT / 'configs' / 'demo' / 'swin-demo_cls.py'))
    cfg.model.backbone.init_cfg = None
    set_random_seed(0)
    random_init = MODELS.build(cfg.model)
    random_init.init_weights()
    start = random_init.state_dict()
    backbone = [k for k in after_lp if k.startswith('backbone.')]
    assert backbone and all(torch.equal(after_lp[k], start[k]) for k in backbone)
    assert not torch.equal(after_lp['head.fc.weight'], start['head.fc.weight'])
    assert any(not torch.equal(after_ft[k], after_lp[k]) for k in backbone)
    log = (ft / 'last_checkpoint').read_text()
    assert log.strip().endswith('epoch_2.pth')


def test_options_refuse_a_schedule_without_its_cosine():
    with pytest.raises(ValueError, match='at least 2 epochs'):
        protocol_options('fit.txt', 1, 1e-3)
    opts = protocol_options('fit.txt', 16, 3e-4, 'held.txt', 'train')
    assert 'val_dataloader.dataset.ann_file=held.txt' in opts
    assert 'test_dataloader.dataset.data_prefix=train' in opts
    assert 'optim_wrapper.optimizer.lr=0.0003' in opts and 'param_scheduler.1.end=16' in opts
