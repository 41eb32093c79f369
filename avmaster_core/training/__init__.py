"""Training (floor 4): run configurations, the engine, evaluation, torchrun, the GPU fast path, threads,
preflight checks, sweeps and the speed benchmark. Imports core, data and extract.
"""
