"""One contract for every task: ``HVPMTL.loss`` is a loop over task modules,
``forward`` changes no state, the post-step hook does, a skipped step skips
it, and a new task is one module plus one config entry (real Runner, tiny
Swin, generated images)."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.model import BaseModule
from mmengine.runner import Runner
from mmpretrain.registry import HOOKS, MODELS

from hvp_mtl.models.protocols import AfterTrainStep, BatchExtender, TaskStep
from tests.helpers.resume_runs import scale_cfg, train
from tests.helpers.tiny_configs import tiny_pretrain_cfg
from tests.helpers.tiny_models import model_and_batch as _model_and_batch

pytestmark = pytest.mark.usefixtures('one_torch_thread')

#: buffers a training forward may change: BatchNorm statistics
RUNNING_STATS = ('running_mean', 'running_var', 'num_batches_tracked')


@pytest.fixture(scope='module')
def pretrain_root(demo_world):
    return demo_world / 'pretrain'


def _loss_before_the_task_loop(model, inputs, data_samples):
    """``HVPMTL.loss`` as it was written before the task modules (commit
    ad322d5), on the same heads: each head's own ``loss``, no ``task_loss``."""
    view0, view1 = inputs
    batch = view0.shape[0]
    stack = lambda field: torch.stack([s.get(field) for s in data_samples])  # noqa
    pyramid, labels, counts = model.montage_head.build_images(view1)
    images = torch.cat([view0, pyramid])
    mask0 = stack('mask')
    mask = torch.cat([mask0, mask0.new_zeros((images.shape[0] - batch, *mask0.shape[1:]))])
    stages = model.backbone(images, mask)
    feats = stages[-1][:2 * batch]
    with torch.no_grad():
        teacher_stages = model.teacher.backbone(view1)
    raw, logs = {}, {}
    raw['mim'] = model.mim_head.loss(feats[:batch], view0, mask0)
    raw['swav'], diagnostics = model.swav_head.loss(feats)
    logs.update({f'swav_{k}': v for k, v in diagnostics.items()})
    targets = stack('gt_score').float()
    tokens = model.mlc_head.decode(feats)
    logits = model.mlc_head.classify(tokens)
    raw['mlc'] = model.mlc_head.loss(logits, torch.cat([targets, targets]))
    logits, tokens = logits[batch:], tokens[batch:]
    diagnostics = model.mlc_head.diagnostics(logits.detach(), targets)
    logs.update({f'mlc_{k}': v for k, v in diagnostics.items()})
    label_embeddings = model.mlc_head.class_embeddings()
    with torch.no_grad():
        teacher_tokens = model.teacher.mlc_head.decode(teacher_stages)
        teacher_sim = model.mlc_head.label_similarity(teacher_tokens,
                                                      label_embeddings.detach())
    student_sim = model.mlc_head.label_similarity(tokens, label_embeddings)
    raw['distill'] = model.distill_head.loss_module(student_sim, teacher_sim)
    raw['montage'], levels = model.montage_head.loss(
        [s[batch:] for s in stages], counts, labels, model.teacher, teacher_stages)
    logs.update({f'montage_{k}': v for k, v in levels.items()})
    logs['teacher_momentum'] = feats.new_full((), model.teacher.momentum, dtype=torch.float32)
    losses = {f'loss_{t}': model.loss_weights[t] * v for t, v in raw.items()}
    losses.update({f'{t}_unweighted': v.detach() for t, v in raw.items()})
    losses.update(logs)
    return losses


def test_task_loop_is_bit_identical_to_the_code_it_replaced(pretrain_root, tmp_path):
    """All five tasks; same seed, same batch: every value equal to the bit."""
    cfg = tiny_pretrain_cfg('swin', tmp_path, pretrain_root, montage=0.1)
    model, data = _model_and_batch(cfg)
    model.train()
    assert model.task_names == ('mim', 'swav', 'mlc', 'distill', 'montage')
    assert isinstance(model.montage_head, BatchExtender)
    torch.manual_seed(1)  # the montage tiles are drawn at random
    ours = model.loss(**data)
    torch.manual_seed(1)
    reference = _loss_before_the_task_loop(model, **data)
    assert list(ours) == list(reference)  # same keys, same order (mmengine sums in order)
    for key, value in reference.items():
        assert torch.equal(ours[key], value), key


def test_forward_changes_no_state_the_post_step_method_does(pretrain_root, tmp_path):
    cfg = tiny_pretrain_cfg('swin', tmp_path, pretrain_root, montage=0.1)
    cfg.model.tasks.swav.update(queue_length=8, queue_start_iter=0)
    model, data = _model_and_batch(cfg)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(2):  # two micro-batches of one step (gradient accumulation)
        total = sum(v for k, v in model.loss(**data).items() if k.startswith('loss'))
        total.backward()
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all(k.endswith(RUNNING_STATS) for k in changed), changed
    assert isinstance(model, AfterTrainStep) and isinstance(model.swav_head, AfterTrainStep)
    model.after_train_step()
    head, batch = model.swav_head, data['inputs'][0].shape[0]
    assert head.iteration.item() == 2  # both forwards count
    assert head.queue_count.item() == min(8, 2 * batch)
    assert model.teacher.steps.item() == 2  # the copy, then one EMA step
    assert not torch.equal(before['swav_head.queue'], head.queue)


