"""Benchmark suite: asyncq against its peers (arq, saq, taskiq, streaq) on the same Redis.

Run ``python -m benchmarks --help``; ``benchmarks/README.md`` explains the method. Modules
that run inside a library's own interpreter (``spec``, ``measure``, ``protocol``,
``worker_main``, ``driver_main``, ``libs``) use only the standard library, because arq runs
in a virtual environment of its own that holds nothing but arq.
"""
