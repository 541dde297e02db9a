"""The HVP-MTL algorithm (mmpretrain self-supervisor) and its EMA teacher."""
from .hvp_mtl import HVPMTL
from .mcl import MCL
from .momentum_teacher import MomentumTeacher

__all__ = ['HVPMTL', 'MCL', 'MomentumTeacher']
