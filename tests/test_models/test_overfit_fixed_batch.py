"""Each pre-training task can fit one fixed batch through the real algorithm, and the check
itself fails when a task cannot learn (frozen weights, a wrong target).

A task that cannot overfit a handful of fixed images (the same views, mask and targets at every
step, no augmentation between steps) has a frozen parameter, a detached path or a wrong target.
Each test trains the real ``HVPMTL`` / ``MCL`` built from the tiny configs with AdamW and the
post-step update (``after_train_step``, as ``TeacherAndPrototypesHook``) and asserts that the
task's unweighted loss falls below a stated fraction of its first value within a stated number
of steps. Thresholds were set from measured drops (the comments) with a wide margin.
"""
import pytest
import torch
from mmengine.registry import init_default_scope
from mmengine.runner import Runner, set_random_seed
from mmpretrain.registry import MODELS

from tests.helpers.mcl_tiny import tiny_mcl_cfg
from tests.helpers.tiny_configs import tiny_pretrain_cfg

pytestmark = pytest.mark.usefixtures('one_torch_thread')

STEPS = 25
#: (weights, task measured, fraction of the first loss it must fall below in STEPS steps);
#: measured end/start at seed 0 in the comments
CASES = {
    'mim': (dict(mim=1.0, swav=0, mlc=0, distill=0), 'mim', 0.75),         # 0.60
    'swav': (dict(mim=0, swav=1.0, mlc=0, distill=0), 'swav', 0.8),        # 0.62
    'mlc': (dict(mim=0, swav=0, mlc=1.0, distill=0), 'mlc', 0.6),          # 0.28
    'distill': (dict(mim=0, swav=0, mlc=1.0, distill=1.0), 'distill', 0.5),  # 0.006 of max
}


#: the module each task's head starts with: where a detached path would cut the backbone off
HEAD_INPUT = dict(mim=lambda m: m.mim_head.decoder, swav=lambda m: m.swav_head.projector,
                  mlc=lambda m: m.mlc_head.input_proj)


def _backbone_grad_norm(model, data, task):
    """Norm of the gradient that the task's own loss sends into the backbone (one batch).

    A head with capacity memorises a fixed batch from frozen random features, so a falling
    loss alone does not show that the backbone learns; this does."""
    model.train()
    model.after_train_step(before_training=True)
    model.zero_grad()
    model.loss(data['inputs'], data['data_samples'])[f'loss_{task}'].backward()
    grads = [p.grad.flatten() for p in model.backbone.parameters() if p.grad is not None]
    model.zero_grad()
    return float(torch.cat(grads).norm()) if grads else 0.0


def _fixed_batch(cfg, seed=0):
    init_default_scope('mmpretrain')
    set_random_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=seed)
    return model, model.data_preprocessor(next(iter(loader)), True)


def _overfit(model, data, key, steps=STEPS, lr=1e-3, corrupt=None):
    """Train ``steps`` AdamW steps on one batch; ``key``'s value at every step (``key``
    ``'loss'``: the sum of every ``loss*`` term)."""
    model.train()
    model.after_train_step(before_training=True)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0) if params else None
    values = []
    for _ in range(steps):
        inputs, samples = data['inputs'], data['data_samples']
        if corrupt is not None:
            inputs, samples = corrupt(inputs, samples)
        losses = model.loss(inputs, samples)
        total = sum(v for k, v in losses.items() if k.startswith('loss'))
        values.append(float(total if key == 'loss' else losses[key]))
        if optimizer is not None:
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
        model.after_train_step()
    return values


def _hvp(demo_world, weights, distill_momentum=None):
    cfg = tiny_pretrain_cfg('swin', data_root=demo_world / 'pretrain', batch_size=4)
    cfg.model.loss_weights = weights
    cfg.model.tasks.swav.freeze_prototypes_iters = 0
    cfg.model.tasks.distill.loss = dict(type='SymmetricKLDistillationLoss', temperature=0.07)
    if distill_momentum is not None:
        cfg.model.teacher.momentum = distill_momentum
    return _fixed_batch(cfg)


