"""Demo-scale evidence for eq. (5)-(6): pre-train with and without distillation, several seeds.

The runs, evaluation and summary behind ``tools/analysis_tools/distillation_demo.py``.

Every run is ``tools/train.py configs/demo/hvp_swin-demo_pretrain.py`` (the demo's pre-training
config, ``DEMO_WORLD/pretrain``), with the same iterations and schedule in every arm:

* ``distill``: the paper config's reading (eq. 5 per scoring token, eq. 6 at T = 0.07; the demo
  config itself ships the literal reading since these runs measured it best at 64 classes);
* ``no_distill``: ``model.loss_weights.distill=0`` (Table 5's "w/o distillation");
* ``literal``: eq. (5) as ``Q0 (x) g`` with ``g`` the mean token and eq. (6) at T = 1;
* ``scoring_token_t1``: eq. (5) per scoring token with eq. (6) at T = 1 (separates the two
  changes between ``distill`` and ``literal``).

Each checkpoint is then scored on the demo world's ``val.txt`` (the validation pipeline of the
pre-training configs, at 64 px): multi-label mAP of the untrained model (same seed), of the
student and, where one exists, of the EMA teacher, and teacher-student agreement: top-1
agreement of the two decoders' logits (in %), the mean per-image Pearson correlation of their
logits over the classes, and the mean symmetric KL of their ``S(., Q0)`` at T = 0.07 (scoring
tokens, the same measure for every arm).
Finished runs are skipped when the command is repeated (``--no-train``: evaluate only those).
Results (per run, and mean +- sample standard deviation per arm) go to ``--out`` and to stdout
as a markdown table.
"""
import os
import os.path as osp
import statistics
import subprocess
import sys

import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = 'configs/demo/hvp_swin-demo_pretrain.py'
ARMS = dict(distill=['model.tasks.distill.loss.temperature=0.07',
                     'model.tasks.mlc.similarity=scoring_token'],
            no_distill=['model.loss_weights.distill=0'],
            literal=['model.tasks.distill.loss.temperature=1.0',
                     'model.tasks.mlc.similarity=mean_token'],
            scoring_token_t1=['model.tasks.distill.loss.temperature=1.0',
                              'model.tasks.mlc.similarity=scoring_token'])
AGREEMENT_TEMPERATURE = 0.07

__all__ = ['CONFIG', 'ARMS', 'train', 'evaluate', 'summarise', 'markdown']


