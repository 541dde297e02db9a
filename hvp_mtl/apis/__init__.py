"""Inference with pre-trained HVP-MTL models, export of their backbone, and what tools/ runs.

The figure makers (:mod:`.loss_curves`, :mod:`.mim_visualizer`), the paper tables
(:mod:`.paper_tables`), the work-dir log readers (:mod:`.work_dir_logs`) and the analyses
(:mod:`.task_gradients`, :mod:`.distillation_demo`) are imported from their modules.
"""
from .backbone_export import export_backbone
from .checkpoint_export import EXPORT_FORMATS, export_checkpoint
from .checkpoint_knn_probe import knn_probe_checkpoint
from .hf_export import export_hf
from .image_tagger import ImageTagger, default_test_pipeline
from .runner_builder import build_runner, merge_args, merge_test_args
from .timm_export import (
                          TIMM_MODELS,
                          check_timm_state_dict,
                          convert_to_timm,
                          create_timm_model,
                          export_timm,
)

__all__ = ['ImageTagger', 'default_test_pipeline', 'export_backbone', 'export_timm', 'export_hf',
           'convert_to_timm', 'check_timm_state_dict', 'create_timm_model', 'TIMM_MODELS',
           'EXPORT_FORMATS', 'export_checkpoint', 'knn_probe_checkpoint', 'build_runner',
           'merge_args', 'merge_test_args']
