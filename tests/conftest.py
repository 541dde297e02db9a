"""Shared pytest fixtures.

``demo_world``: a tiny demo world (all four task formats, 64 px, seed 0),
generated once per test session; see ``hvp_mtl/datasets/demo_world``.
"""
import pytest

#: Sizes of the session's demo world: small enough to build in well under a
#: second, large enough for a few iterations of every task.
DEMO_WORLD_SIZES = dict(seed=0, num_pretrain=32, num_cls=24, num_det=16,
                        num_seg=16, size=64)


@pytest.fixture(scope='session')
def demo_world(tmp_path_factory):
    """Path of the session's demo world (``pretrain/``, ``cls/``, ``coco/``,
    ``ade/``, ``world.json``)."""
    from hvp_mtl.datasets.demo_world import make_demo_world
    out = tmp_path_factory.mktemp('demo_world')
    make_demo_world(str(out), **DEMO_WORLD_SIZES)
    return out


@pytest.fixture(scope='module')
def one_torch_thread():
    """Tiny models: one intra-op thread is faster and immune to CPU oversubscription."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def mmpretrain_default_scope():
    """Each test starts in mmpretrain's scope: an mmdet/mmseg Runner in an earlier test
    leaves its own scope as the process-wide current one."""
    from mmengine.registry import DefaultScope, init_default_scope
    current = DefaultScope.get_current_instance()
    if current is None or current.scope_name != 'mmpretrain':
        init_default_scope('mmpretrain')
    yield
