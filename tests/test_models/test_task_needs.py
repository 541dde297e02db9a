"""``HVPMTL(tasks=dict(...))``: each task declares what it needs (``TaskNeeds``), the model names
no task. The new form builds the same model as the deprecated per-task arguments; a task the
old model could not take without an edit (the teacher on both views, the mask without MIM) is
one module and one config entry; every registered task passes one step of the contract."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.model import BaseModule
from mmengine.registry import init_default_scope
from mmengine.runner import set_random_seed
from mmpretrain.registry import MODELS

from hvp_mtl.models.algorithms.legacy_args import LEGACY_RUN_ORDER
from hvp_mtl.models.algorithms.task_plan import run_order
from hvp_mtl.models.protocols import TaskNeeds, TaskStep, task_needs
from tests.helpers.step_reference import _hvpmtl_batch
from tests.helpers.tiny_configs import tiny_pretrain_cfg
from tests.helpers.tiny_tasks import (
    SWEEP,
    legacy_model_cfg,
    new_style_model_cfg,
    registered_task_types,
    task_sweep_cfg,
)

pytestmark = pytest.mark.usefixtures('one_torch_thread')
RUNNING_STATS = ('running_mean', 'running_var', 'num_batches_tracked')


def _build(model_cfg, seed=0):
    init_default_scope('mmpretrain')
    set_random_seed(seed)
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.after_train_step(before_training=True)
    return model.train()


def _batch(seed=1):
    return _hvpmtl_batch(torch.Generator().manual_seed(seed))


def test_the_new_form_builds_the_model_of_the_old_one():
    """Same modules, state-dict keys in the same order, the same numbers; the old form warns."""
    legacy = legacy_model_cfg(tiny_pretrain_cfg('swin', num_classes=12, montage=0.1).model)
    with pytest.warns(DeprecationWarning, match='tasks=dict'):
        old = _build(legacy)
    new_cfg = new_style_model_cfg(legacy)
    assert list(new_cfg['tasks']) == ['mim', 'swav', 'mlc', 'distill', 'montage']
    new = _build(new_cfg)
    assert new.task_names == old.task_names
    assert new.teacher.names == old.teacher.names == (
        'backbone', 'mlc_head', 'montage_neck', 'montage_cell_head')
    old_state, new_state = old.state_dict(), new.state_dict()
    assert list(new_state) == list(old_state)
    assert all(torch.equal(new_state[k], v) for k, v in old_state.items())
    inputs, samples = _batch()
    results = []
    for model in (old, new):
        torch.manual_seed(5)
        results.append(model.loss(inputs, samples))
    assert list(results[1]) == list(results[0])
    for key, value in results[0].items():
        assert torch.equal(results[1][key], value), key


def test_a_reordered_task_dict_builds_the_same_model_and_step():
    """Neither registration (keys, optimizer order) nor the run order follows the dict's
    order: mmengine's config dump sorts it (distill before mlc, whose tokens it reads)."""
    cfg = new_style_model_cfg(tiny_pretrain_cfg('swin', num_classes=12).model)
    tasks = cfg['tasks']
    reordered = dict(cfg, tasks={name: tasks[name] for name in sorted(tasks)})
    assert list(reordered['tasks'])[0] == 'distill'
    a, b = _build(cfg), _build(reordered)
    assert a.task_names == b.task_names == ('mim', 'swav', 'mlc', 'distill')
    assert list(b.state_dict()) == list(a.state_dict())
    assert [n for n, _ in b.named_parameters()] == [n for n, _ in a.named_parameters()]


def test_a_dumped_config_builds_the_same_run_order(tmp_path):
    cfg = Config(dict(model=new_style_model_cfg(tiny_pretrain_cfg('swin', num_classes=12).model)))
    cfg.dump(str(tmp_path / 'config.py'))
    dumped = Config.fromfile(str(tmp_path / 'config.py'))
    assert list(dumped.model.tasks) != list(cfg.model.tasks)  # the dump sorts the keys
    assert _build(dumped.model).task_names == _build(cfg.model).task_names


def test_an_extra_task_runs_after_the_task_whose_output_it_reads():
    class Writer(torch.nn.Module):
        writes = ('a', )

    class Reader(torch.nn.Module):
        reads = ('a', )

    tasks = dict(aa_reader=Reader(), mlc=torch.nn.Identity(), zz_writer=Writer())
    assert run_order(tasks, LEGACY_RUN_ORDER) == ('mlc', 'zz_writer', 'aa_reader')


