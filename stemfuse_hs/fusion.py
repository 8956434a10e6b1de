"""Fusion of feature blocks from several modalities into one matrix.

Why not the reference arithmetic
--------------------------------
The reference notebook multiplies the EDS block by ``exp(2.4)`` and then
robust-scales every feature of the concatenation. Per-feature scaling
cancels a global factor on every feature whose interquartile range (IQR) is
non-zero, so the factor acts only on zero-IQR features (sparse, low-count
channels): its effect depends on the dataset's counts, not on the intention.
That arithmetic is kept as ``weighting="reference"`` to reproduce published
results.

What ``weighting="auto"`` does
------------------------------
1. Robust scaling *within* each block: every feature centred on its median
   and divided by its IQR (sparse features with zero IQR by the block's
   median IQR, see :func:`robust_statistics`).
2. Each block divided by its first singular value (as in multiple factor
   analysis): every block's leading direction gets variance 1, so a block
   does not dominate by having more features (6,000 diffraction pixels
   against 700 channels) or larger values.
3. A weight per block from what it carries on the data at hand: how
   clearly it separates the scan into distinct groups on its own
   (:func:`block_discreteness`). Phases are discrete; counting noise and the
   smooth changes of thickness and bending are not. A block that holds only
   noise (EDS when phases differ only in structure) or only a continuum
   (diffraction when they differ only in chemistry) gets a small weight
   instead of diluting the block that separates them. The block that
   separates best gets weight 1. User ``weights`` replace these.

All functions work on ``(n_positions, n_features)`` numpy or dask arrays.
Statistics come from a sample of whole scan rows of at most ``max_samples``
positions (exact for scans up to that size), so lazy inputs need one partial
pass and eager and lazy inputs give the same result.
"""

from dataclasses import dataclass, field

import dask.array as da
import numpy as np

from ._arrays import is_lazy_array
from ._validation import check_choice, check_int, check_real

__all__ = [
    "WEIGHTINGS",
    "FusionResult",
    "sample_rows",
    "robust_statistics",
    "block_discreteness",
    "fuse_blocks",
    "variance_shares",
]

WEIGHTINGS = ("auto", "equal", "reference")
#: Principal components of a block examined for discreteness.
N_DISCRETENESS_COMPONENTS = 5
#: Neighbouring positions averaged when judging a block's discreteness.
SMOOTHING_POSITIONS = 5
#: Below this discreteness no block separates anything: weights stay equal.
MIN_DISCRETENESS = 0.2


@dataclass
class FusionResult:
    """A fused feature matrix and how it was made.

    Attributes
    ----------
    matrix : numpy.ndarray or dask.array.Array
        ``(n_positions, n_features)`` float32, lazy if any block was.
    block_slices : list of (int, int)
        Column range of each block in ``matrix``.
    weights : numpy.ndarray
        The weight applied to each block (after its normalisation).
    normalizers : numpy.ndarray
        What each block was divided by (its first singular value; 1 for
        the reference weighting).
    discreteness : numpy.ndarray
        How clearly each block separates groups of positions on its own,
        0 to 1 (NaN where not computed); see :func:`block_discreteness`.
    parameters : dict
        Everything needed to repeat the fusion.
    """

    matrix: object
    block_slices: list
    weights: np.ndarray
    normalizers: np.ndarray
    discreteness: np.ndarray
    parameters: dict = field(default_factory=dict)


