"""Benchmark: the resumable sampler's memory and mid-epoch resume at 17.6M.

Each case runs in a fresh process as rank 0 of ``--world-size`` (no process
group is needed: the sampler takes rank and world size as given). Side by
side, in one run:

- ours: ``ResumableDefaultSampler`` (the epoch's order as one int32 array);
- list: the same order as a Python list, as the sampler held it before
  (``torch.randperm(n).tolist()``, padded by list repetition, sliced per
  rank) -- mmengine's ``DefaultSampler`` does the same.

For each: the peak extra RSS while the first iterator is created and its
first index drawn, the time of that (a fresh epoch), the time from
``set_resume_position(epoch, half the epoch)`` to the first index of the
resumed iterator (wall and CPU seconds of the process: on a shared machine
the CPU time is the faithful cost), and the time to draw the rank's whole
epoch.

Example::

    python tools/perf/sampler_memory.py   # 17,609,752 samples, 8 ranks
"""
import argparse
import json
import os
import time

from hvp_mtl.perf.process_rss import in_fresh_process

NUM_SAMPLES = 17_609_752


class _Sized:

    def __init__(self, size):
        self.size = size

    def __len__(self):
        return self.size


def list_sampler_class():
    """The list-based ``ResumableDefaultSampler`` of before."""
    import torch
    from mmengine.dataset import DefaultSampler

    class ListResumableSampler(DefaultSampler):

        def __init__(self, dataset, seed):
            super().__init__(dataset, shuffle=True, seed=seed)
            self._start = 0

        def set_resume_position(self, epoch, consumed):
            self.set_epoch(epoch)
            self._start = min(int(consumed), self.total_size)

        def __iter__(self):
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            indices = torch.randperm(len(self.dataset), generator=g).tolist()
            repeats = self.total_size // len(indices) + 1
            indices = (indices * repeats)[:self.total_size]
            start, self._start = self._start, 0
            return iter(indices[start + self.rank:self.total_size:
                                self.world_size])

    return ListResumableSampler


def measure(case, size, world_size, queue):
    import mmengine.dataset.sampler as sampler_module
    import torch

    from hvp_mtl.datasets.samplers import ResumableDefaultSampler
    from hvp_mtl.perf.process_rss import peak_rss_mb, reset_peak_rss
    torch.set_num_threads(1)
    # rank 0 of world_size without a process group: the samplers read both
    # from mmengine's get_dist_info, as imported by their module
    sampler_module.get_dist_info = lambda group=None: (0, world_size)
    dataset = _Sized(size)
    base = reset_peak_rss()
    tic = time.perf_counter()
    if case == 'ours':
        sampler = ResumableDefaultSampler(dataset, shuffle=True, seed=0)
    else:
        sampler = list_sampler_class()(dataset, seed=0)
    it = iter(sampler)
    first = next(it)
    first_s = time.perf_counter() - tic
    del it
    sampler.set_resume_position(epoch=3, consumed=size // 2)
    tic, cpu = time.perf_counter(), time.process_time()
    it = iter(sampler)
    resumed_first = next(it)
    resume_s = time.perf_counter() - tic
    resume_cpu = time.process_time() - cpu
    del it
    tic = time.perf_counter()
    count = sum(1 for _ in sampler)
    epoch_s = time.perf_counter() - tic
    queue.put(dict(peak_extra_mb=peak_rss_mb() - base, first_s=first_s,
                   resume_s=resume_s, resume_cpu=resume_cpu,
                   epoch_s=epoch_s, count=count,
                   first=first, resumed_first=resumed_first))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--samples', type=int, default=NUM_SAMPLES)
    parser.add_argument('--world-size', type=int, default=8)
    parser.add_argument('--json', help='also write the results here')
    args = parser.parse_args()
    ours = in_fresh_process(measure, 'ours', args.samples, args.world_size)
    theirs = in_fresh_process(measure, 'list', args.samples,
                              args.world_size)
    assert ours['count'] == theirs['count']
    assert (ours['first'], ours['resumed_first']) == (
        theirs['first'], theirs['resumed_first']), 'orders differ'
    print(f'\n{args.samples:,} samples, rank 0 of {args.world_size}\n')
    print('| metric | ours (int32 array) | list (before) | goal |')
    print('|---|---|---|---|')
    rows = [('peak extra RSS per rank (MB)', 'peak_extra_mb', '.0f', '<= 150'),
            ('new epoch: first index (s)', 'first_s', '.3f', ''),
            ('resume at mid-epoch: first index, wall (s)', 'resume_s', '.3f',
             '< 1'),
            ('resume at mid-epoch: first index, CPU (s)', 'resume_cpu',
             '.3f', '< 1'),
            ("draw the rank's whole epoch (s)", 'epoch_s', '.2f', '')]
    for label, key, fmt, goal in rows:
        print(f'| {label} | {ours[key]:{fmt}} | {theirs[key]:{fmt}} | '
              f'{goal} |')
    print(f'\npeak extra RSS list / ours: '
          f'{theirs["peak_extra_mb"] / ours["peak_extra_mb"]:.1f}x; '
          f'same order: yes ({ours["count"]:,} indices per rank)')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(ours=ours, list=theirs, args=vars(args)), f)
    print(f'cpu count {os.cpu_count()}, load average '
          f'{os.getloadavg()[0]:.1f} at the end')


if __name__ == '__main__':
    main()