def test_reads_and_stages_are_checked_at_build():
    cfg = new_style_model_cfg(tiny_pretrain_cfg('swin', num_classes=12).model)
    tasks = cfg['tasks']
    listed_first = dict(cfg, tasks=dict(distill=tasks['distill'], mlc=tasks['mlc']),
                        loss_weights=dict(mlc=0.001, distill=10.))
    assert _build(listed_first).task_names == ('mlc', 'distill')  # run after its writer
    with pytest.raises(ValueError, match=r"'distill' reads step.shared\['mlc_tokens'\]"):
        MODELS.build(dict(cfg, loss_weights=dict(cfg['loss_weights'], mlc=0.)))
    with pytest.raises(ValueError, match="tasks has no 'montage'"):
        MODELS.build(dict(cfg, loss_weights=dict(cfg['loss_weights'], montage=1.)))
    montage = new_style_model_cfg(tiny_pretrain_cfg('swin', num_classes=12, montage=0.1).model)
    montage['backbone'] = dict(montage['backbone'], out_indices=(3, ))
    with pytest.raises(ValueError, match=r'out_indices=\(0, 1, 2, 3\)'):
        MODELS.build(montage)


@MODELS.register_module(force=True)
class CrossViewTeacherTask(BaseModule):
    """A sixth task for the test, DINO/iBOT-like: each view's pooled (masked) student features
    regress the EMA teacher's pooled features of the other view. It needs what no built-in
    task needs: the teacher on both views, and the mask with MIM off."""

    needs_mask = True
    needs_teacher = True
    teacher_views = (0, 1)

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(in_channels, in_channels)

    def task_loss(self, step: TaskStep):
        assert step.mask is not None and sorted(step.teacher_views) == [0, 1]
        student = self.proj(step.feats.mean(dim=(2, 3)))
        with torch.no_grad():
            targets = torch.cat([step.teacher_views[v][-1].mean(dim=(2, 3)) for v in (1, 0)])
        loss = F.mse_loss(student.float(), targets.float())
        return loss, dict(target_norm=targets.norm(dim=1).mean())


def test_a_sixth_task_is_one_module_and_one_config_entry():
    cfg = new_style_model_cfg(tiny_pretrain_cfg('swin', num_classes=12).model)
    cfg['tasks'].pop('mim')  # the mask without MIM
    cfg['tasks']['cross_view'] = dict(type='CrossViewTeacherTask', in_channels=128)
    cfg['loss_weights'] = dict(cfg['loss_weights'], mim=0.)
    model = _build(cfg)
    assert model.mim_head is None and model.task_names[-1] == 'cross_view'
    assert model.plan.mask and model.plan.teacher_views == (0, 1)
    assert model.backbone.mask_token.requires_grad  # something is masked
    inputs, samples = _batch()
    losses = model.loss(inputs, samples)
    for key in ('loss_cross_view', 'cross_view_unweighted', 'cross_view_target_norm',
                'loss_distill'):
        assert torch.isfinite(losses[key]), key
    sum(v for k, v in losses.items() if k.startswith('loss_')).backward()
    assert model.backbone.mask_token.grad.abs().sum() > 0
    assert model.cross_view_head.proj.weight.grad.abs().sum() > 0
    with torch.no_grad():  # the teacher's views: batched, split per view
        view1 = model.teacher.backbone(inputs[1])[-1]
    step = model._step(inputs, samples)
    torch.testing.assert_close(step.teacher_views[1][-1], view1)
    assert step.teacher_stages is step.teacher_views[1]


def test_the_sweep_names_every_registered_task():
    assert sorted(SWEEP) == registered_task_types()


@pytest.mark.parametrize('task_type', sorted(SWEEP))
def test_every_registered_task_keeps_the_contract(task_type):
    """Build, one step, the contract's invariants: a finite scalar loss with a gradient,
    detached logs, declared writes present for later tasks, ``forward`` changing no state
    (BatchNorm statistics aside), ``after_train_step`` running after the step."""
    model = _build(task_sweep_cfg(task_type))
    name = model.task_names[-1]
    task = model.tasks[name]
    needs = task_needs(task)
    assert isinstance(needs, TaskNeeds)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inputs, samples = _batch()
    torch.manual_seed(3)
    step = model._step(inputs, samples)
    for other, module in model.tasks.items():
        loss, logs = module.task_loss(step)
        for key in task_needs(module).writes:
            assert key in step.shared, (other, key)
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.requires_grad
    assert all(not v.requires_grad for v in logs.values())
    loss.backward()
    grads = [p.grad for p in task.parameters() if p.requires_grad]
    assert not grads or any(g is not None and g.abs().sum() > 0 for g in grads)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(before[k], v)]
    assert all(k.endswith(RUNNING_STATS) for k in changed), changed
    model.after_train_step()
    if model.teacher is not None:
        assert model.teacher.steps.item() == 2