def sample_rows(scan_shape, max_samples):
    """Flat indices of a sample of whole scan rows, at most ``max_samples``.

    Whole rows keep horizontally neighbouring positions together, which
    :func:`block_discreteness` needs; rows are evenly spread over the scan.

    Examples
    --------
    >>> sample_rows((4, 3), 6).tolist()
    [0, 1, 2, 9, 10, 11]
    """
    rows, cols = _rows_cols(scan_shape)
    n_rows = max(1, min(rows, max_samples // max(cols, 1)))
    chosen = np.unique(np.linspace(0, rows - 1, n_rows).round().astype(int))
    return (chosen[:, None] * cols + np.arange(cols)[None, :]).ravel()


def _rows_cols(scan_shape):
    scan_shape = tuple(int(s) for s in scan_shape) or (1,)
    cols = scan_shape[-1]
    rows = int(np.prod(scan_shape[:-1])) if len(scan_shape) > 1 else 1
    return rows, cols


def _take_rows(values, index):
    taken = values[index]
    return np.asarray(taken.compute() if is_lazy_array(taken) else taken, dtype=np.float64)


def robust_statistics(sample, zero_iqr="block"):
    """Median and scale of every column.

    Parameters
    ----------
    sample : numpy.ndarray
        ``(n, p)``.
    zero_iqr : {"block", "one"}
        What divides a column whose IQR is zero (a sparse, low-count channel:
        mostly zeros with a few single counts): ``"block"``, the median IQR of
        the block's other columns, so that rare counts stay on the block's
        common scale instead of being blown up into outliers (dividing by
        their tiny standard deviation would make every position with a
        stray count a cluster of its own); ``"one"``, 1, as scikit-learn's
        ``RobustScaler`` does.

    Returns
    -------
    centre, scale : numpy.ndarray

    Examples
    --------
    >>> import numpy as np
    >>> sample = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 6.0]])
    >>> centre, scale = robust_statistics(sample)
    >>> centre.tolist(), scale.tolist()
    ([2.0, 1.0], [2.0, 2.0])
    """
    q25, centre, q75 = np.percentile(sample, [25, 50, 75], axis=0)
    scale = q75 - q25
    tiny = scale < 10 * np.finfo(np.float64).eps
    if zero_iqr == "one" or tiny.all():
        return centre, np.where(tiny, 1.0, scale)
    return centre, np.where(tiny, np.median(scale[~tiny]), scale)


def block_noise_scale(sample, scan_cols):
    """Size of the noise fluctuation of squared distances within a block.

    Counting noise differs from one probe position to the next while phase
    contrast, thickness and bending hardly do, so half the mean squared
    difference between horizontally adjacent positions estimates each
    feature's noise variance ``s_f``. The squared distance between two
    positions then fluctuates by about ``sqrt(sum_f s_f**2)`` from noise
    alone; the fourth root of that sum is returned, so that dividing a block
    by it gives every block the same noise fluctuation.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> round(block_noise_scale(rng.normal(0, 2, (100 * 50, 16)), 50), 1)
    4.0
    """
    if scan_cols < 2 or sample.shape[0] < 2 * scan_cols:
        return float("nan")
    rows = sample.reshape(-1, scan_cols, sample.shape[1])
    noise = 0.5 * np.mean(np.diff(rows, axis=1) ** 2, axis=(0, 1))
    return float(np.sum(noise**2) ** 0.25)


def _leading_components(sample, n_components):
    """Top singular values (per sqrt(n)) and right vectors of a centred sample."""
    from sklearn.utils.extmath import randomized_svd

    centred = sample - sample.mean(axis=0)
    k = int(min(n_components, min(centred.shape)))
    if k == 0 or not np.any(centred):
        return np.zeros(max(k, 1)), np.zeros((max(k, 1), sample.shape[1]))
    if min(centred.shape) <= 3 * k:
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        s, vt = s[:k], vt[:k]
    else:
        _, s, vt = randomized_svd(centred, k, n_iter=7, random_state=0)
    return s / np.sqrt(max(centred.shape[0], 1)), vt


def block_discreteness(sample, scan_cols, n_components=N_DISCRETENESS_COMPONENTS, smoothing=SMOOTHING_POSITIONS):
    """How clearly a block splits the scan into distinct groups on its own.

    Phases are discrete: positions fall into groups with a gap between them.
    Counting noise is not spatially coherent, and thickness or bending vary
    smoothly, giving a continuum without a gap. So: the block's leading
    principal-component scores are averaged over ``smoothing`` neighbouring
    positions along the fast scan axis (this diagnostic only, to lift
    phase contrast out of counting noise), split in two by k-means, and the
    depth of the density valley between the two groups along the line
    joining them is returned (see
    :func:`stemfuse_hs.clustering.valley_depth`).

    Parameters
    ----------
    sample : numpy.ndarray
        ``(n_rows * scan_cols, p)`` block values of whole scan rows.
    scan_cols : int
        Positions per row (the fast scan axis).
    n_components : int
        Leading principal components examined.
    smoothing : int
        Positions averaged along a row.

    Returns
    -------
    float
        In [0, 1]: about 0 for noise or a smooth continuum, near 1 for
        well separated groups.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> noise = rng.normal(size=(40 * 40, 20))
    >>> block_discreteness(noise, 40) < 0.3
    True
    >>> phase = np.repeat(np.arange(40) >= 20, 40)[:, None] * np.ones(20)
    >>> block_discreteness(noise + phase, 40) > 0.7
    True
    """
    from scipy.ndimage import uniform_filter1d
    from sklearn.cluster import KMeans

    from .clustering.cluster import valley_depth

    if sample.shape[0] < 8:
        return float("nan")
    singular, vt = _leading_components(sample, n_components)
    if singular[0] <= 0:
        return 0.0
    scores = (sample - sample.mean(axis=0)) @ vt.T
    if scan_cols >= 2 and smoothing > 1:
        rows = scores.reshape(-1, scan_cols, scores.shape[1])
        scores = uniform_filter1d(rows, size=min(smoothing, scan_cols), axis=1, mode="nearest").reshape(scores.shape)
    groups = KMeans(2, n_init=4, random_state=0).fit_predict(scores)
    if groups.min() == groups.max():
        return 0.0
    direction = scores[groups == 1].mean(axis=0) - scores[groups == 0].mean(axis=0)
    norm = np.linalg.norm(direction)
    if norm == 0:
        return 0.0
    projected = scores @ (direction / norm)
    return valley_depth(projected[groups == 0], projected[groups == 1])


def _affine(values, multiplier, offset):
    """``values * multiplier - offset`` per column, as float32 (lazy stays lazy)."""
    multiplier = np.asarray(multiplier, dtype=np.float32)
    offset = np.asarray(offset, dtype=np.float32)
    if is_lazy_array(values):
        return values.astype(np.float32) * multiplier - offset
    return np.asarray(values, dtype=np.float32) * multiplier - offset


def fuse_blocks(
    blocks,
    scan_shape,
    *,
    weights=None,
    weighting="auto",
    reference_factors=None,
    max_samples=50_000,
):
    """Fuse ``(n_positions, n_features_b)`` blocks into one weighted matrix.

    Parameters
    ----------
    blocks : sequence of array_like
        One ``(n_positions, n_features)`` array per modality (numpy or dask).
    scan_shape : tuple of int
        Navigation shape in array order (rows, columns); positions are
        row-major in the blocks.
    weights : sequence of float, optional
        One non-negative weight per block, replacing the automatic weights
        (``"auto"``) or the ones (``"equal"``). Ignored by ``"reference"``.
    weighting : {"auto", "equal", "reference"}, default "auto"
        See the module documentation. ``"reference"`` multiplies block ``b``
        by ``reference_factors[b]`` and robust-scales the concatenation per
        feature with scikit-learn's rules, exactly as the reference notebook.
    reference_factors : sequence of float, optional
        Multipliers for ``"reference"`` (the notebook: 1 for diffraction,
        ``exp(2.4)`` for EDS). Required with ``"reference"``.
    max_samples : int, default 50000
        Largest number of positions the statistics are computed on.

    Returns
    -------
    FusionResult

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(100, 5)), rng.normal(size=(100, 3))
    >>> fused = fuse_blocks([a, b], (10, 10), weighting="equal")
    >>> fused.matrix.shape, fused.block_slices
    ((100, 8), [(0, 5), (5, 8)])
    """
    check_choice("weighting", weighting, WEIGHTINGS)
    max_samples = check_int("max_samples", max_samples, minimum=1)
    if len(blocks) < 1:
        raise ValueError("fuse_blocks needs at least one block.")
    n_positions = int(np.prod(scan_shape)) if len(scan_shape) else 1
    for i, block in enumerate(blocks):
        if block.ndim != 2 or block.shape[0] != n_positions:
            raise ValueError(
                f"block {i} has shape {block.shape}, expected ({n_positions}, n_features) for scan {tuple(scan_shape)}."
            )
        if block.shape[1] == 0:
            raise ValueError(f"block {i} has no features.")
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64).ravel()
        if weights.shape != (len(blocks),):
            raise ValueError(f"weights has {weights.size} values for {len(blocks)} blocks; give one per block.")
        if not np.all(np.isfinite(weights)) or np.any(weights < 0) or not np.any(weights > 0):
            raise ValueError(f"weights must be finite, non-negative and not all zero, got {weights.tolist()}.")

    index = sample_rows(scan_shape, max_samples)
    _, cols = _rows_cols(scan_shape)
    samples = [_take_rows(block, index) for block in blocks]
    slices, start = [], 0
    for block in blocks:
        slices.append((start, start + block.shape[1]))
        start += block.shape[1]

    if weighting == "reference":
        if reference_factors is None or len(reference_factors) != len(blocks):
            raise ValueError("weighting='reference' needs one reference factor per block.")
        factors = np.asarray(reference_factors, dtype=np.float64)
        scaled = []
        for block, sample, factor in zip(blocks, samples, factors):
            # RobustScaler on the multiplied block: (x * factor - median) / IQR.
            centre, scale = robust_statistics(sample * factor, zero_iqr="one")
            scaled.append(_affine(block, factor / scale, centre / scale))
        normalizers = np.ones(len(blocks))
        discreteness = np.full(len(blocks), np.nan)
        used = factors
    else:
        scaled_samples, stats = [], []
        for sample in samples:
            centre, scale = robust_statistics(sample)
            stats.append((centre, scale))
            scaled_samples.append((sample - centre) / scale)
        normalizers = np.array([max(_leading_components(s, 1)[0][0], 1e-12) for s in scaled_samples])
        discreteness = np.array(
            [block_discreteness(s / n, cols) for s, n in zip(scaled_samples, normalizers)]
        )
        if weights is not None:
            used = weights
        elif (
            weighting == "equal"
            or not np.all(np.isfinite(discreteness))
            or discreteness.max() < MIN_DISCRETENESS
        ):
            used = np.ones(len(blocks))
        else:
            used = discreteness / discreteness.max()
        scaled = [
            _affine(block, weight / (norm * scale), centre * weight / (norm * scale))
            for block, (centre, scale), weight, norm in zip(blocks, stats, used, normalizers)
        ]
    lazy = any(is_lazy_array(s) for s in scaled)
    matrix = da.concatenate(scaled, axis=1) if lazy else np.concatenate(scaled, axis=1)
    parameters = {
        "weighting": weighting,
        "weights_given": weights is not None,
        "max_samples": max_samples,
        "n_sampled_positions": int(index.size),
    }
    if reference_factors is not None:
        parameters["reference_factors"] = np.asarray(reference_factors, dtype=float)
    return FusionResult(
        matrix=matrix,
        block_slices=slices,
        weights=np.asarray(used, dtype=np.float64),
        normalizers=normalizers,
        discreteness=discreteness,
        parameters=parameters,
    )


def variance_shares(matrix, block_slices, max_samples=50_000, scan_shape=None):
    """Share of the fused matrix's total variance held by each block.

    This is what a block weight does to the distances UMAP sees: squared
    Euclidean distances add up over features, so a block's share of the
    total variance is its share of the average squared distance.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.hstack([np.ones((10, 1)) * np.arange(10)[:, None], np.zeros((10, 2))])
    >>> variance_shares(m, [(0, 1), (1, 3)]).tolist()
    [1.0, 0.0]
    """
    n = matrix.shape[0]
    index = sample_rows(scan_shape or (n,), max_samples)
    sample = _take_rows(matrix, index)
    per_feature = sample.var(axis=0)
    totals = np.array([per_feature[a:b].sum() for a, b in block_slices])
    whole = totals.sum()
    return totals / whole if whole > 0 else np.full(len(block_slices), np.nan)
