"""Evaluation during and after pre-training: multi-label metrics for soft
targets, the kNN and linear probes, the objective metrics (the validation
loop and its interval hook run them from :mod:`hvp_mtl.engine`)."""
from .class_chunked_ap import average_precision_per_class, class_chunked_average_precision
from .feature_extraction import (
                                 RankShardSampler,
                                 build_sharded_dataloader,
                                 extract_features,
                                 gather_shards,
                                 resolve_backbone,
)
from .knn_classifier import knn_neighbours, topk_accuracy, weighted_knn_scores
from .knn_probe import run_knn_probe
from .linear_probe import fit_linear_probe, linear_probe_accuracy, predict_linear_probe
from .multi_label_metrics import (
                                 SoftTargetAveragePrecision,
                                 SoftTargetMultiLabelMetric,
                                 binarize_soft_targets,
)
from .objective_metrics import evaluate_objectives, train_label_frequencies

__all__ = [
    'RankShardSampler', 'build_sharded_dataloader', 'extract_features',
    'gather_shards', 'resolve_backbone', 'knn_neighbours', 'topk_accuracy',
    'weighted_knn_scores', 'run_knn_probe', 'fit_linear_probe',
    'linear_probe_accuracy', 'predict_linear_probe', 'SoftTargetAveragePrecision',
    'SoftTargetMultiLabelMetric', 'average_precision_per_class',
    'class_chunked_average_precision',
    'binarize_soft_targets',
    'evaluate_objectives', 'train_label_frequencies'
]
