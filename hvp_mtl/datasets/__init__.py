"""Datasets and data transforms."""
from . import samplers, transforms  # noqa: F401
from .bad_sample_tracker import (
                                 BadSampleTracker,
                                 DataEnvironmentError,
                                 TooManyBadSamplesError,
                                 UndecodableImageError,
                                 is_environmental_error,
)
from .ml_images_format import (
                                 ClassEntry,
                                 MLImagesFormatError,
                                 map_image_path,
                                 parse_list_line,
                                 read_dictionary,
)
from .ml_images_index import MLImagesIndex, default_index_dir
from .ml_images_index_builder import build_index
from .tar_shards import TarShardBackend, TarShardIndex, build_tar_index
from .tencent_ml_images import TencentMLImages

__all__ = [
    'BadSampleTracker', 'TooManyBadSamplesError', 'DataEnvironmentError',
    'is_environmental_error', 'UndecodableImageError', 'ClassEntry',
    'MLImagesFormatError', 'map_image_path', 'parse_list_line',
    'read_dictionary', 'MLImagesIndex', 'build_index', 'default_index_dir',
    'TarShardBackend', 'TarShardIndex', 'build_tar_index', 'TencentMLImages'
]
