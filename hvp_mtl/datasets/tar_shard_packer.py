"""Pack an image folder into uncompressed tar shards (``tools/dataset_converters/
build_tar_shard_index.py --pack-from``), ready for :func:`~hvp_mtl.datasets.build_tar_index`.

Optionally each image whose short side exceeds ``max_short_side`` is stored
resized to that short side (Lanczos, after the EXIF orientation is applied)
and re-encoded as JPEG at ``quality``; smaller images and files that are not
readable images are stored byte for byte (the training loader counts the
latter as bad samples). Member names are the paths relative to the folder,
so the dataset's list file, labels and order are unchanged.

The shards are planned up front (the sorted file list cut into runs of
about ``shard_bytes`` of *source* bytes), written in parallel by worker
processes and committed one by one (temporary file + rename), each followed
by its manifest ``shard-%05d.json`` (every member's original and stored
size). A run that is killed is resumed by running it again: shards whose
manifest is complete are kept, the others are rewritten; ``pack.json``
records the settings, and a resume with other settings or another file
list is refused.
"""
import hashlib
import io
import json
import multiprocessing
import os
import os.path as osp
import sys
import tarfile
from typing import Dict, List, Optional, Tuple

from PIL import Image, ImageOps

from ..utils.atomic_io import atomic_path, atomic_write

__all__ = ['pack_folder', 'read_manifests', 'resize_image_bytes',
           'DEFAULT_MAX_SHORT_SIDE', 'DEFAULT_JPEG_QUALITY']

#: the smallest short side at which RandomResizedCrop(224, scale=(0.2, 1)) at its most
#: elongated crop (aspect 3/4 or 4/3) still covers >= 224 px: 224 / sqrt(0.2 * 3/4) = 578.4
#: on a square image, rounded up to 600 (a 232-px worst-case crop)
DEFAULT_MAX_SHORT_SIDE = 600
DEFAULT_JPEG_QUALITY = 90
_PLAN_VERSION = 1


def resize_image_bytes(data: bytes, max_short_side: int, quality: int
                       ) -> Tuple[bytes, Tuple[int, int], Tuple[int, int]]:
    """Shrink one encoded image so that its short side is at most ``max_short_side``.

    Returns:
        tuple: (stored bytes, original (h, w), stored (h, w)); sizes are of the
        upright image. The input bytes are returned unchanged when the image
        is small enough; (0, 0) sizes and the input bytes when it is not a
        readable image.
    """
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        swap = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)
        if swap:
            width, height = height, width
        short = min(width, height)
        if short <= max_short_side:
            return data, (height, width), (height, width)
        ratio = max_short_side / short
        size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
        if image.format == 'JPEG':  # DCT-scale to no less than twice the target
            image.draft(None, (size[1] * 2, size[0] * 2) if swap else (size[0] * 2, size[1] * 2))
        image = ImageOps.exif_transpose(image)
        if image.mode not in ('RGB', 'L'):
            image = image.convert('RGB')
        image = image.resize(size, Image.LANCZOS)
    except Exception:  # not readable: stored as is, the loader counts it
        return data, (0, 0), (0, 0)
    out = io.BytesIO()
    image.save(out, 'JPEG', quality=quality, icc_profile=image.info.get('icc_profile'))
    return out.getvalue(), (height, width), (size[1], size[0])


def _pack_shard(job) -> Tuple[str, int]:
    """Write one planned shard and its manifest (run in a worker process)."""
    shard, folder, names, max_short_side, quality, fingerprint = job
    members = []
    with atomic_path(shard) as tmp:
        with tarfile.open(tmp, 'w', format=tarfile.GNU_FORMAT) as tar:
            for name in names:
                path = osp.join(folder, name)
                with open(path, 'rb') as f:
                    data = f.read()
                if max_short_side:
                    data, original, stored = resize_image_bytes(data, max_short_side, quality)
                else:
                    _, original, stored = resize_image_bytes(data, sys.maxsize, quality)
                if max_short_side and original == (0, 0):
                    print(f'warning: {path}: not a readable image; stored unchanged',
                          file=sys.stderr)
                info = tarfile.TarInfo(name.replace(os.sep, '/'))
                info.size, info.mode = len(data), 0o644
                info.mtime = int(os.stat(path).st_mtime)
                tar.addfile(info, io.BytesIO(data))
                members.append([info.name, *original, *stored])
        tar_bytes = osp.getsize(tmp)
    manifest = dict(fingerprint=fingerprint, tar_bytes=tar_bytes, members=members)
    with atomic_write(_manifest_path(shard)) as f:
        json.dump(manifest, f)
    return shard, len(names)


