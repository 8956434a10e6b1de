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

from ._checks import check_weights
from ._arrays import LAZY_ADVICE, check_memory, describe_positions, is_lazy_array, one_thread_arithmetic
from ._kernels import n_threads
from ._validation import check_array, check_choice, check_int, check_numeric_dtype, check_scan_shape

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
    excluded : numpy.ndarray
        ``(n_positions,)`` boolean mask of the positions left out of every
        statistic; their rows of ``matrix`` are 0 (every feature's centre).
    """

    matrix: object
    block_slices: list
    weights: np.ndarray
    normalizers: np.ndarray
    discreteness: np.ndarray
    parameters: dict = field(default_factory=dict)
    excluded: np.ndarray = None


def sample_rows(scan_shape, max_samples):
    """Flat indices of a sample of whole scan rows, at most ``max_samples``.

    Whole rows keep horizontally neighbouring positions together, which
    :func:`block_discreteness` needs; rows are evenly spread over the scan.

    Examples
    --------
    >>> sample_rows((4, 3), 6).tolist()
    [0, 1, 2, 9, 10, 11]
    """
    scan_shape = check_scan_shape(scan_shape)
    max_samples = check_int("max_samples", max_samples, minimum=1)
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
    """The sampled rows, float32 if the block is (features are), else float64."""
    taken = values[index]
    dtype = np.float32 if values.dtype == np.float32 else np.float64
    return np.asarray(taken.compute() if is_lazy_array(taken) else taken, dtype=dtype)


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
    check_choice("zero_iqr", zero_iqr, ("block", "one"))
    sample = check_array("sample", sample, ndim=2)
    if sample.shape[0] == 0:
        raise ValueError("sample has no rows: the statistics need at least one position.")
    q25, centre, q75 = _column_quartiles(sample)
    scale = q75 - q25
    tiny = scale < 10 * np.finfo(np.float64).eps
    if zero_iqr == "one" or tiny.all():
        return centre, np.where(tiny, 1.0, scale)
    return centre, np.where(tiny, np.median(scale[~tiny]), scale)


def _column_quartiles(sample):
    """``np.percentile(sample, [25, 50, 75], axis=0)`` (linear interpolation), faster.

    One partition of the contiguous transposed sample finds every order
    statistic needed, instead of numpy's strided partitions along axis 0;
    groups of columns go to a pool of threads (numpy releases the GIL).
    """
    from concurrent.futures import ThreadPoolExecutor

    last = sample.shape[0] - 1
    virtual = [q * last for q in (0.25, 0.5, 0.75)]
    kth = sorted({int(np.floor(v)) for v in virtual} | {int(np.ceil(v)) for v in virtual})

    def quartiles_of(columns):
        # A copy always: the transpose of a Fortran-ordered sample is already
        # C-contiguous, and partitioning it would reorder the caller's array.
        values = np.array(sample[:, columns].T, order="C")
        values.partition(kth, axis=1)
        out = []
        for v in virtual:
            below = values[:, int(np.floor(v))].astype(np.float64)
            above = values[:, int(np.ceil(v))].astype(np.float64)
            t = v - np.floor(v)
            # numpy's lerp: from the nearer end, so that t = 0 or 1 is exact.
            difference = above - below
            out.append(below + difference * t if t < 0.5 else above - difference * (1 - t))
        return out

    groups = [slice(a, a + 512) for a in range(0, sample.shape[1], 512)]
    with ThreadPoolExecutor(n_threads()) as pool:
        parts = list(pool.map(quartiles_of, groups))
    return [np.concatenate([part[i] for part in parts]) for i in range(3)]


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

    # float32 halves the memory traffic of the products; five components
    # of a few thousand features do not need more digits.
    centred = np.subtract(sample, sample.mean(axis=0), dtype=np.float32)
    k = int(min(n_components, min(centred.shape)))
    if k == 0 or not np.any(centred):
        return np.zeros(max(k, 1)), np.zeros((max(k, 1), sample.shape[1]))
    if min(centred.shape) <= 3 * k:
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        s, vt = s[:k], vt[:k]
    else:
        # Four power iterations: the leading five components have converged.
        _, s, vt = randomized_svd(centred, k, n_iter=4, random_state=0)
    return s / np.sqrt(max(centred.shape[0], 1)), vt


def block_discreteness(
    sample,
    scan_cols,
    n_components=N_DISCRETENESS_COMPONENTS,
    smoothing=SMOOTHING_POSITIONS,
    valid=None,
    components=None,
):
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
    valid : numpy.ndarray, optional
        ``(n_rows * scan_cols,)`` boolean: the positions to judge by; the
        others (excluded positions) enter no statistic and are skipped by
        the smoothing.
    components : tuple of numpy.ndarray, optional
        ``(singular_values, right_vectors)`` of the valid rows of ``sample``
        (centred), already computed by the caller: :func:`fuse_blocks`
        decomposes each block once for its normaliser and this.

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

    from .clustering.separability import valley_depth

    sample = check_array("sample", sample, ndim=2)
    scan_cols = check_int("scan_cols", scan_cols, minimum=1)
    n_components = check_int("n_components", n_components, minimum=1)
    smoothing = check_int("smoothing", smoothing, minimum=1)
    if sample.shape[0] % scan_cols:
        raise ValueError(f"sample has {sample.shape[0]} rows, not a whole number of scan rows of {scan_cols}.")
    valid = np.ones(sample.shape[0], dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if valid.shape != (sample.shape[0],):
        raise ValueError(f"valid has shape {valid.shape}, expected ({sample.shape[0]},).")
    if valid.sum() < 8:
        return float("nan")
    if components is None:
        singular, vt = _leading_components(sample[valid], n_components)
    else:
        singular, vt = (np.asarray(c) for c in components)
        singular, vt = singular[:n_components], vt[:n_components]
    if singular[0] <= 0:
        return 0.0
    included = sample if valid.all() else sample[valid]
    scores = (sample - included.mean(axis=0, dtype=np.float64).astype(sample.dtype)) @ vt.T.astype(sample.dtype)
    if scan_cols >= 2 and smoothing > 1:
        # Normalised convolution: excluded positions weigh nothing in the
        # averages of their neighbours.
        size = min(smoothing, scan_cols)
        weight = valid.astype(np.float64).reshape(-1, scan_cols, 1)
        rows = np.where(weight > 0, scores.reshape(-1, scan_cols, scores.shape[1]), 0.0)
        summed = uniform_filter1d(rows, size=size, axis=1, mode="nearest")
        counts = uniform_filter1d(weight, size=size, axis=1, mode="nearest")
        scores = np.divide(summed, counts, out=np.zeros_like(summed), where=counts > 0).reshape(scores.shape)
    scores = scores[valid]
    groups = KMeans(2, n_init=4, random_state=0).fit_predict(scores)
    if groups.min() == groups.max():
        return 0.0
    direction = scores[groups == 1].mean(axis=0) - scores[groups == 0].mean(axis=0)
    norm = np.linalg.norm(direction)
    if norm == 0:
        return 0.0
    projected = scores @ (direction / norm)
    return valley_depth(projected[groups == 0], projected[groups == 1])


def _block_statistics(sample, valid, cols):
    """A block's robust centre and scale, normaliser and discreteness, from its sample."""
    centre, scale = robust_statistics(sample[valid])
    scaled = np.subtract(sample, centre, dtype=sample.dtype)
    scaled /= scale.astype(sample.dtype)
    scaled[~valid] = 0.0
    # One decomposition per block serves its normaliser (the first
    # singular value) and its discreteness (the leading components).
    singular, vt = _leading_components(scaled if valid.all() else scaled[valid], N_DISCRETENESS_COMPONENTS)
    normalizer = max(singular[0], 1e-12)
    scaled /= normalizer
    discreteness = block_discreteness(scaled, cols, valid=valid, components=(singular / normalizer, vt))
    return centre, scale, normalizer, discreteness


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
    max_samples=10_000,
    excluded=None,
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
    max_samples : int, default 10000
        Largest number of positions the statistics are computed on (the
        medians, IQRs and leading singular values of a block settle long
        before that; a larger sample costs several float64 copies of it:
        50,000 positions of 6,745 features peaked at 13.7 GiB).
    excluded : array_like of bool, optional
        ``(n_positions,)`` (or scan-shaped) positions to leave out of every
        statistic (robust scaling, normalisers, discreteness); their rows of
        the fused matrix are set to 0, every feature's centre. Any other
        position holding NaN or inf is refused (for dask blocks: when
        computed).

    Returns
    -------
    FusionResult

    Raises
    ------
    MemoryError
        If the blocks are in memory and the fused matrix would not fit.

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
    scan_shape = check_scan_shape(scan_shape)
    if isinstance(blocks, (str, bytes)) or not hasattr(blocks, "__len__"):
        raise TypeError(f"blocks must be a sequence of 2-D arrays, got {type(blocks).__name__}.")
    if len(blocks) < 1:
        raise ValueError("fuse_blocks needs at least one block.")
    n_positions = int(np.prod(scan_shape)) if len(scan_shape) else 1
    blocks = [b if is_lazy_array(b) else np.asarray(b) for b in blocks]
    for i, block in enumerate(blocks):
        check_numeric_dtype(f"block {i}", block.dtype)
        if block.ndim != 2 or block.shape[0] != n_positions:
            raise ValueError(
                f"block {i} has shape {block.shape}, expected ({n_positions}, n_features) for scan {tuple(scan_shape)}."
            )
        if block.shape[1] == 0:
            raise ValueError(f"block {i} has no features.")
    if weights is not None:
        weights = np.asarray(check_weights(weights, len(blocks)), dtype=np.float64)
    if reference_factors is not None:
        try:
            reference_factors = np.asarray(reference_factors, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise TypeError(f"reference_factors must be a sequence of numbers, got {reference_factors!r}.") from None
        if not np.all(np.isfinite(reference_factors)) or np.any(reference_factors <= 0):
            raise ValueError(f"reference_factors must be finite and positive, got {reference_factors.tolist()}.")
    if excluded is None:
        excluded = np.zeros(n_positions, dtype=bool)
    else:
        excluded = np.asarray(excluded)
        if excluded.dtype != bool or excluded.size != n_positions:
            raise ValueError(
                f"excluded must be a boolean mask of the {n_positions} positions, got dtype {excluded.dtype} "
                f"and shape {excluded.shape}."
            )
        excluded = excluded.reshape(n_positions)
    if n_positions - excluded.sum() < 2:
        raise ValueError(f"fuse_blocks: {int(n_positions - excluded.sum())} position(s) left after exclusion; at least two are needed.")
    if not any(is_lazy_array(b) for b in blocks):
        check_memory(2 * n_positions * sum(b.shape[1] for b in blocks) * 4,
                     f"fuse: the {n_positions} x {sum(b.shape[1] for b in blocks)} float32 fused features", LAZY_ADVICE)

    index = sample_rows(scan_shape, max_samples)
    valid = ~excluded[index]
    if not valid.any():
        # Every sampled row is excluded: take the included positions instead.
        index = np.flatnonzero(~excluded)[:max_samples]
        valid = np.ones(index.size, dtype=bool)
    _, cols = _rows_cols(scan_shape)
    if index.size % cols:
        cols = index.size  # a sample of scattered positions: no rows to smooth along
    samples = [_take_rows(block, index) for block in blocks]
    for i, (block, sample) in enumerate(zip(blocks, samples)):
        if is_lazy_array(block):
            # Only the sample is in memory; the rest is checked when computed.
            bad = np.zeros(n_positions, dtype=bool)
            bad[index[~np.isfinite(sample).all(axis=1) & valid]] = True
        else:
            bad = ~np.isfinite(block).all(axis=1) & ~excluded
        if bad.any():
            raise ValueError(
                f"block {i} holds NaN or inf at {describe_positions(bad.reshape(scan_shape))}; "
                "leave those positions out with excluded= (fuse: nan_policy='exclude')."
            )
    for sample in samples:
        sample[~valid] = 0.0
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
            centre, scale = robust_statistics(sample[valid] * factor, zero_iqr="one")
            scaled.append(_affine(block, factor / scale, centre / scale))
        normalizers = np.ones(len(blocks))
        discreteness = np.full(len(blocks), np.nan)
        used = factors
    else:
        stats, normalizers, discreteness = [], [], []
        for sample in samples:
            with one_thread_arithmetic():
                centre, scale, normalizer, block_discrete = _block_statistics(sample, valid, cols)
            stats.append((centre, scale))
            normalizers.append(normalizer)
            discreteness.append(block_discrete)
        normalizers, discreteness = np.array(normalizers), np.array(discreteness)
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
    if lazy:
        # Values outside the sample are seen only when computed: refuse
        # NaN/inf there rather than pass them on.
        keep = da.from_array(~excluded, chunks=(matrix.chunks[0],))
        matrix = da.map_blocks(_finite_or_zero, matrix, keep[:, None], dtype=np.float32)
    elif excluded.any():
        matrix[excluded] = 0.0
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
        excluded=excluded,
    )


def _finite_or_zero(block, keep):
    """Zero the excluded rows; refuse NaN/inf in the others (raised when computed)."""
    keep = np.asarray(keep).reshape(-1)
    block = np.where(keep[:, None], block, np.float32(0)).astype(np.float32, copy=False)
    if not np.all(np.isfinite(block)):
        raise ValueError(
            "fuse: a block holds NaN or inf at positions not excluded; fuse again with nan_policy='exclude'."
        )
    return block


def variance_shares(matrix, block_slices, max_samples=50_000, scan_shape=None, excluded=None):
    """Share of the fused matrix's total variance held by each block.

    This is what a block weight does to the distances UMAP sees: squared
    Euclidean distances add up over features, so a block's share of the
    total variance is its share of the average squared distance.

    Parameters
    ----------
    matrix : numpy.ndarray or dask.array.Array
        ``(n_positions, n_features)`` fused features.
    block_slices : sequence of (int, int)
        Column range of each block.
    max_samples : int, default 50000
    scan_shape : tuple of int, optional
        Navigation shape (rows, columns), for sampling whole rows.
    excluded : array_like of bool, optional
        ``(n_positions,)`` positions left out.

    Returns
    -------
    numpy.ndarray
        One share per block; NaN for all when nothing varies.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.hstack([np.ones((10, 1)) * np.arange(10)[:, None], np.zeros((10, 2))])
    >>> variance_shares(m, [(0, 1), (1, 3)]).tolist()
    [1.0, 0.0]
    """
    matrix = matrix if is_lazy_array(matrix) else check_array("matrix", matrix, ndim=2)
    if matrix.ndim != 2:
        raise ValueError(f"matrix must be 2-dimensional, got shape {matrix.shape}.")
    n = matrix.shape[0]
    scan_shape = check_scan_shape(scan_shape or (n,))
    if int(np.prod(scan_shape)) != n:
        raise ValueError(f"scan_shape {scan_shape} does not have the matrix's {n} positions.")
    if isinstance(block_slices, (str, bytes)) or not hasattr(block_slices, "__iter__"):
        raise TypeError(f"block_slices must be a list of (start, stop) column ranges, got {block_slices!r}.")
    slices = []
    for item in block_slices:
        if np.ndim(item) != 1 or len(item) != 2:
            raise ValueError(f"block_slices must be a list of (start, stop) column ranges, got {item!r}.")
        a, b = (check_int("block_slices", int(v) if isinstance(v, np.integer) else v, minimum=0) for v in item)
        if not a < b <= matrix.shape[1]:
            raise ValueError(f"block_slices: ({a}, {b}) is not a range of the matrix's {matrix.shape[1]} columns.")
        slices.append((a, b))
    index = sample_rows(scan_shape, max_samples)
    if excluded is not None:
        excluded = np.asarray(excluded, dtype=bool).reshape(-1)
        if excluded.size != n:
            raise ValueError(f"excluded has {excluded.size} values for {n} positions.")
        index = index[~excluded[index]]
        if not index.size:
            index = np.flatnonzero(~excluded)[:max_samples]
    sample = _take_rows(matrix, index)
    per_feature = sample.var(axis=0)
    totals = np.array([per_feature[a:b].sum() for a, b in slices])
    whole = totals.sum()
    return totals / whole if whole > 0 else np.full(len(slices), np.nan)
