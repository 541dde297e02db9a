"""The pre-trained arms of the evidence protocol (docs/RESULTS.md, "Arms") and where each one's
backbone comes from, on one world, backbone and budget.

* ``hvp``, ``mlc_only`` and ``wo_mim``: arms of the cause study (:mod:`.cause`): HVP-MTL as
  shipped (its EMA teacher, the default export), multi-label alone (its student) and HVP-MTL
  without MIM (the cause study's named cause of the colour collapse; its EMA teacher), the
  checkpoint at the study's budget;
* ``simmim``, ``swav``: mmpretrain's own algorithms through configs that inherit theirs
  (``configs/demo/simmim_swin-demo_pretrain.py``, ``swav_swin-demo_pretrain.py``), the demo Swin;
* ``mcl``: the project's MCL demo config, its online encoder (the default export).

:func:`prepare_arm` pre-trains, exports and probes one arm (finished stages are skipped);
:func:`arm_backbone` and :func:`arm_probe` say where its files are.
"""
import os.path as osp

from .cause import CAUSE_ITERS, arm_dir, run_cause
from .recipes import SIZES

__all__ = ['ARMS', 'PEER_METHODS', 'arm_backbone', 'arm_probe', 'prepare_arm']

ARMS = dict(random='random init', hvp='HVP-MTL (EMA teacher)', mlc_only='multi-label only',
            simmim="mmpretrain's SimMIM", swav="mmpretrain's SwAV", mcl='MCL',
            wo_mim='HVP-MTL w/o MIM (EMA teacher)')
#: arm -> (cause-study arm, export)
CAUSE_SOURCES = dict(hvp=('full', 'teacher'), mlc_only=('mlc_only', 'student'),
                     wo_mim=('wo_mim', 'teacher'))
#: arms pre-trained by their own demo config (``Demo.pretrain(method=arm)``)
PEER_METHODS = ('simmim', 'swav', 'mcl')


def peer_dir(work_dir, seed, arm):
    return osp.join(work_dir, 'peers', f'seed_{seed}', arm)


def arm_backbone(work_dir, seed, arm, iters):
    """The exported backbone of ``arm`` after ``iters`` iterations (``None``: random init)."""
    if arm == 'random':
        return None
    if arm in CAUSE_SOURCES:
        source, export = CAUSE_SOURCES[arm]
        return osp.join(arm_dir(work_dir, seed, source), f'backbone_{export}_iter{iters}.pth')
    return osp.join(peer_dir(work_dir, seed, arm), f'backbone_iter{iters}.pth')


def arm_probe(work_dir, seed, arm, iters):
    """The frozen-feature probe file of ``arm`` (``demo/probe_backbone.py``)."""
    if arm == 'random':
        return osp.join(work_dir, 'cause', f'seed_{seed}', 'probe_random.json')
    if arm in CAUSE_SOURCES:
        source, export = CAUSE_SOURCES[arm]
        return osp.join(arm_dir(work_dir, seed, source), f'probe_{export}_iter{iters}.json')
    return osp.join(peer_dir(work_dir, seed, arm), f'probe_iter{iters}.json')


def prepare_arm(demo, seed, arm, iters):
    """Pre-train ``arm`` for ``iters`` iterations, export and probe it; returns the backbone.

    A cause-study arm runs through :func:`.cause.run_cause` (with the cause study's points when
    ``iters`` is its budget, so its kept checkpoints and probes are reused, not redone).
    """
    if arm not in ARMS:
        raise KeyError(f'unknown arm {arm!r}; expected one of {sorted(ARMS)}')
    if arm == 'random':  # the cause study's probe of the seed's random init
        demo.make_world()
        demo.probe(f'cause s{seed} probe random', arm_probe(demo.work_dir, seed, arm, iters),
                   None, seed)
        return None
    if arm in CAUSE_SOURCES:
        points = CAUSE_ITERS if iters == max(CAUSE_ITERS) else (iters, )
        run_cause(demo, seed, [CAUSE_SOURCES[arm][0]], points)
        return arm_backbone(demo.work_dir, seed, arm, iters)
    demo.size = dict(SIZES[demo.size_name], pretrain=iters)
    where = peer_dir(demo.work_dir, seed, arm)
    ckpt = demo.pretrain(f'peer s{seed} {arm} pretrain', osp.join(where, 'pretrain'), seed, arm)
    backbone = arm_backbone(demo.work_dir, seed, arm, iters)
    demo.export(f'peer s{seed} {arm} export', ckpt, backbone, 'auto')
    demo.probe(f'peer s{seed} {arm} probe', arm_probe(demo.work_dir, seed, arm, iters), backbone,
               seed)
    return backbone
