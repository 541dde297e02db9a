"""Small utilities shared by the package and the tools."""
from .atomic_io import atomic_path, atomic_torch_save, atomic_write, commit_file, fsync_dir

__all__ = ['atomic_path', 'atomic_torch_save', 'atomic_write', 'commit_file',
           'fsync_dir']
