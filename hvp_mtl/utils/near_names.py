"""A ``FileNotFoundError`` for a mistyped path that names the near entries of its folder."""
import difflib
import os
import os.path as osp

__all__ = ['missing_file_error']


def missing_file_error(path, what='file', n=3):
    """The error to raise for ``path``, which does not exist.

    Args:
        path (str): The path that was asked for.
        what (str): What it is, for the message (``'list file (ann_file)'``).
        n (int): How many near names at most.

    Returns:
        FileNotFoundError: Its message names the entries of the path's folder closest to the
        file name (``difflib``), or says that the folder itself is missing.
    """
    folder = osp.dirname(path) or '.'
    if not osp.isdir(folder):
        return FileNotFoundError(f'{what} not found: {path} (its folder {folder} does not exist '
                                 'either: check data_root)')
    entries = sorted(os.listdir(folder))
    near = difflib.get_close_matches(osp.basename(path), entries, n=n, cutoff=0.5)
    hint = (f'; near names in {folder}: {", ".join(near)}' if near
            else f'; {folder} holds {len(entries)} entries, none with a close name')
    return FileNotFoundError(f'{what} not found: {path}{hint}')