@HOOKS.register_module(force=True)
class RecordSwAVEmbeddingsHook(Hook):
    """Copy the SwAV head's embeddings of every training iteration."""

    def __init__(self) -> None:
        self.embeddings = {}

    def before_train(self, runner) -> None:
        def record(module, args, output):  # the head's embeddings, as it computes them
            self.embeddings[runner.iter] = F.normalize(output.detach(), dim=1)

        runner.model.swav_head.projector.register_forward_hook(record)


def test_a_skipped_step_leaves_queue_counter_and_teacher_untouched(pretrain_root, tmp_path):
    """NaN at 0-based iteration 2 of 4; the queue is filled from iteration 1."""
    cfg = scale_cfg(tmp_path, pretrain_root, iters=4)
    cfg.custom_hooks += [dict(type='InjectNonFiniteHook', iters=[2], record=True),
                         dict(type='RecordSwAVEmbeddingsHook')]
    runner = train(cfg)
    hooks = {type(h).__name__: h for h in runner.hooks}
    states = hooks['InjectNonFiniteHook'].states
    for key in ('swav_head.queue', 'swav_head.queue_count', 'swav_head.iteration',
                'swav_head.prototypes.weight', 'teacher.steps',
                'teacher.backbone.patch_embed.projection.weight'):
        assert torch.equal(states[2]['model'][key], states[3]['model'][key]), key
    head = runner.model.swav_head
    assert head.iteration.item() == 3  # the skipped forward does not count
    embeddings = hooks['RecordSwAVEmbeddingsHook'].embeddings
    assert torch.isnan(embeddings[2]).all()  # the NaN step's embeddings...
    assert torch.isfinite(head.queue).all()  # ...were dropped, not queued a step later
    batch = embeddings[3].shape[0] // 2
    for view in range(2):  # newest first: iteration 3, then iteration 1
        rows = slice(view * batch, (view + 1) * batch)
        assert torch.equal(head.queue[view, :batch], embeddings[3][rows])
        assert torch.equal(head.queue[view, batch:2 * batch], embeddings[1][rows])


@MODELS.register_module(force=True)
class FeatureVarianceTask(BaseModule):
    """A sixth task for the test: a linear map whose output variance is pulled
    to 1 (VICReg's variance term on the pooled last stage), with a counter
    that changes only after the optimizer step."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_channels, 8)
        self.register_buffer('steps', torch.zeros((), dtype=torch.long))

    def task_loss(self, step: TaskStep):
        z = self.proj(step.feats.mean(dim=(2, 3)))
        std = z.float().var(dim=0).add(1e-4).sqrt()
        return torch.relu(1 - std).mean(), dict(std=std.mean().detach())

    def after_train_step(self, before_training: bool = False) -> None:
        if not before_training:
            self.steps += 1


def test_a_new_task_is_one_module_and_one_config_entry(pretrain_root, tmp_path):
    cfg = tiny_pretrain_cfg('swin', tmp_path, pretrain_root, max_iters=3)
    width = cfg.model.tasks.swav.in_channels
    cfg.model.tasks.variance = dict(type='FeatureVarianceTask', in_channels=width)
    runner = Runner.from_cfg(cfg)
    initial = runner.model.variance_head.proj.weight.detach().clone()
    runner.train()
    model, hub = runner.model, runner.message_hub
    assert model.task_names[-1] == 'variance' and model.loss_weights['variance'] == 1.0
    for key in ('loss_variance', 'variance_unweighted', 'variance_std'):
        values = hub.get_scalar(f'train/{key}').data[0]
        assert len(values) == 3 and all(math.isfinite(v) for v in values), key
    assert model.variance_head.steps.item() == 3  # called by the post-step hook
    assert not torch.equal(model.variance_head.proj.weight, initial)  # trained
    off = MODELS.build(dict(cfg.model, loss_weights=dict(cfg.model.loss_weights, variance=0.)))
    assert off.variance_head is None and 'variance' not in off.task_names


def test_the_post_step_hook_keeps_its_former_name():
    """``AfterTrainStepHook`` is what the configs' ``TeacherAndPrototypesHook`` builds."""
    from hvp_mtl.engine.hooks import AfterTrainStepHook, TeacherAndPrototypesHook
    assert TeacherAndPrototypesHook is AfterTrainStepHook
    for name in ('AfterTrainStepHook', 'TeacherAndPrototypesHook'):
        assert isinstance(HOOKS.build(dict(type=name)), AfterTrainStepHook), name
