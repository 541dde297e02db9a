"""Keep mmengine's ``HistoryBuffer`` pickles free of ``getattr`` calls.

``HistoryBuffer.__getstate__`` (mmengine 0.10.7) adds its class-level
``_statistics_methods`` dict -- bound functions like ``HistoryBuffer.min`` --
to the pickled state. Pickle stores them as ``getattr(HistoryBuffer, 'min')``,
and ``torch.load(weights_only=True)`` refuses ``builtins.getattr`` (rightly:
allowing it would let a checkpoint reach arbitrary objects). So every
checkpoint written by the Runner failed to resume under torch >= 2.6 even with
``HistoryBuffer`` allow-listed.

The methods need not travel: ``__setstate__`` re-registers the defaults, and
custom statistics are registered on the class by the code that defines them.
:func:`drop_statistics_methods_from_pickles` makes ``__getstate__`` return the
instance state without them (and without mutating the live object).
"""
from mmengine.logging.history_buffer import HistoryBuffer

__all__ = ['drop_statistics_methods_from_pickles']


def _getstate_without_methods(self) -> dict:
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


def drop_statistics_methods_from_pickles() -> None:
    """Patch ``HistoryBuffer.__getstate__`` (idempotent)."""
    HistoryBuffer.__getstate__ = _getstate_without_methods
