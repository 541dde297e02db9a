"""Pack an image folder into uncompressed tar shards (``tools/dataset_converters/
build_tar_shard_index.py --pack-from``), ready for :func:`~hvp_mtl.datasets.build_tar_index`."""
import os
import os.path as osp
import tarfile

__all__ = ['pack_folder']


def pack_folder(folder: str, shard_dir: str, shard_bytes: int):
    """Write every file below ``folder`` into ``shard-%05d.tar`` files.

    Args:
        folder (str): The image folder; member names are paths relative to it, ``/``-separated.
        shard_dir (str): Where the shards go (created).
        shard_bytes (int): A new shard starts once the current one holds this many bytes.

    Returns:
        list[str]: The shard paths, in order.
    """
    os.makedirs(shard_dir, exist_ok=True)
    files = sorted(osp.relpath(osp.join(d, n), folder)
                   for d, _, names in os.walk(folder) for n in names)
    shards, tar, size = [], None, 0
    for name in files:
        if tar is None or size >= shard_bytes:
            if tar is not None:
                tar.close()
            shards.append(osp.join(shard_dir, f'shard-{len(shards):05d}.tar'))
            tar, size = tarfile.open(shards[-1], 'w'), 0
        tar.add(osp.join(folder, name), arcname=name.replace(os.sep, '/'))
        size += osp.getsize(osp.join(folder, name)) + 512
    if tar is not None:
        tar.close()
    return shards
