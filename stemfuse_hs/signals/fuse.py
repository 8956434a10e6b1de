"""Fusion of signals of one scan into a single feature signal."""

import warnings

import numpy as np

from .._progress import dask_progress
from .._validation import check_real
from ..fusion import fuse_blocks, variance_shares
from ._axes import build_signal, index_axis, navigation_axes_dicts

__all__ = ["fuse", "block_shares", "REFERENCE_EDS_FACTOR"]

#: The reference notebook's EDS scaling exponent: features * exp(2.4).
REFERENCE_EDS_FACTOR = 2.4


def _as_feature_signal(signal, position):
    """A feature signal for ``signal``: itself, or default features of raw data."""
    from hyperspy.signal import BaseSignal

    from .extract import sdt_features, variance_features

    if not isinstance(signal, BaseSignal):
        raise TypeError(f"fuse: argument {position} is a {type(signal).__name__}, not a HyperSpy signal.")
    if signal.metadata.has_item("Features") or signal.metadata.has_item("Fusion"):
        return signal
    dim = signal.axes_manager.signal_dimension
    if dim == 2:
        return sdt_features(signal)
    if dim == 1:
        return variance_features(signal)
    raise ValueError(
        f"fuse: argument {position} has signal dimension {dim}; expected 4D-STEM data (2), "
        "a spectrum image (1) or features from sdt_features/variance_features."
    )


def _block_name(features, taken):
    extractor = features.metadata.get_item("Features.extractor", None)
    base = {"sdt": "diffraction", "variance": "eds"}.get(extractor, "features")
    if features.metadata.has_item("Fusion"):
        base = "fused"
    name, i = base, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    return name


def _check_same_scan(signals):
    first = signals[0].axes_manager
    for position, signal in enumerate(signals[1:], start=2):
        other = signal.axes_manager
        if other.navigation_shape != first.navigation_shape:
            hint = ""
            if tuple(reversed(other.navigation_shape)) == first.navigation_shape:
                hint = " The second looks transposed (rows and columns swapped): use .T on its navigation, e.g. signal.transpose(signal_axes=...)."
            raise ValueError(
                "fuse: the signals are not of the same scan: navigation shapes "
                f"{first.navigation_shape} (argument 1) and {other.navigation_shape} (argument {position}).{hint}"
            )
        for a, b in zip(first.navigation_axes, other.navigation_axes):
            if a.units != b.units or not np.isclose(a.scale, b.scale, rtol=1e-3):
                warnings.warn(
                    f"fuse: navigation axis {a.index_in_axes_manager} differs between argument 1 "
                    f"({a.scale:g} {a.units}) and argument {position} ({b.scale:g} {b.units}); "
                    "fusing by position index.",
                    UserWarning,
                    stacklevel=3,
                )


