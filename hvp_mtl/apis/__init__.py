"""Inference with pre-trained HVP-MTL models."""
from .image_tagger import ImageTagger, default_test_pipeline

__all__ = ['ImageTagger', 'default_test_pipeline']
