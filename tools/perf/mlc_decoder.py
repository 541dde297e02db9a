"""Cost of the multi-label decoder at C = 11,166 next to the backbone step.

Measures forward + backward wall time and peak memory of

* the backbone step that HVP-MTL cannot avoid -- one student pass over both
  views (batch 2B, fwd + bwd) and one teacher pass (batch B, no grad) -- for
  a tiny Swin and Swin-B at 224 px;
* the multi-label decoder + weighted asymmetric loss in ``grouped`` and
  ``per_class`` mode on the matching features (Swin-B: 7x7x1024), run the
  way the algorithm runs it (student on 2B rows with backward, teacher on B
  rows without),

and prints one table with decoder/backbone ratios. The performance goal of
the decoder is <= 10 % of the step's time and peak memory.

Each case runs in a fresh subprocess. Time is CPU seconds of that process
per step (``--clock process``, default: one intra-op thread, so the number is
the work done and barely moves with other load on a shared machine) or wall
seconds (``--clock wall``). Peak memory is the peak of the running sum of the
CPU allocator's allocations and frees during one step recorded by
``torch.profiler`` (``profile_memory=True``; RSS is useless on a glibc-cached
heap), or ``torch.cuda.max_memory_allocated`` above the memory held before
the step on GPU.

Usage::

    python tools/perf/mlc_decoder.py                 # CPU, batch 2
    python tools/perf/mlc_decoder.py --device cuda --batch-size 16 --clock wall
    python tools/perf/mlc_decoder.py --skip per_class  # skip slow rows
"""
import argparse
import json
import subprocess
import sys
import time

NUM_CLASSES = 11166
SWIN_TINY = dict(embed_dims=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8])
CASES = {
    'tiny backbone': dict(kind='backbone', arch=SWIN_TINY),
    'swin-b backbone': dict(kind='backbone', arch='base'),
}
for feats, channels in (('tiny', 256), ('swin-b', 1024)):
    CASES.update({
        f'grouped decoder ({feats} feats)': dict(
            kind='decoder', channels=channels, head=dict(mode='grouped')),
        # dropout 0 lets SDPA use its fused kernel for the 11,166-query
        # self-attention (the unfused path needs a C x C map per head)
        f'per_class decoder ({feats} feats)': dict(
            kind='decoder', channels=channels,
            head=dict(mode='per_class', dropout=0.)),
        f'per_class no-self-attn ({feats} feats)': dict(
            kind='decoder', channels=channels,
            head=dict(mode='per_class', query_self_attn=False)),
    })


def run_case(case, batch, device, steps, threads, clock_name):
    """Time one case in this process; return a dict of measurements."""
    import torch
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import hvp_mtl  # noqa: F401  (registers the modules)
    from hvp_mtl.perf.peak_memory import step_peak_bytes
    init_default_scope('mmpretrain')
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if case['kind'] == 'backbone':
        student = MODELS.build(dict(type='MaskedSwinTransformer',
                                    arch=case['arch'], img_size=224,
                                    drop_path_rate=0.)).to(device)
        teacher = MODELS.build(dict(type='MaskedSwinTransformer',
                                    arch=case['arch'], img_size=224,
                                    drop_path_rate=0.)).to(device)
        teacher.eval()  # mmpretrain's Swin.train() returns None
        images = torch.randn(2 * batch, 3, 224, 224, device=device)
        mask = torch.zeros(2 * batch, 56, 56, device=device)
        mask[:batch, ::2] = 1

        def step():
            student(images, mask)[-1].float().mean().backward()
            with torch.no_grad():
                teacher(images[batch:])
    else:
        head = MODELS.build(dict(type='MultiLabelDecoderHead',
                                 num_classes=NUM_CLASSES,
                                 in_channels=case['channels'],
                                 **case['head'])).to(device)
        feats = torch.randn(2 * batch, case['channels'], 7, 7, device=device,
                            requires_grad=True)
        targets = (torch.rand(2 * batch, NUM_CLASSES, device=device)
                   < 1e-3).float()

        def step():
            logits, _ = head(feats)
            head.loss(logits, targets).backward()
            with torch.no_grad():
                head(feats[batch:].detach())

    def sync():
        if device.startswith('cuda'):
            torch.cuda.synchronize()

    step()  # warm-up (allocator, kernels)
    sync()
    clock = time.process_time if clock_name == 'process' else time.perf_counter
    start = clock()
    for _ in range(steps):
        step()
    sync()
    seconds = (clock() - start) / steps
    peak = step_peak_bytes(step, device)
    return dict(seconds=seconds, peak_mib=peak / 2**20)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch-size', type=int, default=2,
                        help='images per view (B); the student pass is 2B')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--steps', type=int, default=3)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--clock', choices=['process', 'wall'], default='process',
                        help='CPU seconds of the process or wall seconds')
    parser.add_argument('--skip', nargs='*', default=[],
                        help='skip cases whose name contains any of these')
    parser.add_argument('--case', help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.case:  # child process
        result = run_case(CASES[args.case], args.batch_size, args.device,
                          args.steps, args.threads, args.clock)
        print('RESULT ' + json.dumps(result))
        return

    results = {}
    for name in CASES:
        if any(s in name for s in args.skip):
            continue
        cmd = [sys.executable, __file__, '--case', name,
               '--batch-size', str(args.batch_size), '--device', args.device,
               '--steps', str(args.steps), '--threads', str(args.threads),
               '--clock', args.clock]
        out = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in out.stdout.splitlines()
                 if ln.startswith('RESULT ')]
        if out.returncode or not lines:
            print(f'{name}: failed (exit {out.returncode})\n'
                  f'{out.stderr[-2000:]}', file=sys.stderr)
            continue
        results[name] = json.loads(lines[-1][len('RESULT '):])
        print(f'  measured {name}: {results[name]}', file=sys.stderr)

    print(f'\nMulti-label decoder (C = {NUM_CLASSES}) vs backbone step, '
          f'B = {args.batch_size} per view, device = {args.device}, '
          f'threads = {args.threads}, clock = {args.clock}')
    header = (f'| {"case":38s} | step s    | peak MiB | time / backbone '
              f'| memory / backbone |')
    print(header)
    print('|' + '|'.join('-' * (len(c)) for c in header.split('|')[1:-1]) +
          '|')
    for name, res in results.items():
        ref = 'swin-b backbone' if 'swin-b' in name else 'tiny backbone'
        base = results.get(ref)
        ratio_t = ratio_m = '-'
        if base and res is not base:
            ratio_t = f'{res["seconds"] / base["seconds"]:.1%}'
            ratio_m = f'{res["peak_mib"] / max(base["peak_mib"], 1e-9):.1%}'
        print(f'| {name:38s} | {res["seconds"]:9.3f} | '
              f'{res["peak_mib"]:8.0f} | {ratio_t:>15s} | {ratio_m:>17s} |')
    print('step = student fwd+bwd on 2B rows + teacher fwd on B rows; '
          'memory = peak allocation above the step\'s start')


if __name__ == '__main__':
    main()
