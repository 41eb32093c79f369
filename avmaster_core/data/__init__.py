"""Benchmarks (floor 2): the dataset registry, official annotation files -> records, scoring in the paper's
table layouts, downloads, the synthetic benchmark, released .npy folders. Imports the core (and pandas).
"""
