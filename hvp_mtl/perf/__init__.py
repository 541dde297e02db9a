"""Measurement helpers of the speed and memory benchmarks under ``tools/perf/``.

Shared by several benchmarks and by tests, so they live in the package: the timed step cases
(:mod:`.step_cases`), interleaved timing and its quantiles (:mod:`.timing`), peak memory of one
step (:mod:`.peak_memory`) and of a process (:mod:`.process_rss`), generated Tencent ML-Images
lists (:mod:`.synthetic_ml_images`) and the GPU suite's training part
(:mod:`.gpu_suite_training`). Nothing is imported eagerly: import the module you need.
"""
