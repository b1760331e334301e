"""Performance benchmarks: scripts that print measured figures as ratios within one run.

Each module is a script (``python experiments/benchmarks/<name>.py --help``) with a
``--smoke-test`` mode; the figures and the commands that produced them are in docs/performance.md.
Timings on a shared machine are noisy, so every figure is a ratio of variants
measured in the same run, interleaved and repeated, and each script prints the hardware.
"""
