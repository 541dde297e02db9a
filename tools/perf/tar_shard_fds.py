"""Benchmark: random reads from thousands of tar shards under a low fd limit.

Writes ``--shards`` small tar shards (``--members`` members each) and their
index, lowers ``RLIMIT_NOFILE`` to ``--nofile``, and reads
``--reads`` random members through the ``tar_shards`` file backend with
``--workers`` torch DataLoader workers (fork, as mmengine starts them). Side
by side, in one run:

- ours: the backend with its default LRU of ``max_open_shards`` descriptors;
- unbounded: one descriptor per shard kept open (the backend before:
  ``max_open_shards`` larger than the number of shards).

Reported per case: whether every read succeeded or the first error, the
largest number of tar shards a worker had open (counted in
``/proc/self/fd``), and the read rate.

Example::

    python tools/perf/tar_shard_fds.py    # 2,000 shards, 4 workers, 256
"""
import argparse
import io
import os
import os.path as osp
import resource
import tarfile
import tempfile
import time

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler


def write_shards(out_dir: str, shards: int, members: int, size: int):
    """``shards`` tar files of ``members`` random members; member names."""
    names, paths = [], []
    rng = torch.Generator().manual_seed(0)
    for s in range(shards):
        path = osp.join(out_dir, f'shard_{s:05d}.tar')
        with tarfile.open(path, 'w') as tar:
            for m in range(members):
                name = f'{s:05d}/{m:03d}.bin'
                data = torch.randint(256, (size, ), generator=rng,
                                     dtype=torch.uint8).numpy().tobytes()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                names.append(name)
        paths.append(path)
    return paths, names


def open_tar_fds() -> int:
    """Descriptors of this process that point to a ``.tar`` file (-1 if
    even listing them fails for want of a descriptor)."""
    count = 0
    try:
        fds = os.listdir('/proc/self/fd')
    except OSError:
        return -1
    for fd in fds:
        try:
            count += os.readlink(f'/proc/self/fd/{fd}').endswith('.tar')
        except OSError:
            pass
    return count


class MemberReads(Dataset):
    """Reads one member per index; returns (bytes read, open tar fds)."""

    def __init__(self, index_dir, names, max_open_shards):
        self.index_dir, self.names = index_dir, names
        self.max_open_shards = max_open_shards
        self.backend = None

    def __len__(self):
        return len(self.names)

    def __getitem__(self, i):
        from hvp_mtl.datasets import TarShardBackend
        if self.backend is None:  # built in the worker, as mmcv does
            self.backend = TarShardBackend(self.index_dir,
                                           max_open_shards=self.max_open_shards)
        data = self.backend.get(self.names[i])
        return len(data), open_tar_fds()


def run_case(index_dir, names, max_open_shards, workers, reads):
    dataset = MemberReads(index_dir, names, max_open_shards)
    sampler = RandomSampler(dataset, num_samples=reads,
                            generator=torch.Generator().manual_seed(1))
    loader = DataLoader(dataset, batch_size=8, sampler=sampler,
                        num_workers=workers, collate_fn=list,
                        multiprocessing_context='fork')
    tic = time.perf_counter()
    done, max_fds, error = 0, 0, ''
    try:
        for batch in loader:
            done += len(batch)
            max_fds = max([max_fds] + [fds for _, fds in batch])
    except Exception as exc:  # noqa: BLE001 -- reported in the table
        lines = str(exc).strip().splitlines() or ['']
        error = f'{type(exc).__name__}: {lines[-1][:160]}'
    seconds = time.perf_counter() - tic
    return dict(done=done, max_fds=max_fds, error=error,
                rate=done / max(seconds, 1e-9))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--shards', type=int, default=2000)
    parser.add_argument('--members', type=int, default=4)
    parser.add_argument('--member-bytes', type=int, default=4096)
    parser.add_argument('--workers', type=int, default=4)
    parser.add_argument('--nofile', type=int, default=256)
    parser.add_argument('--reads', type=int, default=20000)
    parser.add_argument('--lru', type=int, default=64)
    args = parser.parse_args()
    from hvp_mtl.datasets import build_tar_index
    with tempfile.TemporaryDirectory(prefix='tar_fds_') as tmp:
        tic = time.perf_counter()
        paths, names = write_shards(tmp, args.shards, args.members,
                                    args.member_bytes)
        build_tar_index(paths, osp.join(tmp, 'index'))
        print(f'{args.shards} shards x {args.members} members written and '
              f'indexed in {time.perf_counter() - tic:.1f}s')
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, hard))
        ours = run_case(osp.join(tmp, 'index'), names, args.lru,
                        args.workers, args.reads)
        before = run_case(osp.join(tmp, 'index'), names, args.shards + 1,
                          args.workers, args.reads)
    print(f'\n{args.reads:,} random reads, {args.workers} workers, '
          f'RLIMIT_NOFILE={args.nofile}\n')
    print(f'| metric | ours (LRU of {args.lru}) | unbounded (before) | goal |')
    print('|---|---|---|---|')
    print(f'| reads done | {ours["done"]:,} | {before["done"]:,} | '
          f'{args.reads:,} |')
    print(f'| error | {ours["error"] or "none"} | '
          f'{before["error"] or "none"} | none |')
    print(f'| max open shard fds in a worker | {ours["max_fds"]} | '
          f'{before["max_fds"]} | <= {args.lru} |')
    print(f'| reads / s | {ours["rate"]:.0f} | {before["rate"]:.0f} | |')
    print(f'cpu count {os.cpu_count()}, load average '
          f'{os.getloadavg()[0]:.1f} at the end')


if __name__ == '__main__':
    main()
