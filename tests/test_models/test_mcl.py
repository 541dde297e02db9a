"""MCL (arXiv 2304.02010): montage, tile-to-cell geometry, loss, distributed
targets, real Runner training (tiny ResNet and Swin) and exact kill-and-resume.
"""
import json
import math
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope
from mmpretrain.registry import HOOKS, MODELS

from hvp_mtl.models.heads.mcl_cell_head import cut_cells
from hvp_mtl.models.losses import MultiLevelContrastiveLoss
from hvp_mtl.models.losses.multi_level_contrastive_loss import gather_targets
from hvp_mtl.models.utils.montage import build_montage, level_batch_sizes
from tests.helpers.mcl_tiny import IMG_SIZE, tiny_mcl_cfg
from tests.helpers.reference_impls import mcl_cells, mcl_head_loss, mcl_random_combine_img
from tests.helpers.resume_runs import assert_same_state, snapshot, train

RATIOS = (1, 2, 4, 8)


# ---------------------------------------------------------------- montage --
@pytest.mark.parametrize('ratio', [2, 4, 8])
def test_every_tile_is_its_source_downsampled_and_labelled(ratio):
    gen = torch.Generator().manual_seed(ratio)
    images = torch.randn(5, 3, 32, 32, generator=gen)
    montages, labels = build_montage(images, batch_size=3, ratio=ratio)
    assert montages.shape == (3, 3, 32, 32) and labels.shape == (3 * ratio * ratio, )
    side = 32 // ratio
    for m in range(3):
        for a in range(ratio):
            for b in range(ratio):
                tile = montages[m, :, a * side:(a + 1) * side, b * side:(b + 1) * side]
                source = images[labels[m * ratio * ratio + a * ratio + b]]
                # nearest-neighbour downsampling by an integer r keeps every r-th pixel
                assert torch.equal(tile, source[:, ::ratio, ::ratio])
    # randperm(r^2 n) mod N: every source index occurs floor or ceil(r^2 n / N) times
    expected = sorted((torch.arange(3 * ratio * ratio) % 5).tolist())
    assert sorted(labels.tolist()) == expected


def test_level_one_is_the_view_itself_and_batch_sizes_follow_the_paper():
    images = torch.randn(4, 3, 16, 16)
    montages, labels = build_montage(images, 4, 1)
    assert montages is images and labels.tolist() == [0, 1, 2, 3]
    assert level_batch_sizes(128, (1, 4, 16, 32)) == [128, 32, 8, 4]
    assert level_batch_sizes(4, (1, 4, 16, 32)) == [4, 1, 1, 1]
    with pytest.raises(ValueError, match='not divisible'):
        build_montage(torch.randn(2, 3, 20, 20), 1, 8)


