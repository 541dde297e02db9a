"""Training-engine parts: hooks, optimizer constructors, runner utilities."""
from . import hooks, optimizers, runner  # noqa: F401
