"""Peak memory that one training step adds, on CPU or CUDA (benchmarks only)."""
import torch

__all__ = ['step_peak_bytes']


def _cpu_step_peak_bytes(step) -> int:
    """Peak of the running sum of the CPU allocator's allocations and frees
    during ``step()``, recorded by ``torch.profiler(profile_memory=True)``
    (a process's RSS says nothing on a glibc-cached heap)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == '[memory]'
              and e.device_type() == torch.autograd.DeviceType.CPU]
    current = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        current += event.nbytes()
        peak = max(peak, current)
    return peak


def step_peak_bytes(step, device: str) -> int:
    """Bytes one ``step()`` adds at its peak on ``device`` ('cpu'/'cuda...')."""
    if not str(device).startswith('cuda'):
        return _cpu_step_peak_bytes(step)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base
