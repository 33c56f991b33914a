"""Benchmarks: AM kernels against the native op, measured in the same run.

Each section module provides ``run(args) -> list[dict]`` rows and
``add_arguments(parser)``; `approxtrain bench` runs the sections available.
"""
