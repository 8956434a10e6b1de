"""Thin HyperSpy signal classes and signal-level functions over the array core.

Modules here translate between signals and arrays (axes, metadata, lazy
twins) and call :mod:`stemfuse_hs.features`, :mod:`stemfuse_hs.fusion` and
:mod:`stemfuse_hs.clustering`; they hold no algorithm.
"""
