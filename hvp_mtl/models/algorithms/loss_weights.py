"""HVP-MTL's task weights (eq. 7, plus the optional montage task)."""
from typing import Dict, Optional, Sequence

__all__ = ['DEFAULT_LOSS_WEIGHTS', 'parse_loss_weights']

#: the paper's a1..a4 (mlc, swav, mim, distill); montage (MCL's task) off. Their order is the
#: order in which ``HVPMTL`` registers the tasks' modules (state-dict keys, optimizer
#: parameters), whatever order they run in; further tasks follow, in their own order
DEFAULT_LOSS_WEIGHTS = dict(mlc=0.001, swav=0.02, mim=1.0, distill=10.0,
                            montage=0.0)


def parse_loss_weights(loss_weights: Optional[dict],
                       tasks: Sequence[str]) -> Dict[str, float]:
    """The defaults updated by ``loss_weights``, checked.

    Args:
        loss_weights (dict, optional): ``{task: weight}``; 0 = not built.
        tasks (Sequence[str]): The tasks configured (``HVPMTL``'s ``tasks``
            keys): those with a default take it, the others 1.0; a task with
            a default that is not configured gets 0 (off).

    Returns:
        dict[str, float]: A weight for every task with a default and every
        task configured.

    Raises:
        KeyError: A weight for a task neither configured nor known.
        ValueError: A negative weight, or every weight 0.
    """
    weights = {name: weight if name in tasks else 0.
               for name, weight in DEFAULT_LOSS_WEIGHTS.items()}
    weights.update({name: 1.0 for name in tasks if name not in weights})
    unknown = set(loss_weights or {}) - set(weights)
    if unknown:
        raise KeyError(f'unknown loss_weights keys {sorted(unknown)}; '
                       f'expected {sorted(weights)}')
    weights.update({k: float(v) for k, v in (loss_weights or {}).items()})
    if any(w < 0 for w in weights.values()):
        raise ValueError(f'loss weights must be >= 0, got {weights}')
    if not any(weights.values()):
        raise ValueError('every loss weight is 0: nothing to train')
    return weights
