"""Fusion of signals of one scan into a single feature signal."""

import warnings

import numpy as np

from .._arrays import describe_positions, is_lazy_array, nonfinite_positions
from .._checks import check_same_scan, check_weights, require_signal
from .._progress import dask_progress
from .._validation import check_choice, check_int, check_nan_policy, check_optional_bool, check_real
from ..features.variance import NoVaryingChannelError
from ..fusion import WEIGHTINGS, fuse_blocks, variance_shares
from ._axes import (
    axis_spacing,
    build_features_signal,
    check_scan_dimension,
    clean_text,
    describe_axis,
    index_axis,
    navigation_axes_dicts,
    recorded_exclusions,
    signal_title,
)

__all__ = ["fuse", "block_shares", "REFERENCE_EDS_FACTOR"]

#: The reference notebook's EDS scaling exponent: features * exp(2.4).
REFERENCE_EDS_FACTOR = 2.4


def _check_is_signal(signal, position):
    require_signal(signal, f"fuse: argument {position} is a {{type}}, not a HyperSpy signal.")
    if signal.axes_manager.navigation_dimension == 0:
        raise ValueError(
            f"fuse: argument {position} has no navigation axes (a single pattern or spectrum), not a scan."
        )


def _is_feature_signal(signal):
    return signal.metadata.has_item("Features") or signal.metadata.has_item("Fusion")


def _as_feature_signal(signal, position, nan_policy):
    """A feature signal for ``signal``: itself, or default features of raw data.

    Returns None, with a warning, for a raw spectrum image in which no
    channel varies above counting noise: without chemical contrast the block
    would add only noise, and there are no features to weight.
    """
    from .extract import sdt_features, variance_features

    if _is_feature_signal(signal):
        return signal
    dim = signal.axes_manager.signal_dimension
    if dim == 2:
        return sdt_features(signal, nan_policy=nan_policy)
    if dim == 1:
        try:
            return variance_features(signal, nan_policy=nan_policy)
        except NoVaryingChannelError as error:
            title = signal_title(signal)
            warnings.warn(
                f"fuse: argument {position} ({title or 'spectrum image'}) is left out: {error} Without a "
                "channel that varies above counting noise it carries no chemical contrast. To keep it, "
                "give fuse variance_features(signal, threshold=...) or (quantile=...) instead.",
                UserWarning,
                stacklevel=4,
            )
            return None
    raise ValueError(
        f"fuse: argument {position} has signal dimension {dim}; expected 4D-STEM data (2), "
        "a spectrum image (1) or features from sdt_features/variance_features."
    )


def _trusted_finite(signal):
    """True for results of this package, whose values are finite by construction."""
    return any(signal.metadata.has_item(p) for p in ("Fusion.excluded_positions", "Features.excluded_positions"))


def _block_exclusions(features, position, nan_policy, nav_shape):
    """Positions to leave out for one block: recorded ones plus, with
    ``"exclude"``, any holding NaN/inf (refused with ``"raise"``)."""
    recorded = recorded_exclusions(features, "fuse")
    mask = np.zeros(nav_shape, dtype=bool) if recorded is None else recorded
    data = features.data
    if _trusted_finite(features) and recorded is not None:
        # The extractors and fuse guarantee finite values: a pass over lazy
        # features would recompute them from the raw data, and fuse_blocks
        # checks in-memory blocks again anyway.
        return mask
    bad = nonfinite_positions(data, 1)
    bad = np.asarray(bad.compute() if is_lazy_array(bad) else bad) & ~mask
    if bad.any():
        if nan_policy == "raise":
            raise ValueError(
                f"fuse: argument {position} holds NaN or inf at {describe_positions(bad)}; "
                "pass nan_policy='exclude' to leave those positions out, or clean the data."
            )
        mask = mask | bad
    return mask


#: Modality of the extractors of versions that did not record
#: ``metadata.Features.modality``: only these two were told apart.
_LEGACY_MODALITIES = {"sdt": "diffraction", "variance": "eds"}


