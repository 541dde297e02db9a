"""Training-engine parts, by role (as in mmengine/mmpretrain).

* :mod:`.hooks`: checkpointing, resume state, EMA teacher, probes;
* :mod:`.optimizers`: guarded optimizer wrappers, layer-decay constructor;
* :mod:`.runner`: resumable train loop, resume state, CPU distributed launch;
* :mod:`.strategies`: FSDP strategy and wrap policy.

The resumable samplers live with the datasets (:mod:`hvp_mtl.datasets.samplers`).
"""
from . import hooks, optimizers, runner, strategies  # noqa: F401
