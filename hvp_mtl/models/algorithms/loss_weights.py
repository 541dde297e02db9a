"""HVP-MTL's task weights (eq. 7, plus the optional montage task)."""
from typing import Dict, Optional, Sequence

__all__ = ['DEFAULT_LOSS_WEIGHTS', 'parse_loss_weights']

#: the paper's a1..a4 (mlc, swav, mim, distill); montage (MCL's task) off
DEFAULT_LOSS_WEIGHTS = dict(mlc=0.001, swav=0.02, mim=1.0, distill=10.0,
                            montage=0.0)


def parse_loss_weights(loss_weights: Optional[dict],
                       extra: Sequence[str] = ()) -> Dict[str, float]:
    """The defaults updated by ``loss_weights``, checked.

    Args:
        loss_weights (dict, optional): ``{task: weight}``; 0 = not built.
        extra (Sequence[str]): Names of further tasks (``HVPMTL``'s
            ``extra_tasks``), weight 1.0 unless given.

    Raises:
        KeyError: An unknown task.
        ValueError: A negative weight, distillation without the multi-label
            decoder, or every weight 0.
    """
    clash = set(extra) & set(DEFAULT_LOSS_WEIGHTS)
    if clash:
        raise ValueError(f'extra_tasks {sorted(clash)} clash with the '
                         'built-in tasks')
    weights = dict(DEFAULT_LOSS_WEIGHTS, **{name: 1.0 for name in extra})
    unknown = set(loss_weights or {}) - set(weights)
    if unknown:
        raise KeyError(f'unknown loss_weights keys {sorted(unknown)}; '
                       f'expected {sorted(weights)}')
    weights.update({k: float(v) for k, v in (loss_weights or {}).items()})
    if any(w < 0 for w in weights.values()):
        raise ValueError(f'loss weights must be >= 0, got {weights}')
    if weights['distill'] > 0 and weights['mlc'] == 0:
        raise ValueError('distill > 0 needs the multi-label decoder: set '
                         'loss_weights.distill=0 when mlc=0')
    if not any(weights.values()):
        raise ValueError('every loss weight is 0: nothing to train')
    return weights