def _manifest_path(shard: str) -> str:
    return shard[:-len('.tar')] + '.json'


def _is_complete(shard: str, fingerprint: str) -> bool:
    try:
        with open(_manifest_path(shard)) as f:
            manifest = json.load(f)
        return (manifest['fingerprint'] == fingerprint
                and osp.getsize(shard) == manifest['tar_bytes'])
    except (OSError, ValueError, KeyError):
        return False


def _plan(folder: str, shard_bytes: int) -> List[List[str]]:
    files = sorted(osp.relpath(osp.join(d, n), folder)
                   for d, _, names in os.walk(folder) for n in names)
    runs, size = [], 0
    for name in files:
        if not runs or size >= shard_bytes:
            runs.append([])
            size = 0
        runs[-1].append(name)
        size += osp.getsize(osp.join(folder, name)) + 512
    return runs


def pack_folder(folder: str, shard_dir: str, shard_bytes: int,
                max_short_side: Optional[int] = None,
                quality: int = DEFAULT_JPEG_QUALITY, workers: int = 1,
                progress: bool = False) -> List[str]:
    """Write every file below ``folder`` into ``shard-%05d.tar`` files (resumable).

    Args:
        folder (str): The image folder; member names are paths relative to it, ``/``-separated.
        shard_dir (str): Where the shards, their manifests and ``pack.json`` go (created).
        shard_bytes (int): A new shard starts once the current one holds this many
            source bytes (resized shards come out smaller).
        max_short_side (int, optional): Resize larger images to this short side.
            None: store every file unchanged.
        quality (int): JPEG quality of the resized images. Defaults to 90.
        workers (int): Worker processes. Defaults to 1 (in this process).
        progress (bool): Show a progress bar (images) on stderr.

    Returns:
        list[str]: The shard paths, in order.
    """
    if not osp.isdir(folder):
        raise FileNotFoundError(f'image folder {folder} does not exist')
    runs = _plan(folder, shard_bytes)
    settings = dict(format='hvp_mtl.tar_shard_pack', version=_PLAN_VERSION,
                    max_short_side=max_short_side,
                    quality=quality if max_short_side else None,
                    shards=[hashlib.sha1('\n'.join(r).encode()).hexdigest() for r in runs])
    fingerprint = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    os.makedirs(shard_dir, exist_ok=True)
    plan_file = osp.join(shard_dir, 'pack.json')
    if osp.exists(plan_file):
        with open(plan_file) as f:
            previous = json.load(f)
        if previous.get('fingerprint') != fingerprint:
            raise ValueError(
                f'{plan_file}: {shard_dir} holds a pack of other settings or another file '
                f'list (max_short_side={previous.get("max_short_side")}, quality='
                f'{previous.get("quality")}, {len(previous.get("shards", []))} shards); '
                'use another shard folder or delete it')
    else:
        with atomic_write(plan_file) as f:
            json.dump(dict(settings, fingerprint=fingerprint), f, indent=1)
    for name in os.listdir(shard_dir):  # temporary files of a killed run
        if name.startswith('.shard-') and name.endswith('.tmp'):
            os.remove(osp.join(shard_dir, name))
    shards = [osp.join(shard_dir, f'shard-{i:05d}.tar') for i in range(len(runs))]
    jobs = [(shard, folder, names, max_short_side, quality, fingerprint)
            for shard, names in zip(shards, runs) if not _is_complete(shard, fingerprint)]
    from tqdm import tqdm
    done = sum(len(r) for r in runs) - sum(len(job[2]) for job in jobs)
    with tqdm(total=sum(len(r) for r in runs), initial=done, unit='img',
              disable=not progress, file=sys.stderr, desc='packing') as bar:
        if workers > 1 and len(jobs) > 1:
            with multiprocessing.get_context('fork').Pool(workers) as pool:
                for _, count in pool.imap_unordered(_pack_shard, jobs):
                    bar.update(count)
        else:
            for job in jobs:
                bar.update(_pack_shard(job)[1])
    return shards


def read_manifests(shards: List[str]) -> Dict[str, Tuple[int, int, int, int]]:
    """``{member: (original h, original w, stored h, stored w)}`` from the
    manifests beside ``shards`` (empty if a shard has none: packed elsewhere)."""
    sizes = {}
    for shard in shards:
        path = _manifest_path(shard) if shard.endswith('.tar') else None
        if path is None or not osp.exists(path):
            return {}
        with open(path) as f:
            for name, *size in json.load(f)['members']:
                sizes[name] = tuple(size)
    return sizes
