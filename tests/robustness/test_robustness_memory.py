"""Robustness: eager work that would not fit in memory is refused beforehand.

A MemoryError with the sizes and what to do (work lazily; for clustering:
fewer features or a smaller scan) beats the system's out-of-memory killer.
The available memory is monkeypatched, so nothing large is allocated.
"""

import re

import numpy as np
import pytest

import hyperspy.api as hs
import stemfuse_hs
from stemfuse_hs import _arrays

SDT_KW = dict(binning=1, fraction=0.5, beam_centre=(3.5, 3.5), beam_radius=1)


@pytest.fixture(scope="module")
def signals():
    rng = np.random.default_rng(0)
    patterns = rng.poisson(4.0, size=(6, 8, 8, 8)).astype(np.uint16)
    patterns[:3, ..., 1, 6] += 30
    spectra = rng.poisson(1.0, size=(6, 8, 32)).astype(np.uint16)
    spectra[:3, ..., 10] += 20
    dp = hs.signals.Signal2D(patterns)
    eds = hs.signals.Signal1D(spectra)
    eds.axes_manager.signal_axes[0].units = "keV"
    return dp, eds


@pytest.fixture
def little_memory(monkeypatch):
    """Pretend that only 1 KiB is available."""
    monkeypatch.setattr(_arrays, "available_memory", lambda: 1024)


def test_available_memory_is_a_positive_byte_count():
    available = _arrays.available_memory()
    assert available is None or (isinstance(available, int) and available > 0)


def test_eager_extraction_is_refused_and_lazy_suggested(signals, little_memory):
    dp, eds = signals
    with pytest.raises(MemoryError) as excinfo:
        stemfuse_hs.sdt_features(dp, **SDT_KW)
    message = str(excinfo.value)
    assert re.search(r"sdt: the 48 x \d+ float32 features of this in-memory data need about [\d.]+ KiB of memory, but only 1 KiB is available", message), message
    assert "hs.load(..., lazy=True)" in message and "signal.as_lazy()" in message
    with pytest.raises(MemoryError, match=r"variance_threshold: the 48 x \d+ float32 features .* lazy=True"):
        stemfuse_hs.variance_features(eds, quantile=0.8)


def test_lazy_extraction_is_not_refused(signals, little_memory):
    dp, eds = signals
    features = stemfuse_hs.sdt_features(dp.as_lazy(), **SDT_KW)
    variance = stemfuse_hs.variance_features(eds.as_lazy(), quantile=0.8)
    assert features._lazy and variance._lazy


def test_eager_fusion_is_refused(signals, monkeypatch):
    dp, eds = signals
    features = stemfuse_hs.sdt_features(dp, **SDT_KW)
    variance = stemfuse_hs.variance_features(eds, quantile=0.8)
    monkeypatch.setattr(_arrays, "available_memory", lambda: 1024)
    with pytest.raises(MemoryError, match=r"fuse: the 48 x \d+ float32 fused features need about .* lazy=True"):
        stemfuse_hs.fuse(features, variance)
    lazy = stemfuse_hs.fuse(features.as_lazy(), variance.as_lazy())
    assert lazy._lazy


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_cluster_is_refused_before_reading_the_features(signals, monkeypatch, lazy):
    dp, eds = signals
    fused = stemfuse_hs.fuse(dp.as_lazy() if lazy else dp, eds.as_lazy() if lazy else eds)
    import stemfuse_hs.clustering.embed_and_cluster as module

    monkeypatch.setattr(_arrays, "available_memory", lambda: 1024)
    monkeypatch.setattr(module, "embed", lambda *a, **k: pytest.fail("embedding started"))
    with pytest.raises(MemoryError) as excinfo:
        fused.cluster(n_neighbors=5)
    message = str(excinfo.value)
    assert message.startswith(f"cluster: the 48 x {fused.data.shape[-1]} float32 feature matrix"), message
    assert "fewer features" in message and "crop or bin the scan" in message


def test_enough_memory_passes(signals, monkeypatch):
    dp, _ = signals
    monkeypatch.setattr(_arrays, "available_memory", lambda: 2**40)
    assert stemfuse_hs.sdt_features(dp, **SDT_KW).data.shape[:2] == (6, 8)
    monkeypatch.setattr(_arrays, "available_memory", lambda: None)  # unknown: no check
    assert stemfuse_hs.sdt_features(dp, **SDT_KW).data.shape[:2] == (6, 8)


def test_lazy_matrix_is_computed_block_by_block_into_one_array():
    # cluster() computes lazy features with compute_in_blocks: the same
    # values as dask's compute, whatever the block size.
    import dask.array as da
    import numpy as np

    x = da.random.RandomState(0).random_sample((50, 7, 3), chunks=((4,) * 12 + (2,), 7, 3))
    expected = x.compute().astype(np.float32)
    for max_bytes in (1, 300, 10**9):
        out = _arrays.compute_in_blocks(x, max_bytes=max_bytes)
        assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(out, expected)