def _modality(features):
    """``metadata.Features.modality`` ("diffraction", "eds"), or a guess for older files, or None."""
    recorded = features.metadata.get_item("Features.modality", None)
    if recorded is not None:
        return str(recorded)
    return _LEGACY_MODALITIES.get(features.metadata.get_item("Features.extractor", None))


def _block_name(features, taken):
    base = _modality(features) or "features"
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
        check_same_scan(
            other.navigation_shape,
            first.navigation_shape,
            "fuse: the signals are not of the same scan: navigation shapes "
            f"{first.navigation_shape} (argument 1) and {other.navigation_shape} (argument {position}).",
        )
        for a, b in zip(first.navigation_axes, other.navigation_axes):
            # Non-uniform axes (a converter's DataAxis, measured positions)
            # have no scale: their steps are compared instead.
            if a.units != b.units or not np.allclose(axis_spacing(a), axis_spacing(b), rtol=1e-3):
                warnings.warn(
                    f"fuse: navigation axis {a.index_in_axes_manager} differs between argument 1 "
                    f"({describe_axis(a)}) and argument {position} ({describe_axis(b)}); "
                    "fusing by position index.",
                    UserWarning,
                    stacklevel=3,
                )


def fuse(
    *signals,
    weights=None,
    weighting="auto",
    reference_factor=REFERENCE_EDS_FACTOR,
    max_samples=10_000,
    nan_policy="raise",
    show_progressbar=None,
):
    """Fuse signals of the same scan into one feature signal for clustering.

    Parameters
    ----------
    *signals : hyperspy signals
        Two or more signals over the same scan: raw 4D-STEM data (gets
        :func:`~stemfuse_hs.sdt_features` with its defaults), a spectrum
        image (gets :func:`~stemfuse_hs.variance_features` with its
        automatic threshold), or features already extracted (any
        parameters). None is modified. A raw spectrum image in which no
        channel varies above counting noise (no chemical contrast) is left
        out with a warning, and the others are fused; give its features
        with an explicit ``threshold`` or ``quantile`` to keep it.
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
    max_samples : int, default 10000
        Positions used for the scaling statistics (all when the scan is
        smaller; otherwise evenly spread whole rows). Memory grows with it:
        several float64 copies of ``max_samples x n_features``.
    nan_policy : {"raise", "exclude"}, default "raise"
        Positions holding NaN or inf in any input: refuse them (the message
        says how many and the first), or leave them out of every statistic
        and set their fused features to 0 (every feature's centre). Passed
        on to the extractors for raw inputs. Positions already excluded by
        an extractor (``metadata.Features.excluded_positions``) are left out
        whatever the policy; the masks of all blocks are combined.
    show_progressbar : bool, optional

    Returns
    -------
    FusedSTEMSignal
        ``(*scan | n_features)``, lazy if any input is. ``metadata.Fusion``
        records each block's name, source, feature range, weight and
        normaliser, the weighting parameters, ``excluded_positions`` (a
        navigation-shaped boolean array, array order) and ``dropped`` (the
        arguments left out, with the reason; empty when none).

    Raises
    ------
    ValueError
        For signals of different scans (both navigation shapes are named,
        and a transposed scan is pointed out), NaN/inf with
        ``nan_policy="raise"``, or when no block is left.
    MemoryError
        If every input is in memory and the fused matrix would not fit.

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
    for position, signal in enumerate(signals, start=1):
        _check_is_signal(signal, position)
        check_scan_dimension(signal, "fuse", position)
    reference_factor = check_real("reference_factor", reference_factor)
    if not isinstance(weighting, str):
        raise TypeError(f"weighting must be one of {list(WEIGHTINGS)}, got {weighting!r}.")
    check_choice("weighting", weighting, WEIGHTINGS)
    max_samples = check_int("max_samples", max_samples, minimum=1)
    nan_policy = check_nan_policy(nan_policy)
    check_optional_bool("show_progressbar", show_progressbar)
    if weights is not None:
        weights = check_weights(weights, len(signals), "signal")
    # Before any extraction: a mismatch must not cost a pass over the data.
    _check_same_scan(signals)
    with dask_progress(show_progressbar):
        extracted = [_as_feature_signal(s, i, nan_policy) for i, s in enumerate(signals, start=1)]
        kept = [i for i, f in enumerate(extracted) if f is not None]
        dropped = [
            f"argument {i + 1} ({signal_title(signals[i]) or 'spectrum image'}): "
            "no channel varies above counting noise"
            for i, f in enumerate(extracted)
            if f is None
        ]
        if not kept:
            raise ValueError("fuse: every argument was left out (no channel varies above counting noise); nothing to fuse.")
        features = [extracted[i] for i in kept]
        if weights is not None:
            weights = [weights[i] for i in kept]
            if not any(w > 0 for w in weights):
                raise ValueError(
                    f"fuse: the weights of the blocks left ({weights}) are all zero after leaving out {dropped}."
                )
        nav_ndim = features[0].axes_manager.navigation_dimension
        scan_shape = features[0].data.shape[:nav_ndim]
        excluded = np.zeros(scan_shape, dtype=bool)
        for i, f in zip(kept, features):
            excluded |= _block_exclusions(f, i + 1, nan_policy, scan_shape)
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
                        np.exp(reference_factor) if _modality(f) == "eds" else 1.0
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
            excluded=excluded.reshape(-1),
        )
    matrix = result.matrix.reshape(tuple(scan_shape) + (-1,))
    fused = build_features_signal(
        matrix,
        navigation_axes_dicts(features[0]) + [index_axis("feature", matrix.shape[-1])],
        title="Fused features",
    )
    blocks_meta = {}
    for name, f, (start, stop), weight, norm, discreteness in zip(
        names, features, result.block_slices, result.weights, result.normalizers, result.discreteness
    ):
        blocks_meta[name] = {
            "source_title": clean_text(f.metadata.get_item("Features.source_title", signal_title(f))),
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
            "parameters": dict(result.parameters, reference_factor=reference_factor, nan_policy=nan_policy),
            "Blocks": blocks_meta,
            "excluded_positions": excluded,
            "dropped": dropped,
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
    max_samples : int, default 50000
        Positions the variances are computed on.

    Returns
    -------
    dict
        Block name -> share (they sum to 1). Excluded positions
        (``metadata.Fusion.excluded_positions``) are left out.

    Examples
    --------
    >>> import stemfuse_hs
    >>> scan = stemfuse_hs.data.synthetic_scan("four_phases", size="tiny")
    >>> shares = stemfuse_hs.block_shares(stemfuse_hs.fuse(scan.dp, scan.eds, weights=[1, 1]))
    >>> round(sum(shares.values()), 6)
    1.0
    """
    require_signal(fused, "block_shares expects the signal returned by fuse, got {type}.")
    if not fused.metadata.has_item("Fusion"):
        raise ValueError("block_shares needs the result of fuse (metadata.Fusion is missing).")
    max_samples = check_int("max_samples", max_samples, minimum=1)
    nav_ndim = fused.axes_manager.navigation_dimension
    if nav_ndim == 0:
        raise ValueError("block_shares needs a scan: the signal has no navigation axes.")
    scan_shape = fused.data.shape[:nav_ndim]
    matrix = fused.data.reshape((int(np.prod(scan_shape)), -1))
    slices = [tuple(int(v) for v in s) for s in np.asarray(fused.metadata.Fusion.block_slices)]
    excluded = recorded_exclusions(fused, "block_shares")
    shares = variance_shares(
        matrix, slices, max_samples=max_samples, scan_shape=scan_shape,
        excluded=None if excluded is None else excluded.reshape(-1),
    )
    return dict(zip(fused.metadata.Fusion.block_names, (float(s) for s in shares)))
