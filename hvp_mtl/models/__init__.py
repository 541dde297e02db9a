"""Models: masked backbones, task heads, losses and the HVP-MTL algorithm."""
from . import algorithms, backbones, heads, losses, utils  # noqa: F401
