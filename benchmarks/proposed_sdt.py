"""Proposed fast kernels for the in-memory feature extraction (not in the package).

``stemfuse_hs.features.sdt.sdt`` and ``variance.variance_threshold`` express
everything as dask graphs, which for an eager array means three passes over
the raw data, each converting it to float32 and binning it again with a
strided ``reshape(...).sum(axis=(-3, -1))`` (about 3 s per GB of uint16 on
this machine). The kernels here compute the *same* features (same selected
pixels and channels; values equal to float32 rounding) from an in-memory
array in one pass over the raw data:

1. One numba pass (parallel over positions): 2 x 2 binning into a float32
   buffer (exact: sums of integers below 2**24) and each position's total.
2. In chunks of positions, on a pool of threads (numpy releases the GIL):
   scale to the mean total, accumulate the mean pattern, ``log1p`` in
   place, accumulate the sum and sum of squares of the logs (float64).
3. Standard-deviation map, beam, selection: the package's own functions
   (:func:`~stemfuse_hs.features.sdt.find_direct_beam`,
   :func:`~stemfuse_hs.features.sdt.select_top_fraction`).
4. The selected columns gathered (``np.take``) per chunk.

Benchmarked by ``benchmarks/run.py`` (the "proposed kernels" rows) and
checked there against the package's output. Proposed integration: an eager
fast path at the top of ``sdt()`` (and ``variance_threshold()``) for numpy
input, keeping the dask path for lazy data.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np

__all__ = ["bin_and_totals", "sdt_fast", "variance_fast"]

#: Positions per chunk of the numpy passes (a few MB: stays in cache).
CHUNK_POSITIONS = 64


def _threads():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_KERNELS = {}


def _numba_kernels():
    if _KERNELS:
        return _KERNELS
    import numba

    @numba.njit(parallel=True, cache=True, fastmath=False)
    def bin2(raw, out, totals):
        n, h, w = raw.shape
        hb = h // 2
        wb = w // 2
        for p in numba.prange(n):
            total = 0.0
            for i in range(hb):
                r0 = 2 * i
                for j in range(wb):
                    c0 = 2 * j
                    s = (
                        np.float32(raw[p, r0, c0])
                        + np.float32(raw[p, r0, c0 + 1])
                        + np.float32(raw[p, r0 + 1, c0])
                        + np.float32(raw[p, r0 + 1, c0 + 1])
                    )
                    out[p, i, j] = s
                    if s > 0:
                        total += s
            totals[p] = total

    @numba.njit(parallel=True, cache=True)
    def bin_any(raw, out, totals, b):
        n, h, w = raw.shape
        hb = h // b
        wb = w // b
        for p in numba.prange(n):
            total = 0.0
            for i in range(hb):
                for j in range(wb):
                    s = np.float32(0.0)
                    for di in range(b):
                        for dj in range(b):
                            s += np.float32(raw[p, i * b + di, j * b + dj])
                    out[p, i, j] = s
                    if s > 0:
                        total += s
            totals[p] = total

    _KERNELS.update(bin2=bin2, bin_any=bin_any)
    return _KERNELS


def bin_and_totals(flat, binning):
    """``(n, H, W)`` counts -> ``(n, H//b, W//b)`` float32 binned, ``(n,)`` float64 totals.

    Totals count positive binned values only (the package clips before
    its totals).
    """
    kernels = _numba_kernels()
    n, h, w = flat.shape
    out = np.empty((n, h // binning, w // binning), dtype=np.float32)
    totals = np.empty(n, dtype=np.float64)
    if binning == 2:
        kernels["bin2"](flat, out, totals)
    else:
        kernels["bin_any"](flat, out, totals, binning)
    return out, totals


def _chunks(n, size=CHUNK_POSITIONS):
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def _scales(totals):
    """Each position's factor to the scan's mean total (the package's ``normalize_by_total``)."""
    target = float(totals.mean()) if totals.size else 1.0
    positive = totals > 0
    return np.where(positive, target / np.where(positive, totals, 1.0), 1.0).astype(np.float32)


def sdt_fast(data, *, binning=2, fraction=0.4, normalize="total"):
    """Standard-deviation thresholding of in-memory patterns, as the package's ``sdt``.

    Same defaults and outputs as :func:`stemfuse_hs.features.sdt.sdt` with
    ``std_scale="log"`` and the beam found from the data (eager input only).
    """
    from stemfuse_hs.features.sdt import disk_mask, find_direct_beam, select_top_fraction

    data = np.asarray(data)
    nav_shape = data.shape[:-2]
    n = int(np.prod(nav_shape))
    flat = data.reshape((n,) + data.shape[-2:])
    binned, totals = bin_and_totals(flat, binning)
    hb, wb = binned.shape[1:]
    binned = binned.reshape(n, hb * wb)
    scale = _scales(totals) if normalize == "total" else np.ones(n, np.float32)
    signed = data.dtype.kind not in "ub"

    def pass_two(bounds):
        a, b = bounds
        x = binned[a:b]
        if normalize == "total":
            np.multiply(x, scale[a:b, None], out=x)
        mean = x.sum(axis=0, dtype=np.float64)
        if signed:
            np.maximum(x, 0, out=x)
        np.log1p(x, out=x)
        s1 = x.sum(axis=0, dtype=np.float64)
        s2 = np.einsum("ij,ij->j", x, x, dtype=np.float64)
        return mean, s1, s2

    chunks = _chunks(n)
    with ThreadPoolExecutor(_threads()) as pool:
        partial = list(pool.map(pass_two, chunks))
    mean = sum(p[0] for p in partial) / n
    s1 = sum(p[1] for p in partial) / n
    s2 = sum(p[2] for p in partial) / n
    std_map = np.sqrt(np.maximum(s2 - s1 * s1, 0.0)).astype(np.float32).reshape(hb, wb)
    mean_pattern = mean.astype(np.float32).reshape(hb, wb)
    centre, radius = find_direct_beam(mean_pattern)
    beam = disk_mask(std_map.shape, centre, radius) if radius > 0 else np.zeros(std_map.shape, bool)
    selected = select_top_fraction(std_map, ~beam, fraction)
    flat_index = np.flatnonzero(selected)
    features = np.empty((n, flat_index.size), dtype=np.float32)

    def gather(bounds):
        a, b = bounds
        np.take(binned[a:b], flat_index, axis=1, out=features[a:b])

    with ThreadPoolExecutor(_threads()) as pool:
        list(pool.map(gather, _chunks(n, 4 * CHUNK_POSITIONS)))
    return SimpleNamespace(
        features=features.reshape(nav_shape + (flat_index.size,)),
        std_map=std_map,
        mean_pattern=mean_pattern,
        beam_mask=beam,
        selected_mask=selected,
        beam_centre=centre,
        beam_radius=radius,
    )


def variance_fast(data, energies, *, resolution_mnka=130.0, normalize="total"):
    """Variance thresholding of an in-memory spectrum image, as the package's default (Poisson) rule.

    The same arithmetic as :func:`stemfuse_hs.features.variance.variance_threshold`
    without ``threshold``, ``quantile`` or exclusions, in numpy on the whole
    array (spectrum images are small next to 4D-STEM data).
    """
    from stemfuse_hs.features.variance import AUTO_SIGNIFICANCE, _fwhm_channels, _window_sum

    data = np.asarray(data)
    nav_shape = data.shape[:-1]
    n = int(np.prod(nav_shape))
    spectra = data.reshape(n, -1).astype(np.float32)
    if normalize == "total":
        totals = np.clip(spectra, 0, None).sum(axis=1, dtype=np.float64)
        scale = _scales(totals)
        spectra *= scale[:, None]
    else:
        scale = np.ones(n, np.float32)
    width = _fwhm_channels(np.asarray(energies, dtype=np.float64), resolution_mnka)
    windowed = _window_sum(spectra, width)
    variance = spectra.var(axis=0, dtype=np.float64)
    window_variance = windowed.var(axis=0, dtype=np.float64)
    window_noise = (windowed * scale[:, None]).mean(axis=0, dtype=np.float64)
    low_count = 1.0 / np.maximum(window_noise, 1e-12)
    spread = AUTO_SIGNIFICANCE * np.sqrt((2.0 + low_count) / max(n - 1, 1))
    ratio = np.divide(
        window_variance, window_noise * (1.0 + spread), out=np.zeros_like(window_variance), where=window_noise > 0
    )
    kept = ratio > 1.0
    index = np.flatnonzero(kept)
    features = np.log1p(np.clip(spectra[:, index], 0, None)).astype(np.float32)
    return SimpleNamespace(features=features.reshape(nav_shape + (index.size,)), kept=kept, variance=variance)