def fuse(
    *signals,
    weights=None,
    weighting="auto",
    reference_factor=REFERENCE_EDS_FACTOR,
    max_samples=50_000,
    show_progressbar=None,
):
    """Fuse signals of the same scan into one feature signal for clustering.

    Parameters
    ----------
    *signals : hyperspy signals
        Two or more signals over the same scan: raw 4D-STEM data (gets
        :func:`~stemfuse_hs.sdt_features` with its defaults), a spectrum
        image (gets :func:`~stemfuse_hs.variance_features`), or features
        already extracted (any parameters). None is modified.
    weights : sequence of float, optional
        One weight per signal. With ``weighting="auto"`` or ``"equal"`` they
        replace the automatic (or unit) block weights, applied after each
        block's normalisation; with ``"reference"`` they are the multipliers
        of each block before the joint robust scaling.
    weighting : {"auto", "equal", "reference"}, default "auto"
        ``"auto"``: robust scaling within each block, each block divided by
        its first singular value, then weighted by how clearly it separates
        groups of positions on its own (noise or a smooth continuum gets
        little weight). ``"equal"``: the
        same without the adaptive weights. ``"reference"``: the reference
        notebook's arithmetic (EDS block times ``exp(reference_factor)``,
        then scikit-learn's ``RobustScaler`` on the concatenation). See
        :mod:`stemfuse_hs.fusion` for why.
    reference_factor : float, default 2.4
        Exponent of the EDS multiplier for ``weighting="reference"``.
    max_samples : int, default 50000
        Positions used for the scaling statistics (all when the scan is
        smaller; otherwise evenly spread whole rows).
    show_progressbar : bool, optional

    Returns
    -------
    FusedSTEMSignal
        ``(*scan | n_features)``, lazy if any input is. ``metadata.Fusion``
        records each block's name, source, feature range, weight and
        normaliser, and the weighting parameters.

    Examples
    --------
    >>> import hyperspy.api as hs
    >>> import stemfuse_hs
    >>> scan = stemfuse_hs.data.synthetic_scan("four_phases", size="tiny")
    >>> fused = hs.fuse(scan.dp, scan.eds)
    >>> sorted(fused.block_shares())
    ['diffraction', 'eds']
    """
    if len(signals) < 2:
        raise ValueError(f"fuse needs two or more signals of the same scan, got {len(signals)}.")
    reference_factor = check_real("reference_factor", reference_factor)
    with dask_progress(show_progressbar):
        features = [_as_feature_signal(s, i) for i, s in enumerate(signals, start=1)]
        _check_same_scan(features)
        scan_shape = features[0].data.shape[: features[0].axes_manager.navigation_dimension]
        blocks = [f.data.reshape((int(np.prod(scan_shape)), -1)) for f in features]
        names = []
        for f in features:
            names.append(_block_name(f, names))
        factors = None
        if weighting == "reference":
            factors = [
                float(w)
                for w in (
                    weights
                    if weights is not None
                    else [
                        np.exp(reference_factor) if f.metadata.get_item("Features.extractor", "") == "variance" else 1.0
                        for f in features
                    ]
                )
            ]
        result = fuse_blocks(
            blocks,
            scan_shape,
            weights=None if weighting == "reference" else weights,
            weighting=weighting,
            reference_factors=factors,
            max_samples=max_samples,
        )
    matrix = result.matrix.reshape(tuple(scan_shape) + (-1,))
    from .features import FusedSTEMSignal, LazyFusedSTEMSignal

    fused = build_signal(
        FusedSTEMSignal,
        LazyFusedSTEMSignal,
        matrix,
        navigation_axes_dicts(features[0]) + [index_axis("feature", matrix.shape[-1])],
        title="Fused features",
    )
    blocks_meta = {}
    for name, f, (start, stop), weight, norm, discreteness in zip(
        names, features, result.block_slices, result.weights, result.normalizers, result.discreteness
    ):
        blocks_meta[name] = {
            "source_title": f.metadata.get_item("Features.source_title", f.metadata.General.title),
            "extractor": f.metadata.get_item("Features.extractor", "features"),
            "start": int(start),
            "stop": int(stop),
            "weight": float(weight),
            "normalizer": float(norm),
            "discreteness": float(discreteness),
            "feature_parameters": f.metadata.get_item("Features.parameters", {}).as_dictionary()
            if f.metadata.has_item("Features.parameters")
            else {},
        }
    fused.metadata.set_item(
        "Fusion",
        {
            "block_names": names,
            "block_slices": np.asarray(result.block_slices, dtype=np.int64),
            "weights": result.weights,
            "parameters": dict(result.parameters, reference_factor=reference_factor),
            "Blocks": blocks_meta,
        },
    )
    return fused


def block_shares(fused, max_samples=50_000):
    """Each block's share of the fused features' total variance.

    Squared Euclidean distances, which UMAP works from, add up over
    features: a block's share of the total variance is its share of the
    average squared distance between positions. Use it to see what a
    weight does.

    Parameters
    ----------
    fused : FusedSTEMSignal
        The result of :func:`fuse`.

    Returns
    -------
    dict
        Block name -> share (they sum to 1).

    Examples
    --------
    >>> import stemfuse_hs
    >>> scan = stemfuse_hs.data.synthetic_scan("four_phases", size="tiny")
    >>> shares = stemfuse_hs.block_shares(stemfuse_hs.fuse(scan.dp, scan.eds, weights=[1, 1]))
    >>> round(sum(shares.values()), 6)
    1.0
    """
    if not fused.metadata.has_item("Fusion"):
        raise ValueError("block_shares needs the result of fuse (metadata.Fusion is missing).")
    nav_ndim = fused.axes_manager.navigation_dimension
    scan_shape = fused.data.shape[:nav_ndim]
    matrix = fused.data.reshape((int(np.prod(scan_shape)), -1))
    slices = [tuple(int(v) for v in s) for s in np.asarray(fused.metadata.Fusion.block_slices)]
    shares = variance_shares(matrix, slices, max_samples=max_samples, scan_shape=scan_shape)
    return dict(zip(fused.metadata.Fusion.block_names, (float(s) for s in shares)))