def train(arm: str, seed: int, iters: int, data_root: str, work_dir: str) -> str:
    """Run one pre-training (skipped if its checkpoint exists); return the checkpoint."""
    ckpt = osp.join(work_dir, f'iter_{iters}.pth')
    if osp.isfile(ckpt):
        return ckpt
    warmup = max(1, iters // 10)
    opts = [f'train_dataloader.dataset.data_root={data_root}/pretrain/', f'randomness.seed={seed}',
            f'train_cfg.max_iters={iters}', f'param_scheduler.0.end={warmup}',
            f'param_scheduler.1.begin={warmup}', f'param_scheduler.1.T_max={iters - warmup}',
            f'param_scheduler.1.end={iters}', f'default_hooks.checkpoint.interval={iters}',
            f'model.tasks.swav.freeze_prototypes_iters={max(1, iters // 15)}'] + ARMS[arm]
    env = dict(os.environ, PYTHONPATH=ROOT)
    with open(osp.join(work_dir, 'train.log'), 'w') as log:
        subprocess.run([sys.executable, 'tools/train.py', CONFIG, '--work-dir', work_dir,
                        '--cfg-options', *opts], cwd=ROOT, env=env, stdout=log,
                       stderr=subprocess.STDOUT, check=True)
    return ckpt


@torch.no_grad()
def evaluate(ckpt: str, work_dir: str, data_root: str, seed: int) -> dict:
    """Student/teacher mAP and teacher-student agreement on ``val.txt``, and
    the mAP of the untrained model (built and initialised with ``seed``)."""
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.evaluator import Evaluator
    from mmengine.runner import load_checkpoint, set_random_seed
    from mmpretrain.registry import DATASETS, MODELS
    from mmpretrain.structures import DataSample

    import hvp_mtl  # noqa: F401
    from hvp_mtl.evaluation import SoftTargetAveragePrecision
    from hvp_mtl.models.losses import SymmetricKLDistillationLoss

    cfg = Config.fromfile(osp.join(work_dir, osp.basename(CONFIG)))
    set_random_seed(seed)
    untrained = MODELS.build(cfg.model)
    untrained.init_weights()
    untrained.eval()
    model = MODELS.build(cfg.model)
    load_checkpoint(model, ckpt, map_location='cpu', strict=True)
    model.eval()
    size = cfg.img_size
    pipeline = [dict(type='LoadImageFromFile'),
                dict(type='ResizeEdge', scale=size * 256 // 224, edge='short', backend='pillow',
                     interpolation='bicubic'),
                dict(type='CenterCrop', crop_size=size), dict(type='PackInputs')]
    dataset = DATASETS.build(dict(cfg.train_dataloader.dataset, ann_file='val.txt',
                                  data_root=f'{data_root}/pretrain/', pipeline=pipeline,
                                  test_mode=True))
    batch = pseudo_collate([dataset[i] for i in range(len(dataset))])
    batch['inputs'] = [torch.stack(batch['inputs'])]  # one view of N images
    inputs = model.data_preprocessor(batch, False)['inputs'][0]
    targets = torch.stack([s.gt_score for s in batch['data_samples']])
    modules = dict(untrained=untrained, student=model)
    if model.teacher is not None:
        modules['teacher'] = model.teacher
    logits, sims, result = {}, {}, {}
    head = model.mlc_head
    scoring = head.similarity
    head.similarity = 'scoring_token'  # one agreement measure for every arm
    for name, m in modules.items():
        tokens = m.mlc_head.decode(m.backbone(inputs))
        logits[name] = m.mlc_head.classify(tokens).float()
        sims[name] = head.label_similarity(tokens)
        evaluator = Evaluator(SoftTargetAveragePrecision(target_thr=0.5))
        evaluator.process([DataSample().set_pred_score(p).set_gt_score(t)
                           for p, t in zip(logits[name].sigmoid(), targets)])
        result[f'{name}_mAP'] = evaluator.evaluate(len(targets))['multi-label/mAP']
    head.similarity = scoring
    if 'teacher' in modules:
        result['top1_agreement'] = float(
            (logits['student'].argmax(1) == logits['teacher'].argmax(1)).float().mean() * 100)
        centred = [x - x.mean(1, keepdim=True) for x in (logits['student'], logits['teacher'])]
        result['logit_corr'] = float(torch.nn.functional.cosine_similarity(*centred, dim=1).mean())
        kl = SymmetricKLDistillationLoss(AGREEMENT_TEMPERATURE)
        result['sim_sym_kl'] = float(kl(sims['student'], sims['teacher']))
    return result


def summarise(runs: list) -> dict:
    """Mean and sample standard deviation of every metric, per arm."""
    summary = {}
    for arm in dict.fromkeys(r['arm'] for r in runs):
        rows = [r for r in runs if r['arm'] == arm]
        keys = [k for k in rows[0] if k not in ('arm', 'seed')]
        summary[arm] = {k: dict(mean=statistics.mean(r[k] for r in rows),
                                std=statistics.stdev(r[k] for r in rows) if len(rows) > 1 else 0.,
                                n=len(rows)) for k in keys}
    return summary


def markdown(summary: dict) -> str:
    """Markdown table of :func:`summarise`'s result: mean ± std per arm and metric."""
    keys = ['untrained_mAP', 'student_mAP', 'teacher_mAP', 'top1_agreement', 'logit_corr',
            'sim_sym_kl']
    lines = ['| arm | n | ' + ' | '.join(keys) + ' |', '|---' * (len(keys) + 2) + '|']
    for arm, stats in summary.items():
        cells = [f"{stats[k]['mean']:.4g} ± {stats[k]['std']:.2g}" if k in stats else 'n/a'
                 for k in keys]
        n = next(iter(stats.values()))['n']
        lines.append(f'| {arm} | {n} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)