@pytest.mark.parametrize('size,cell', [(224, 7), (IMG_SIZE, IMG_SIZE // 32)])
def test_every_tile_maps_to_exactly_one_cell_of_its_pyramid_level(size, cell):
    """Montages of constant images (value = source index + 1) pooled to the
    stride of level i's pyramid map (P5 for r=1 ... P2 for r=8): every cell
    the head cuts is constant and equals its tile's label + 1."""
    images = torch.arange(1., 7.).view(6, 1, 1, 1).expand(6, 1, size, size).contiguous()
    for level, ratio in enumerate(RATIOS):
        montages, labels = build_montage(images, 6 if ratio == 1 else 2, ratio)
        stride = 32 // 2**level  # P5, P4, P3, P2
        fmap = F.avg_pool2d(montages, stride)
        assert fmap.shape[-1] == cell * ratio
        cells = cut_cells(fmap, cell)
        assert cells.shape[0] == labels.numel()
        for c, label in zip(cells, labels):
            assert torch.equal(c, torch.full_like(c, float(label + 1)))


@pytest.mark.parametrize('backbone,size', [('r50', IMG_SIZE), ('swin', IMG_SIZE),
                                           ('r50', 224), ('swin', 224)])
def test_real_pyramid_maps_have_one_cell_per_tile(backbone, size, tmp_path, one_torch_thread):
    """The FPN maps of the real networks (narrow; at 224 px a depth-50 ResNet
    and a window-7 Swin with cell 7): level i's map P_{5-i} is ``cell * r_i``
    wide, so the head returns one embedding per tile."""
    cfg = tiny_mcl_cfg(backbone, tmp_path, tmp_path)
    if size == 224:
        if backbone == 'r50':
            cfg.model.backbone.depth = 50
            cfg.model.neck.in_channels = [32, 64, 128, 256]
        else:
            cfg.model.backbone.update(img_size=224, window_size=7)
        cfg.model.cell_head.cell_size = 7
    model = MODELS.build(cfg.model)
    maps = model.extract_feat(torch.randn(2, 3, size, size))
    cell = cfg.model.cell_head.cell_size
    assert [m.shape[-1] for m in maps[::-1]] == [cell * r for r in RATIOS]
    counts = [2, 1, 1, 1]
    images = torch.randn(sum(counts), 3, size, size)
    predictions = model._predict(images, counts)
    assert [p.shape[0] for p in predictions] == [n * r * r for n, r in zip(counts, RATIOS)]


def test_head_passes_differ_only_in_batch_statistics(tmp_path, one_torch_thread):
    """``head_pass='joint'`` and ``'per_level'``: the same embeddings with
    running statistics (eval), different ones with batch statistics (train)."""
    cfg = tiny_mcl_cfg('r50', tmp_path, tmp_path)
    joint = MODELS.build(cfg.model)
    per_level = MODELS.build(dict(cfg.model, head_pass='per_level'))
    per_level.load_state_dict(joint.state_dict())
    counts = [2, 1, 1, 1]
    images = torch.randn(sum(counts), 3, IMG_SIZE, IMG_SIZE)
    for model in (joint, per_level):
        model.eval()
    for a, b in zip(joint._predict(images, counts), per_level._predict(images, counts)):
        torch.testing.assert_close(a, b)
    for model in (joint, per_level):
        model.train()
    pairs = list(zip(joint._predict(images, counts), per_level._predict(images, counts)))
    assert all(a.shape == b.shape for a, b in pairs)
    assert not all(torch.allclose(a, b) for a, b in pairs)


def test_every_batch_norm_of_the_shipped_config_is_sync_bn(tmp_path):
    """Student and momentum encoder: SyncBN everywhere, built in (mmengine's
    ``sync_bn='torch'`` conversion fails on the encoder's buffer weights)."""
    from mmengine.model import convert_sync_batchnorm
    from torch.nn.modules.batchnorm import _BatchNorm
    model = MODELS.build(tiny_mcl_cfg('r50', tmp_path, tmp_path).model)
    norms = {n: type(m) for n, m in model.named_modules() if isinstance(m, _BatchNorm)}
    assert any(n.startswith('teacher.') for n in norms)
    assert any(n.startswith('predictors.') for n in norms)
    assert all(issubclass(t, torch.nn.SyncBatchNorm) for t in norms.values()), norms
    with pytest.raises(TypeError, match='as parameter'):
        convert_sync_batchnorm(MODELS.build(dict(
            tiny_mcl_cfg('r50', tmp_path, tmp_path).model,
            backbone=dict(type='ResNet', depth=18, stem_channels=8, base_channels=8,
                          out_indices=(0, 1, 2, 3)))), 'torch')


def test_montage_and_cells_equal_the_official_code():
    """Same random draws: our montage and tile labels equal the official
    ``random_combine_img``; our cells equal its head's cell split."""
    images = torch.randn(6, 3, 64, 64)
    for ratio in (2, 4, 8):
        torch.manual_seed(ratio)
        official = mcl_random_combine_img(images, 3, ratio)
        torch.manual_seed(ratio)
        ours = build_montage(images, 3, ratio)
        assert torch.equal(ours[0], official[0]) and torch.equal(ours[1], official[1])
    fmap = torch.randn(3, 5, 8, 8)
    assert torch.equal(cut_cells(fmap, 2), mcl_cells(fmap, 2))


def test_loss_equals_the_official_head_summed_over_levels():
    gen = torch.Generator().manual_seed(1)
    weights = (0.5, 0.25, 0.125, 0.125)
    preds = [F.normalize(torch.randn(n, 16, generator=gen), dim=1) for n in (4, 4, 4, 8)]
    targets = torch.randn(4, 16, generator=gen)
    labels = [torch.randint(0, 4, (p.shape[0], ), generator=gen) for p in preds]
    ours = MultiLevelContrastiveLoss(weights, 0.2)(preds, targets, labels)
    for i, (p, y, w) in enumerate(zip(preds, labels, weights)):
        official = mcl_head_loss(p, F.normalize(targets, dim=1), y, w, T=0.2)
        torch.testing.assert_close(ours[f'level_{i}'], official, rtol=1e-6, atol=0)


# ------------------------------------------------------------------- loss --
def _hand_ce(logits, label):
    """-log softmax(logits)[label] with plain Python floats."""
    top = max(logits)
    return -(logits[label] - top - math.log(sum(math.exp(v - top) for v in logits)))


def test_loss_equals_a_hand_computation():
    temperature, weights = 0.5, (0.5, 0.25)
    preds = [F.normalize(torch.tensor([[1., 0., 0.], [0.6, 0.8, 0.]]), dim=1),
             F.normalize(torch.tensor([[0., 1., 0.], [0., 0., 1.], [1., 1., 0.]]), dim=1)]
    targets = torch.tensor([[2., 0., 0.], [0., 0., 3.]])  # normalised inside
    labels = [torch.tensor([0, 1]), torch.tensor([1, 1, 0])]
    losses = MultiLevelContrastiveLoss(weights, temperature)(preds, targets, labels)
    unit = [[1., 0., 0.], [0., 0., 1.]]
    for level, (p, y, w) in enumerate(zip(preds, labels, weights)):
        terms = []
        for row, label in zip(p.tolist(), y.tolist()):
            logits = [sum(a * b for a, b in zip(row, t)) / temperature for t in unit]
            terms.append(_hand_ce(logits, label))
        expected = sum(terms) / len(terms) * 2 * temperature * w
        assert losses[f'level_{level}'].item() == pytest.approx(expected, rel=1e-6)


WORLD, LOCAL_B, DIM = 2, 3, 8
COUNTS = (3, 2, 1, 1)  # predictions per level and rank: n_i r_i^2 / a few


def _global_case():
    gen = torch.Generator().manual_seed(0)
    preds = [F.normalize(torch.randn(WORLD * n, DIM, generator=gen), dim=1) for n in COUNTS]
    targets = torch.randn(WORLD * LOCAL_B, DIM, generator=gen)
    # local labels in 0..B-1 for each rank's half of every level
    labels = [torch.randint(0, LOCAL_B, (WORLD * n, ), generator=gen) for n in COUNTS]
    return preds, targets, labels


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _rank_worker(rank, port, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                            world_size=WORLD)
    try:
        preds, targets, labels = _global_case()
        mine = lambda t, n: t[rank * n:(rank + 1) * n]  # noqa: E731
        local_targets = mine(targets, LOCAL_B)
        out = dict(
            gathered=gather_targets(F.normalize(local_targets, dim=1)),
            losses=MultiLevelContrastiveLoss()(
                [mine(p, n) for p, n in zip(preds, COUNTS)], local_targets,
                [mine(y, n) for y, n in zip(labels, COUNTS)]))
        torch.save(out, f'{out_dir}/rank{rank}.pt')
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.dist
def test_two_gloo_ranks_gather_targets_and_match_the_single_process_loss(tmp_path):
    start = 'fork' if 'fork' in mp.get_all_start_methods() else 'spawn'
    mp.start_processes(_rank_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD,
                       join=True, start_method=start)
    ranks = [torch.load(tmp_path / f'rank{r}.pt', weights_only=True) for r in range(WORLD)]
    preds, targets, labels = _global_case()
    for r in ranks:
        assert torch.equal(r['gathered'], F.normalize(targets, dim=1))
    # one process, the whole global batch: rank r's labels point into its block
    global_labels = [torch.cat([y[r * n:(r + 1) * n] + r * LOCAL_B for r in range(WORLD)])
                     for y, n in zip(labels, COUNTS)]
    single = MultiLevelContrastiveLoss()(preds, targets, global_labels)
    for key, value in single.items():
        # equal counts per rank: the mean of the ranks' means is the global mean
        mean = sum(r['losses'][key] for r in ranks) / WORLD
        assert mean.item() == pytest.approx(value.item(), rel=1e-6, abs=1e-7), key


# -------------------------------------------------------------- training --
@HOOKS.register_module(force=True)
class StudentGradAndTeacherEMACheck(Hook):
    """Records which student parameters receive a gradient, and checks after
    each EMA step that the teacher moved exactly by EMA from its previous
    state towards the updated student (buffers copied)."""

    priority = 'LOW'  # after TeacherAndPrototypesHook (ABOVE_NORMAL)

    def __init__(self):
        self.got_grad, self.checked = set(), 0

    def before_train(self, runner):
        for name, param in runner.model.named_parameters():
            param.register_post_accumulate_grad_hook(
                lambda p, n=name: self.got_grad.add(n) if p.grad is not None and
                torch.isfinite(p.grad).all() else None)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.before = {k: v.clone() for k, v in runner.model.teacher.state_dict().items()}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        model = runner.model
        k, total = runner.iter, runner.max_iters  # runner.iter: this iteration, 0-based
        m = 1 - (1 - 0.99) * (math.cos(math.pi * k / total) + 1) / 2
        assert model.teacher.momentum == pytest.approx(m, abs=1e-12)
        after = model.teacher.state_dict()
        for module in ('backbone', 'neck', 'cell_head'):
            student = getattr(model, module)
            for name, param in student.named_parameters():
                key = f'{module}.{name}'
                expected = self.before[key] + (1 - m) * (param.detach() - self.before[key])
                torch.testing.assert_close(after[key], expected, rtol=0, atol=1e-6)
            for name, buf in student.named_buffers():
                assert torch.equal(after[f'{module}.{name}'], buf), name
        self.checked += 1


@pytest.mark.slow
@pytest.mark.parametrize('backbone', ['r50', 'swin'])
def test_runner_trains_mcl_with_gradients_everywhere_and_ema_only_teacher(
        backbone, demo_world, tmp_path, one_torch_thread):
    cfg = tiny_mcl_cfg(backbone, tmp_path, demo_world / 'pretrain', max_iters=3)
    cfg.custom_hooks = [dict(type='StudentGradAndTeacherEMACheck')]
    runner = train(cfg)
    assert runner.iter == 3
    check = next(h for h in runner.hooks if isinstance(h, StudentGradAndTeacherEMACheck))
    assert check.checked == 3
    params = {n for n, _ in runner.model.named_parameters()}
    assert params and not any(n.startswith('teacher.') for n in params)
    assert params - check.got_grad == set()
    assert int(runner.model.teacher.steps) == 4  # copy before training + 3 EMA steps
    init_default_scope('mmpretrain')


@pytest.mark.slow
def test_kill_and_resume_is_exact(demo_world, tmp_path, one_torch_thread):
    """4 iterations straight vs killed after 3 (checkpoint at 2) and resumed."""
    root = demo_world / 'pretrain'
    expected = snapshot(train(tiny_mcl_cfg('r50', tmp_path / 'straight', root, max_iters=4)))
    cfg = tiny_mcl_cfg('r50', tmp_path / 'killed', root, max_iters=4)
    cfg.custom_hooks = [dict(type='KillAtIterHook', at=3)]
    assert train(cfg).iter == 2
    cfg = tiny_mcl_cfg('r50', tmp_path / 'killed', root, max_iters=4)
    cfg.resume = True
    resumed = train(cfg)
    assert resumed.iter == 4
    assert_same_state(expected, snapshot(resumed), 'MCL iteration loop')


# ------------------------------------------------------------- benchmark --
@pytest.mark.slow
def test_mcl_step_benchmark_prints_both_cases_and_the_ratio(tmp_path):
    from tests.helpers.scripts import run_script, table_rows
    out = tmp_path / 'mcl_step.json'
    stdout = run_script('tools/perf/mcl_step.py', '--backbone', 'tiny', '--batch', '4',
                        '--iters', '2', '--warmup', '0', '--threads', '1', '--out', str(out))
    rows = table_rows(stdout)
    assert rows['mcl'][2] == str(4 * (4 + 1 + 1 + 1)) and rows['byol'][2] == str(4 * 4)
    for name in ('mcl', 'byol'):
        assert all(math.isfinite(float(rows[name][i])) for i in (0, 3, 4)), rows[name]
    assert 'mcl / byol step time (paired per round)' in stdout
    result = json.loads(out.read_text())
    assert len(result['times']['mcl']) == len(result['times']['byol']) == 2
