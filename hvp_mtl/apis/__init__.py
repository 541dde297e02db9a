"""Inference with pre-trained HVP-MTL models and export of their backbone."""
from .backbone_export import export_backbone
from .image_tagger import ImageTagger, default_test_pipeline
from .timm_export import (TIMM_MODELS, check_timm_state_dict, convert_to_timm,
                          create_timm_model, export_timm)

__all__ = ['ImageTagger', 'default_test_pipeline', 'export_backbone', 'export_timm',
           'convert_to_timm', 'check_timm_state_dict', 'create_timm_model', 'TIMM_MODELS']
