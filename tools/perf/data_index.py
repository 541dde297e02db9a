"""Benchmark: the ML-Images mmap index vs mmpretrain's JSON MultiLabelDataset.

Generates a realistic synthetic list (``--num-lines``, 11,166 classes, 8.72
labels per line, ImageNet-id and Flickr-URL paths; see
:mod:`hvp_mtl.perf.synthetic_ml_images`) and reports side by side, in one run:

- build: ours = ``build_ml_images_index`` (``--build-workers`` processes);
  theirs = converting the list to the OpenMMLab-2.0 JSON that
  ``MultiLabelDataset`` needs (a plain Python loop + ``json.dump``);
- open: constructing the dataset (``TencentMLImages`` / ``MultiLabelDataset``
  with its default ``serialize_data=True``) in a fresh process;
- memory: the main process after opening, and each of ``--loader-workers``
  torch DataLoader workers after reading ``--samples-per-worker`` random
  samples (annotations only, no images): ``anonymous`` is memory the worker
  really added (heap, copy-on-write copies; ``Anonymous`` of smaps);
  ``private dirty`` also counts file pages this worker mapped that are still
  dirty in the page cache, so the files are flushed (``os.sync``) after they
  are written and before any process is measured; ``USS`` adds the private
  clean pages, i.e. the page cache of the index files that only this worker
  touched (reclaimable and shared once another worker reads them).

mmpretrain's dataset is measured at ``--json-lines`` (default 1M) and its
numbers are scaled linearly to ``--num-lines``. Goals at 17.6M lines on two
cores: build <= 60 s, open <= 1 s, <= 50 MB extra per worker.

Example::

    python tools/perf/data_index.py --num-lines 17609752 --work-dir /tmp/bench
"""
import argparse
import json
import os
import os.path as osp
import shutil
import time

from hvp_mtl.perf.process_rss import in_fresh_process
from hvp_mtl.perf.synthetic_ml_images import write_synthetic_list

NUM_CLASSES = 11166
MB = 2**20


def cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children."""
    import resource
    return sum(getattr(resource.getrusage(who), field)
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for field in ('ru_utime', 'ru_stime'))


def memory_of(pid='self') -> dict:
    """Rss / Pss / private clean / private dirty / anonymous (MB) of a
    process."""
    fields = {}
    with open(f'/proc/{pid}/smaps_rollup') as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == 'kB':
                fields[parts[0].rstrip(':')] = int(parts[1]) / 1024
    return dict(rss=fields['Rss'], pss=fields['Pss'],
                private_clean=fields['Private_Clean'],
                private_dirty=fields['Private_Dirty'],
                anonymous=fields['Anonymous'],
                uss=fields['Private_Clean'] + fields['Private_Dirty'])


def _count(batch):
    return len(batch)


class _TrivialDataset:
    """Baseline: what a loader worker costs with no annotations at all."""

    def __init__(self, size):
        self.size = size

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        return dict(sample_idx=index)


def read_with_workers(dataset, workers: int, samples_per_worker: int) -> dict:
    """Random reads through a torch DataLoader; per-worker memory after.

    Returns the read rate after one batch per worker (start-up excluded)
    and, per worker, its memory (see :func:`memory_of`).
    """
    import warnings

    import psutil
    import torch
    from torch.utils.data import DataLoader, RandomSampler
    warnings.filterwarnings('ignore', message='This DataLoader will create')
    sampler = RandomSampler(dataset, num_samples=workers * samples_per_worker,
                            generator=torch.Generator().manual_seed(0))
    # fork, as mmengine's default env_cfg (mp_start_method='fork') does
    loader = DataLoader(dataset, batch_size=16, sampler=sampler,
                        num_workers=workers, collate_fn=_count,
                        persistent_workers=True, prefetch_factor=4,
                        multiprocessing_context='fork')
    batches = iter(loader)
    first = sum(next(batches) for _ in range(workers))  # all workers started
    start = time.perf_counter()
    rest = sum(batches)
    seconds = time.perf_counter() - start
    per_worker = [memory_of(child.pid) for child in psutil.Process().children()]
    del batches, loader
    return dict(samples=first + rest, reads_per_s=rest / max(seconds, 1e-9),
                workers=per_worker)


def worker_baseline(workers: int, samples: int) -> dict:
    """Per-worker memory with a trivial dataset, from the current process."""
    reads = read_with_workers(_TrivialDataset(10**6), workers, samples)
    return {key: max(w[key] for w in reads['workers'])
            for key in ('private_dirty', 'anonymous', 'uss')}


def measure_ours(list_file: str, workers: int, samples: int, queue):
    from hvp_mtl.datasets import TencentMLImages
    baseline = worker_baseline(workers, samples)
    before = memory_of()
    start, cpu = time.perf_counter(), time.process_time()
    dataset = TencentMLImages(ann_file=list_file, num_classes=NUM_CLASSES,
                              max_inmemory_list_mb=0)
    open_s = time.perf_counter() - start
    open_cpu = time.process_time() - cpu
    after = memory_of()
    dataset.get_data_info(len(dataset) - 1)
    reads = read_with_workers(dataset, workers, samples)
    queue.put(dict(open_s=open_s, open_cpu=open_cpu, len=len(dataset),
                   baseline=baseline, main_rss_delta=after['rss'] - before['rss'],
                   main_dirty_delta=after['private_dirty'] - before['private_dirty'],
                   **reads))


def measure_theirs(json_file: str, workers: int, samples: int, queue):
    import resource

    from mmpretrain.datasets import MultiLabelDataset
    baseline = worker_baseline(workers, samples)
    before = memory_of()
    start, cpu = time.perf_counter(), time.process_time()
    dataset = MultiLabelDataset(ann_file=json_file, pipeline=[])
    open_s = time.perf_counter() - start
    open_cpu = time.process_time() - cpu
    after = memory_of()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before['rss']
    reads = read_with_workers(dataset, workers, samples)
    queue.put(dict(open_s=open_s, open_cpu=open_cpu, len=len(dataset),
                   baseline=baseline, peak_rss=peak,
                   main_rss_delta=after['rss'] - before['rss'],
                   main_dirty_delta=after['private_dirty'] - before['private_dirty'],
                   **reads))


def list_to_openmmlab_json(list_file: str, json_file: str, num_lines: int):
    """What a user of MultiLabelDataset has to do: list -> 2.0 JSON."""
    data_list = []
    with open(list_file) as f:
        for _, line in zip(range(num_lines), f):
            fields = line.split()
            data_list.append(dict(img_path=fields[0], gt_label=[
                int(token.split(':')[0]) for token in fields[1:]]))
    with open(json_file, 'w') as f:
        json.dump(dict(metainfo=dict(classes=[str(i) for i in range(NUM_CLASSES)]),
                       data_list=data_list), f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--num-lines', type=int, default=17_609_752)
    parser.add_argument('--json-lines', type=int, default=1_000_000)
    parser.add_argument('--build-workers', type=int, default=2)
    parser.add_argument('--loader-workers', type=int, default=4)
    parser.add_argument('--samples-per-worker', type=int, default=5000)
    parser.add_argument('--work-dir', default='/tmp/hvp_mtl_data_bench')
    parser.add_argument('--keep', action='store_true', help='keep the files')
    parser.add_argument('--reuse-list', action='store_true',
                        help='reuse WORK_DIR/train.txt from a kept run if it '
                        'has --num-lines lines')
    args = parser.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    list_file = osp.join(args.work_dir, 'train.txt')
    json_lines = min(args.json_lines, args.num_lines)

    start = time.perf_counter()
    if args.reuse_list and osp.isfile(list_file):
        with open(list_file, 'rb') as f:
            lines = sum(block.count(b'\n') for block in iter(lambda: f.read(1 << 24), b''))
        if lines != args.num_lines:
            raise SystemExit(f'{list_file} has {lines} lines, not {args.num_lines}')
        list_bytes = osp.getsize(list_file)
    else:
        list_bytes = write_synthetic_list(list_file, args.num_lines)
    print(f'synthetic list: {args.num_lines} lines, {list_bytes / MB:.0f} MB '
          f'in {time.perf_counter() - start:.1f}s', flush=True)

    from hvp_mtl.datasets.ml_images_index_builder import build_index
    start, cpu = time.perf_counter(), cpu_seconds()
    index = build_index(list_file, num_classes=NUM_CLASSES,
                        workers=args.build_workers)
    build_s, build_cpu = time.perf_counter() - start, cpu_seconds() - cpu
    os.sync()  # dirty index pages would read as a worker's private memory
    index_mb = sum(osp.getsize(osp.join(index.index_dir, name))
                   for name in os.listdir(index.index_dir)) / MB
    print(f'ours: index built in {build_s:.1f}s wall, {build_cpu:.1f}s CPU '
          f'({index_mb:.0f} MB)', flush=True)
    ours = in_fresh_process(measure_ours, list_file, args.loader_workers,
                            args.samples_per_worker)

    json_file = osp.join(args.work_dir, 'train_openmmlab.json')
    start, cpu = time.perf_counter(), cpu_seconds()
    list_to_openmmlab_json(list_file, json_file, json_lines)
    json_build_s, json_build_cpu = (time.perf_counter() - start,
                                    cpu_seconds() - cpu)
    os.sync()
    print(f'theirs: JSON of {json_lines} lines written in {json_build_s:.1f}s',
          flush=True)
    theirs = in_fresh_process(measure_theirs, json_file, args.loader_workers,
                              args.samples_per_worker)

    scale = args.num_lines / json_lines

    def extra(result, key):  # worst worker, minus the trivial-dataset worker
        return max(w[key] for w in result['workers']) - result['baseline'][key]

    rows = [
        ('build, wall (s)', f'{build_s:.1f}', f'{json_build_s:.1f}',
         f'{json_build_s * scale:.0f}', '<= 60'),
        ('build, CPU (s)', f'{build_cpu:.1f}', f'{json_build_cpu:.1f}',
         f'{json_build_cpu * scale:.0f}', ''),
        ('open, wall (s)', f'{ours["open_s"]:.3f}', f'{theirs["open_s"]:.1f}',
         f'{theirs["open_s"] * scale:.0f}', '<= 1'),
        ('open, CPU (s)', f'{ours["open_cpu"]:.3f}', f'{theirs["open_cpu"]:.1f}',
         f'{theirs["open_cpu"] * scale:.0f}', ''),
        ('main process RSS added by open (MB)', f'{ours["main_rss_delta"]:.0f}',
         f'{theirs["main_rss_delta"]:.0f}',
         f'{theirs["main_rss_delta"] * scale:.0f}', ''),
        ('peak RSS added while opening (MB)', f'{ours["main_rss_delta"]:.0f}',
         f'{theirs["peak_rss"]:.0f}', f'{theirs["peak_rss"] * scale:.0f}', ''),
        ('extra per worker: anonymous, heap + copy-on-write (MB)',
         f'{extra(ours, "anonymous"):.1f}',
         f'{extra(theirs, "anonymous"):.1f}', '', '<= 50'),
        ('extra per worker: private dirty, after a sync (MB)',
         f'{extra(ours, "private_dirty"):.1f}',
         f'{extra(theirs, "private_dirty"):.1f}', '', ''),
        ('extra per worker: USS incl. clean page cache (MB)',
         f'{extra(ours, "uss"):.1f}', f'{extra(theirs, "uss"):.1f}', '', ''),
        ('random reads / s (all workers)', f'{ours["reads_per_s"]:.0f}',
         f'{theirs["reads_per_s"]:.0f}', '', ''),
    ]
    header = (f'| metric | ours @ {args.num_lines:,} | MultiLabelDataset @ '
              f'{json_lines:,} (measured) | MultiLabelDataset @ '
              f'{args.num_lines:,} (linear extrapolation) | goal |')
    print('\n' + header)
    print('|' + '---|' * 5)
    for row in rows:
        print('| ' + ' | '.join(row) + ' |')
    print(f'\nlist {list_bytes / MB:.0f} MB, index {index_mb:.0f} MB; '
          f'{args.loader_workers} loader workers x {args.samples_per_worker} '
          f'random samples; cpu count {os.cpu_count()}, load average '
          f'{os.getloadavg()[0]:.1f} at the end')
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(dict(args=vars(args), build_s=build_s, build_cpu=build_cpu,
                       index_mb=index_mb, json_build_s=json_build_s,
                       json_build_cpu=json_build_cpu, ours=ours, theirs=theirs), f,
                  indent=1)
    if not args.keep:
        for path in (list_file, json_file):
            os.remove(path)
        shutil.rmtree(index.index_dir)


if __name__ == '__main__':
    main()