@pytest.mark.parametrize('task', list(CASES))
def test_each_task_overfits_a_fixed_batch(task, demo_world):
    weights, measured, fraction = CASES[task]
    model, data = _hvp(demo_world, weights, distill_momentum=0.9)
    if task in HEAD_INPUT:  # distillation starts at KL 0, where its gradient is 0
        assert _backbone_grad_norm(model, data, task) > 0, \
            f'{task}: no gradient reaches the backbone'
    values = _overfit(model, data, f'{measured}_unweighted')
    # distillation starts at 0 (the teacher is a copy of the student): measure its fall from
    # the gap the first steps open
    start = max(values[:3]) if task == 'distill' else values[0]
    assert values[-1] < fraction * start, (
        f'{task}: {start:.4f} -> {values[-1]:.4f} in {STEPS} steps, needs < '
        f'{fraction:.0%} of the start: {[round(v, 4) for v in values]}')


def test_all_four_tasks_together_each_fall(demo_world):
    """The paper's mix at the demo's weights: every term still falls on its own."""
    weights = dict(mim=1.0, swav=0.02, mlc=0.17, distill=10.0)
    model, data = _hvp(demo_world, weights, distill_momentum=0.9)
    model.train()
    curves = {t: [] for t in ('mim', 'swav', 'mlc')}
    model.after_train_step(before_training=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    for _ in range(STEPS):
        losses = model.loss(data['inputs'], data['data_samples'])
        for t in curves:
            curves[t].append(float(losses[f'{t}_unweighted']))
        optimizer.zero_grad()
        sum(v for k, v in losses.items() if k.startswith('loss')).backward()
        optimizer.step()
        model.after_train_step()
    for task, values in curves.items():
        assert values[-1] < 0.9 * values[0], (task, values[0], values[-1])


def test_mcl_overfits_a_fixed_batch(demo_world, tmp_path):
    cfg = tiny_mcl_cfg('swin', tmp_path, demo_world / 'pretrain')
    model, data = _fixed_batch(cfg)
    # the montage contrast of 4 images: 5.94 -> 3.96 (0.67) in 50 steps at seed 0
    values = _overfit(model, data, 'loss', steps=2 * STEPS)
    assert values[-1] < 0.8 * values[0], [round(v, 4) for v in values]
    frozen, data = _fixed_batch(cfg)
    _frozen(frozen)
    values = _overfit(frozen, data, 'loss', steps=2 * STEPS)
    assert not values[-1] < 0.8 * values[0], 'a frozen MCL must fail the check'


# ----------------------------------------------------------------- the detector fails
def _frozen(model):
    for p in model.parameters():
        p.requires_grad_(False)


def _fresh_targets(inputs, samples):
    """A wrong target: new random multi-label targets at every step."""
    for s in samples:
        s.gt_score = (torch.rand_like(s.gt_score) < 0.2).float()
    return inputs, samples


def _fresh_view0(inputs, samples):
    """A wrong MIM target: view 0 (what eq. 4 reconstructs) replaced by new noise."""
    return [torch.randn_like(inputs[0]), inputs[1]], samples


@pytest.mark.parametrize('task,breakage', [('mim', 'frozen'), ('swav', 'frozen'),
                                           ('mlc', 'frozen'), ('mlc', 'wrong_target'),
                                           ('mim', 'wrong_target')])
def test_a_task_that_cannot_learn_fails_the_check(task, breakage, demo_world):
    weights, measured, fraction = CASES[task]
    model, data = _hvp(demo_world, weights)
    corrupt = None
    if breakage == 'frozen':
        _frozen(model)
    else:
        corrupt = _fresh_targets if task == 'mlc' else _fresh_view0
    values = _overfit(model, data, f'{measured}_unweighted', corrupt=corrupt)
    assert not values[-1] < fraction * values[0], (task, breakage, values[0], values[-1])


@pytest.mark.parametrize('task', list(HEAD_INPUT))
def test_a_detached_path_to_the_backbone_is_caught(task, demo_world):
    """The loss of a head fed detached features still falls on a fixed batch (the head
    memorises it), so the gradient check above is what catches a detached path."""
    weights = CASES[task][0]
    model, data = _hvp(demo_world, weights)
    HEAD_INPUT[task](model).register_forward_pre_hook(
        lambda module, args: tuple(a.detach() for a in args))
    assert _backbone_grad_norm(model, data, task) == 0.0
