"""Does another run, or another setting, give the same phase map?

:func:`stability` repeats the embedding and clustering of a
:class:`~stemfuse_hs.signals.features.FusedSTEMSignal` with different
seeds; :func:`sensitivity` repeats it over a grid of parameters. Both align
the label maps (:mod:`stemfuse_hs.clustering.stability`) and return them as
signals on the scan axes with their consensus, the per-position agreement
and the pairwise adjusted Rand index. This module only translates between
signals and arrays; the algorithms are array functions.
"""

import copy
import inspect
import itertools
from dataclasses import dataclass, field

import numpy as np

from .._arrays import is_lazy_array
from .._checks import is_signal
from .._progress import dask_progress, stage_bar
from .._text import format_value
from ..clustering.embed import reuse_embeddings
from ..cluster_parameters import CLUSTER_DEFAULTS, fill_cluster_doc
from ..clustering.stability import label_agreement, rescale_blocks
from ._axes import index_axis, signal_axes_dicts

__all__ = ["StabilityResult", "SensitivityResult", "stability", "sensitivity", "reweight"]

#: Grid keys that re-fuse the blocks.
FUSION_PARAMETERS = ("weights",)


def _is_fused_signal(signal):
    """A FusedSTEMSignal (or its lazy twin), told by its signal type: this module does not import the class."""
    return getattr(signal, "_signal_type", None) == "fused_stem" and getattr(signal, "_signal_dimension", None) == 1


def _check_fused(fused, function):
    if not _is_fused_signal(fused):
        raise TypeError(
            f"{function} needs a FusedSTEMSignal (the result of stemfuse_hs.fuse or of a feature "
            f"extractor), got {type(fused).__name__}."
        )
    if fused.axes_manager.navigation_dimension == 0:
        raise ValueError(f"{function} needs a scan: this signal has no navigation axes.")


def _eager(fused, show_progressbar):
    """``fused`` itself, or an in-memory copy of a lazy one (computed once for all runs)."""
    if not is_lazy_array(fused.data):
        return fused
    out = fused.deepcopy()
    with dask_progress(show_progressbar):
        out.compute(show_progressbar=False)
    return out


def _scan_axes(labels):
    return copy.deepcopy(signal_axes_dicts(labels))


def _stack_signal(aligned, labels, axis_name, title):
    from hyperspy.signals import Signal2D

    axes = [index_axis(axis_name, aligned.shape[0], navigate=True)] + _scan_axes(labels)
    out = Signal2D(aligned.astype(np.int32), axes=axes)
    out.metadata.General.title = title
    return out


def _ari_signal(ari, axis_name, title):
    from hyperspy.signals import Signal2D

    out = Signal2D(np.asarray(ari, dtype=np.float64), axes=[index_axis(axis_name, ari.shape[0]), index_axis(axis_name, ari.shape[1])])
    out.metadata.General.title = title
    out.metadata.set_item("Signal.quantity", "adjusted Rand index")
    return out


def _agreement_signal(values, labels, title, quantity):
    from hyperspy.signals import Signal2D

    out = Signal2D(np.asarray(values, dtype=np.float32), axes=_scan_axes(labels))
    out.metadata.General.title = title
    out.metadata.set_item("Signal.quantity", quantity)
    return out


def _consensus_labels(fused, agreement, reference_labels, extra_parameters):
    """A ClusterLabels of the consensus: votes as memberships, the reference's embedding."""
    from ..clustering.cluster import ClusterResult
    from .labels import build_cluster_labels

    n = agreement.consensus.size
    votes = agreement.votes.reshape(n, agreement.n_ids)
    result = ClusterResult(labels=agreement.consensus.reshape(n), memberships=votes, parameters={})
    embedding = np.asarray(reference_labels.embedding.data)
    embedding = embedding.reshape(n, embedding.shape[-1])
    parameters = dict(reference_labels.parameters)
    parameters.update(extra_parameters)
    # Positions every run left out (cluster's excluded positions) stay recorded as such.
    excluded = reference_labels.metadata.get_item("Clustering.excluded_positions", None)
    extra = {} if excluded is None else {"excluded": np.asarray(excluded, dtype=bool)}
    consensus = build_cluster_labels(fused, result, embedding, parameters, **extra)
    consensus.metadata.General.title = "Consensus labels"
    return consensus


def _mean_off_diagonal(matrix):
    n = matrix.shape[0]
    if n < 2:
        return float("nan")
    return float((matrix.sum() - np.trace(matrix)) / (n * (n - 1)))


class _AgreementResult:
    """What stability and sensitivity results share: the mean ARI and a figure.

    A subclass names its figure function of :mod:`stemfuse_hs.plot.figures`
    in ``_figure``.
    """

    _figure = None

    @property
    def mean_ari(self):
        """Mean adjusted Rand index over all pairs of maps (runs or settings)."""
        return _mean_off_diagonal(np.asarray(self.ari.data))

    def plot(self, **kwargs):
        """Draw the result with its figure function (see the class's ``_figure``).

        Returns
        -------
        matplotlib.figure.Figure
        """
        from ..plot import figures

        return getattr(figures, self._figure)(self, **kwargs)


@dataclass
class StabilityResult(_AgreementResult):
    """Label maps of repeated clustering runs, aligned, and how far they agree.

    Attributes
    ----------
    consensus : ClusterLabels
        Per-position mode of the aligned runs. Its memberships are the
        fractions of runs giving each cluster (so its largest membership is
        the stability wherever a cluster wins), its embedding is the
        reference run's; it gives cluster means like any label map.
    stability : hyperspy.signals.Signal2D
        Fraction of runs agreeing with the consensus at every position, on
        the scan axes: 1 where every run gives the same phase.
    ari : hyperspy.signals.Signal2D
        ``(n_runs, n_runs)`` pairwise adjusted Rand index between runs.
    runs : hyperspy.signals.Signal2D
        The aligned label maps, navigation axis ``"run"``: cluster ``i``
        is the same cluster in every run (ids the reference lacks are
        numbered after its own).
    labels : list of ClusterLabels
        Every run's own result, as ``cluster`` returned it.
    random_states : list
        The seed of every run.
    reference : int
        The run whose cluster ids were kept.
    """

    consensus: object
    stability: object
    ari: object
    runs: object
    labels: list = field(repr=False)
    random_states: list
    reference: int

    #: Consensus map, stability map and every run's map in a row.
    _figure = "plot_stability"

    @property
    def n_runs(self):
        """Number of runs."""
        return len(self.labels)



@dataclass
class SensitivityResult(_AgreementResult):
    """Label maps over a parameter grid, aligned, and how far they agree.

    Attributes
    ----------
    settings : list of dict
        The parameters of every map, in grid order (the first key varies
        slowest).
    maps : hyperspy.signals.Signal2D
        The aligned label maps, navigation axis ``"setting"``.
    ari : hyperspy.signals.Signal2D
        ``(n_settings, n_settings)`` pairwise adjusted Rand index.
    consensus : ClusterLabels
        Per-position mode of the aligned maps (see
        :class:`StabilityResult`).
    stability : hyperspy.signals.Signal2D
        Fraction of settings agreeing with the consensus at every position:
        where it is 1 the phase does not depend on the parameters.
    labels : list of ClusterLabels
        Every setting's result, with its parameters.
    param_grid : dict
        The grid asked for.
    reference : int
        The setting whose cluster ids were kept.
    n_embeddings : int
        UMAP embeddings computed (settings differing only after the
        embedding share one).
    """

    settings: list
    maps: object
    ari: object
    consensus: object
    stability: object
    labels: list = field(repr=False)
    param_grid: dict
    reference: int
    n_embeddings: int = 0

    #: The maps in a grid, with the agreement map and the ARI matrix.
    _figure = "plot_sensitivity"

    @property
    def n_settings(self):
        """Number of parameter settings."""
        return len(self.settings)



@fill_cluster_doc
def stability(fused, n_runs=5, random_states=None, *, reference="medoid", **cluster_kwargs):
    """Repeat the clustering with other seeds and measure how far the maps agree.

    UMAP's embedding depends on its random seed, and with it the clusters
    HDBSCAN finds. A phase map worth trusting comes out the same from every
    seed. This runs ``fused.cluster(random_state=seed, **cluster_kwargs)``
    once per seed, aligns the label maps to a reference run by maximum
    overlap (:func:`stemfuse_hs.clustering.align_runs`; clusters may appear
    or vanish between runs) and takes their per-position consensus. Memory
    stays linear in the number of positions (no positions-by-positions
    co-association matrix).

    Parameters
    ----------
    fused : FusedSTEMSignal
        Features of a scan, e.g. from :func:`stemfuse_hs.fuse`. Lazy data
        is computed once for all runs.
    n_runs : int, default 5
        Number of runs, with seeds ``0 .. n_runs - 1``.
    random_states : sequence of int, optional
        The seeds, one per run; when given they set the number of runs
        (``n_runs`` is then not used).
    reference : int or "medoid", default "medoid"
        The run whose cluster ids are kept: an index, or the run with the
        highest mean adjusted Rand index to the others.
    **cluster_kwargs
        Every other argument of
        :meth:`~stemfuse_hs.signals.features.FusedSTEMSignal.cluster`
        (the same for all runs), with its default:

        {cluster_keywords}

    Returns
    -------
    StabilityResult
        ``.consensus``, ``.stability``, ``.ari``, ``.runs``, ``.labels``;
        ``.plot()`` draws them.

    Raises
    ------
    TypeError
        If ``fused`` is not a FusedSTEMSignal, or ``random_state`` is given
        (use ``random_states``).
    ValueError
        If fewer than two runs are asked for.

    Examples
    --------
    >>> import stemfuse_hs
    >>> scan = stemfuse_hs.data.synthetic_scan("precipitates", size="tiny")
    >>> fused = stemfuse_hs.fuse(scan.dp, scan.eds)
    >>> result = fused.stability(n_runs=3)  # doctest: +SKIP
    >>> result.ari.data.shape, result.runs.axes_manager.navigation_shape  # doctest: +SKIP
    ((3, 3), (3,))
    >>> bool(result.stability.data.mean() > 0.95)  # doctest: +SKIP
    True
    >>> fig = result.plot()  # doctest: +SKIP
    """
    from .._validation import check_int

    _check_fused(fused, "stability")
    if "random_state" in cluster_kwargs:
        raise TypeError("stability sets the seed of every run: give random_states=[...] instead of random_state.")
    if random_states is None:
        n_runs = check_int("n_runs", n_runs, minimum=2)
        random_states = list(range(n_runs))
    else:
        random_states = [None if s is None else check_int("random_states[i]", s, minimum=0) for s in random_states]
        if len(random_states) < 2:
            raise ValueError(f"stability needs two or more runs, got random_states={random_states}.")
    source = _eager(fused, cluster_kwargs.get("show_progressbar"))
    labels = [source.cluster(random_state=seed, **cluster_kwargs) for seed in random_states]
    seeds = [-1 if s is None else int(s) for s in random_states]
    aligned = _aligned_maps(
        fused, labels, reference, "run", {"consensus_of": "stability", "n_runs": len(labels), "random_states": seeds},
        {"Stability.random_states": seeds}, stability_title="Stability",
    )
    return StabilityResult(
        consensus=aligned["consensus"],
        stability=aligned["stability"],
        ari=aligned["ari"],
        runs=aligned["maps"],
        labels=labels,
        random_states=list(random_states),
        reference=aligned["reference"],
    )


def _aligned_maps(fused, labels, reference, unit, consensus_record, maps_metadata, *, stability_title):
    """Align the label maps of several runs (``unit`` "run") or settings and say how far they agree.

    Returns the consensus labels (their ``parameters`` gain
    ``consensus_record`` and the reference's index), the stacked aligned
    maps (navigation axis ``unit``, ``maps_metadata`` and the reference in
    their metadata), the agreement and ARI signals and the reference index.
    """
    stack = np.stack([np.asarray(label.data) for label in labels])
    agreement = label_agreement(stack, reference=reference)
    kind = consensus_record["consensus_of"]
    consensus = _consensus_labels(
        fused, agreement, labels[agreement.reference], dict(consensus_record, **{f"reference_{unit}": agreement.reference})
    )
    maps = _stack_signal(agreement.aligned, labels[0], unit, f"Aligned label maps of the {unit}s")
    for key, value in maps_metadata.items():
        maps.metadata.set_item(key, value)
    maps.metadata.set_item(f"{kind.capitalize()}.reference", agreement.reference)
    return {
        "consensus": consensus,
        "maps": maps,
        "stability": _agreement_signal(
            agreement.stability, labels[0], stability_title, f"fraction of {unit}s agreeing with the consensus"
        ),
        "ari": _ari_signal(agreement.ari, unit, f"Adjusted Rand index between {unit}s"),
        "reference": agreement.reference,
    }


def reweight(fused, weights):
    """The fused features with other block weights, without recomputing them.

    :func:`stemfuse_hs.fuse` with ``weighting="auto"`` or ``"equal"``
    normalises every block and then multiplies it by its weight; the result
    records the weights in ``metadata.Fusion``. Multiplying each block's
    columns by ``new / old`` weight therefore gives exactly what fusing
    again with ``weights`` would (:func:`stemfuse_hs.clustering.rescale_blocks`),
    without extracting features or computing statistics again.

    Parameters
    ----------
    fused : FusedSTEMSignal
        The result of :func:`stemfuse_hs.fuse`.
    weights : sequence of float
        One weight per block, in ``metadata.Fusion.block_names`` order.

    Returns
    -------
    FusedSTEMSignal
        A new signal (in memory) whose ``metadata.Fusion`` records the new
        weights.

    Raises
    ------
    ValueError
        If ``fused`` has no ``metadata.Fusion``, was fused with
        ``weighting="reference"`` (its weights act before a joint scaling:
        fuse again instead), or a weight is invalid.

    Examples
    --------
    >>> import numpy as np
    >>> import stemfuse_hs
    >>> from stemfuse_hs.signals.stability import reweight
    >>> scan = stemfuse_hs.data.synthetic_scan("four_phases", size="tiny")
    >>> fused = stemfuse_hs.fuse(scan.dp, scan.eds, weights=[1, 1])
    >>> heavier = reweight(fused, [1, 2])
    >>> eds = slice(*fused.metadata.Fusion.block_slices[1])
    >>> bool(np.allclose(heavier.data[..., eds], 2 * fused.data[..., eds]))
    True
    """
    _check_fused(fused, "reweight")
    old, slices = _fusion_weights(fused, "reweight")
    data = fused.data.compute() if is_lazy_array(fused.data) else fused.data
    nav_shape = data.shape[: fused.axes_manager.navigation_dimension]
    matrix = np.asarray(data).reshape(int(np.prod(nav_shape)), -1)
    rescaled = rescale_blocks(matrix, slices, old, weights)
    return _reweighted_signal(fused, rescaled.reshape(data.shape), np.asarray(weights, dtype=np.float64))


def _fusion_weights(fused, function):
    if not fused.metadata.has_item("Fusion.weights") or not fused.metadata.has_item("Fusion.block_slices"):
        raise ValueError(
            f"{function} re-weights the blocks of a fused signal: this one has no metadata.Fusion "
            "(use the result of stemfuse_hs.fuse)."
        )
    weighting = fused.metadata.get_item("Fusion.parameters.weighting", "auto")
    if weighting == "reference":
        raise ValueError(
            f"{function}: the blocks were fused with weighting='reference', whose factors act before a "
            "joint robust scaling of all features, so re-weighting the fused blocks would not give what "
            "fusing with other factors gives. Call stemfuse_hs.fuse(..., weighting='reference', "
            "weights=[...]) for every setting instead, or fuse with weighting='auto' or 'equal'."
        )
    old = np.asarray(fused.metadata.Fusion.weights, dtype=np.float64)
    slices = np.asarray(fused.metadata.Fusion.block_slices, dtype=np.int64).reshape(-1, 2)
    return old, slices


def _reweighted_signal(fused, data, weights):
    from hyperspy.signals import Signal1D

    # HyperSpy's registry gives the FusedSTEMSignal class for the signal type.
    out = Signal1D(
        data,
        axes=copy.deepcopy(fused.axes_manager._get_axes_dicts()),
        metadata=fused.metadata.deepcopy().as_dictionary(),
    )
    out.set_signal_type("fused_stem")
    out.metadata.set_item("Fusion.weights", weights)
    out.metadata.set_item("Fusion.parameters.weights_given", True)
    for name, weight in zip(fused.metadata.Fusion.block_names, weights):
        if out.metadata.has_item(f"Fusion.Blocks.{name}"):
            out.metadata.set_item(f"Fusion.Blocks.{name}.weight", float(weight))
    out.metadata.General.title = f"{fused.metadata.General.title} (weights {format_value(weights)})"
    return out



def _check_grid(param_grid, cluster_kwargs, defaults, extraction=None):
    """Validate the grid; ``extraction`` maps allowed ``"extractor.keyword"`` keys (raw signals given)."""
    extraction = extraction or {}
    if not isinstance(param_grid, dict) or not param_grid:
        raise TypeError(
            "param_grid must be a non-empty dict of parameter name -> list of values, e.g. "
            "{'weights': [[1, 0.5], [1, 1]], 'min_cluster_size': [0.02, 0.05]}."
        )
    allowed = set(FUSION_PARAMETERS) | set(defaults) | set(extraction)
    grid = {}
    for name, values in param_grid.items():
        if name not in allowed:
            known = _extraction_keywords()
            matches = [key for key in known if name == key or key.endswith(f".{name}")]
            if matches and not extraction:
                raise ValueError(
                    f"param_grid: {name!r} is a feature-extraction parameter ({' or '.join(matches)}); give the "
                    "raw signals, e.g. stemfuse_hs.sensitivity((dp, eds), param_grid), not the fused signal."
                )
            raise ValueError(
                f"param_grid: {name!r} is not a parameter of the feature extraction, the fusion weights or "
                f"cluster; allowed: {sorted(allowed)}."
            )
        if name in cluster_kwargs:
            raise ValueError(f"{name!r} is both in param_grid and a fixed keyword argument; give it once.")
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise TypeError(f"param_grid[{name!r}] must be a list of values, got {values!r}.")
        values = list(values)
        if not values:
            raise ValueError(f"param_grid[{name!r}] is empty.")
        grid[name] = values
    unknown = set(cluster_kwargs) - set(defaults) - {"show_progressbar"}
    if unknown:
        raise TypeError(f"sensitivity got unexpected keyword arguments {sorted(unknown)}; see FusedSTEMSignal.cluster.")
    return grid


def _weights_key(setting):
    if "weights" not in setting:
        return None
    return tuple(float(w) for w in np.asarray(setting["weights"], dtype=np.float64).ravel())


@fill_cluster_doc
def sensitivity(fused, param_grid, *, random_state=0, reference="medoid", show_progressbar=None, **cluster_kwargs):
    """Map the phases over a grid of parameters and see which results hold.

    Every combination of the values in ``param_grid`` is run through
    fusion weighting, embedding and clustering; the label maps are aligned
    to a reference map by maximum overlap (as in :func:`stability`) and
    compared pairwise (adjusted Rand index) and per position.

    Every setting runs :meth:`FusedSTEMSignal.cluster
    <stemfuse_hs.signals.features.FusedSTEMSignal.cluster>` itself, so a map
    is exactly what ``cluster`` gives with those parameters. What does not
    change between settings is computed once: the fused features are read
    once; block weights are changed by rescaling the fused blocks
    (:func:`reweight`, exact for the ``"auto"`` and ``"equal"`` weightings,
    whose weights multiply whole normalised blocks); one UMAP embedding
    serves every setting that differs only in clustering parameters
    (``min_cluster_size``, ``min_samples``, ``cluster_selection_epsilon``,
    ``min_membership``, ``merge_threshold`` ...: whatever acts after the
    embedding), through :func:`stemfuse_hs.clustering.embed.reuse_embeddings`,
    whose cache lives only during the call.

    Feature-extraction parameters (the SDT ``fraction`` or ``binning``, the
    variance threshold) change the features themselves: give the raw
    signals instead of the fused one, ``sensitivity((dp, eds), {
    "sdt_features.fraction": [0.2, 0.4], "weights": [[1, 1], [1, 2]]})``.
    Each distinct extraction is then computed once (and each fusion once),
    the settings are fused with :func:`stemfuse_hs.fuse` as given, and
    embeddings are shared as above.

    Parameters
    ----------
    fused : FusedSTEMSignal or sequence of signals
        The result of :func:`stemfuse_hs.fuse` (``weights`` in the grid need
        its ``metadata.Fusion``), or any feature signal for grids of
        clustering parameters only; or the raw signals of one scan (what
        :func:`stemfuse_hs.fuse` accepts: 4D-STEM data, spectrum images,
        feature signals) for grids that include feature extraction.
    param_grid : dict
        Parameter name -> list of values. ``"weights"`` (one weight per
        block, in ``metadata.Fusion.block_names`` order) and any keyword of
        :meth:`~stemfuse_hs.signals.features.FusedSTEMSignal.cluster`.
        E.g. ``{"weights": [[1, 0.5], [1, 1], [1, 2]], "min_cluster_size":
        [0.02, 0.05]}`` gives six settings. With raw signals also
        ``"sdt_features.<keyword>"`` (applied to every 4D-STEM signal) and
        ``"variance_features.<keyword>"`` (every spectrum image).
    random_state : int, default 0
        Seed of every embedding, so that maps differ by their parameters,
        not by chance (:func:`stability` measures the latter). May also be
        a grid key.
    reference : int or "medoid", default "medoid"
        The setting whose cluster ids are kept (see :func:`stability`).
    show_progressbar : bool, optional
    **cluster_kwargs
        Fixed arguments of ``cluster`` for every setting, with their defaults
        (each may be a grid key instead):

        {cluster_keywords}

    Returns
    -------
    SensitivityResult
        ``.settings``, ``.maps``, ``.ari``, ``.consensus``, ``.stability``,
        ``.labels``; ``.plot()`` draws the maps in a grid.

    Raises
    ------
    TypeError
        If ``fused`` is not a FusedSTEMSignal or ``param_grid`` is not a dict
        of lists.
    ValueError
        For an unknown grid key, a key given twice, or ``weights`` with a
        signal fused with ``weighting="reference"`` (fuse again per setting
        instead).

    Examples
    --------
    >>> import stemfuse_hs
    >>> scan = stemfuse_hs.data.synthetic_scan("precipitates", size="tiny")
    >>> fused = stemfuse_hs.fuse(scan.dp, scan.eds)
    >>> result = fused.sensitivity(
    ...     {"weights": [[1, 0.5], [1, 2]], "min_cluster_size": [0.02, 0.05]}
    ... )  # doctest: +SKIP
    >>> len(result.settings), result.ari.data.shape  # doctest: +SKIP
    (4, (4, 4))
    >>> fig = result.plot()  # doctest: +SKIP
    """
    if isinstance(fused, (list, tuple)):
        return _sensitivity_of_signals(
            fused, param_grid, random_state=random_state, reference=reference,
            show_progressbar=show_progressbar, **cluster_kwargs,
        )
    _check_fused(fused, "sensitivity")
    defaults = CLUSTER_DEFAULTS
    grid = _check_grid(param_grid, cluster_kwargs, defaults)
    fixed = dict(cluster_kwargs, random_state=random_state)
    if "weights" in grid:
        old_weights, slices = _fusion_weights(fused, "sensitivity")
        for weights in grid["weights"]:
            if np.asarray(weights).size != len(slices):
                raise ValueError(
                    f"param_grid['weights']: {list(np.ravel(weights))} has {np.asarray(weights).size} values "
                    f"for {len(slices)} blocks {list(fused.metadata.Fusion.block_names)}."
                )
    names = list(grid)
    settings = [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]

    # The features are read once; every weighting is a rescaled copy of them.
    source = _eager(fused, show_progressbar)
    if "weights" in grid:
        nav_ndim = fused.axes_manager.navigation_dimension
        shape = source.data.shape
        base = np.asarray(source.data, dtype=np.float32).reshape(int(np.prod(shape[:nav_ndim])), -1)
    # Settings with the same weights run together: one re-weighted copy in
    # memory at a time.
    order = sorted(range(len(settings)), key=lambda i: (repr(_weights_key(settings[i])), i))
    labels = [None] * len(settings)
    current, signal = object(), source
    with stage_bar(settings, show_progressbar, "stemfuse sensitivity") as bar, reuse_embeddings() as counts:
        for i in order:
            setting = settings[i]
            if _weights_key(setting) != current:
                current = _weights_key(setting)
                if current is not None:
                    weights = np.asarray(current, dtype=np.float64)
                    signal = _reweighted_signal(
                        source, rescale_blocks(base, slices, old_weights, weights).reshape(shape), weights
                    )
            parameters = dict(fixed, **{k: v for k, v in setting.items() if k != "weights"})
            labels[i] = signal.cluster(show_progressbar=False, **parameters)
            bar.update()

    return _sensitivity_result(fused, settings, labels, grid, reference, counts["computed"])


def _sensitivity_result(fused, settings, labels, grid, reference, n_embeddings):
    described = [_describe(setting) for setting in settings]
    aligned = _aligned_maps(
        fused, labels, reference, "setting",
        {"consensus_of": "sensitivity", "n_settings": len(settings), "settings": described},
        {"Sensitivity.settings": described, "Sensitivity.n_embeddings": n_embeddings},
        stability_title="Agreement across settings",
    )
    return SensitivityResult(
        settings=settings,
        maps=aligned["maps"],
        ari=aligned["ari"],
        consensus=aligned["consensus"],
        stability=aligned["stability"],
        labels=labels,
        param_grid=grid,
        reference=aligned["reference"],
        n_embeddings=n_embeddings,
    )



def _extraction_keywords():
    """``{"sdt_features.fraction": "sdt_features", ...}``: the grid keys of feature extraction."""
    from .extract import sdt_features, variance_features

    keys = {}
    for function in (sdt_features, variance_features):
        for name, parameter in inspect.signature(function).parameters.items():
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("show_progressbar",):
                keys[f"{function.__name__}.{name}"] = function.__name__
    return keys


def _sensitivity_of_signals(signals, param_grid, *, random_state, reference, show_progressbar, **cluster_kwargs):
    """:func:`sensitivity` over raw signals: extraction and fusion inside the grid."""
    from .extract import sdt_features, variance_features
    from .fuse import _is_feature_signal, fuse

    signals = list(signals)
    if len(signals) < 1 or not all(is_signal(x) for x in signals):
        raise TypeError(
            "sensitivity: give a FusedSTEMSignal or a sequence of HyperSpy signals of one scan, got "
            f"{[type(x).__name__ for x in signals]}."
        )
    defaults = CLUSTER_DEFAULTS
    extraction = _extraction_keywords()
    fuse_keys = {"weighting"}
    grid = _check_grid(
        {k: v for k, v in param_grid.items() if k not in fuse_keys} if isinstance(param_grid, dict) else param_grid,
        cluster_kwargs,
        defaults,
        extraction,
    )
    for key in fuse_keys & set(param_grid):
        grid[key] = list(param_grid[key])
    fixed = dict(cluster_kwargs, random_state=random_state)
    names = list(grid)
    settings = [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]

    def extractor_for(signal):
        if _is_feature_signal(signal):
            return None
        return {2: sdt_features, 1: variance_features}.get(signal.axes_manager.signal_dimension)

    features_cache, fused_cache, labels = {}, {}, [None] * len(settings)
    first_fused = None
    with stage_bar(settings, show_progressbar, "stemfuse sensitivity") as bar, reuse_embeddings() as counts:
        for i, setting in enumerate(settings):
            blocks = []
            for index, signal in enumerate(signals):
                function = extractor_for(signal)
                if function is None:
                    blocks.append((index, ()))
                    continue
                kwargs = {
                    key.split(".", 1)[1]: value
                    for key, value in setting.items()
                    if extraction.get(key) == function.__name__
                }
                key = (index, repr(sorted(kwargs.items())))
                if key not in features_cache:
                    features_cache[key] = function(signal, show_progressbar=False, **kwargs)
                blocks.append(key)
            fuse_kwargs = {k: setting[k] for k in ("weights", "weighting") if k in setting}
            fused_key = (tuple(map(repr, blocks)), repr(sorted((k, np.ravel(v).tolist() if k == "weights" else v)
                                                               for k, v in fuse_kwargs.items())))
            if fused_key not in fused_cache:
                inputs = [features_cache[b] if b[1] != () else signals[b[0]] for b in blocks]
                fused_cache[fused_key] = fuse(*inputs, show_progressbar=False, **fuse_kwargs)
            fused = fused_cache[fused_key]
            first_fused = fused if first_fused is None else first_fused
            parameters = dict(
                fixed, **{k: v for k, v in setting.items() if k not in ("weights", "weighting") and k not in extraction}
            )
            labels[i] = fused.cluster(show_progressbar=False, **parameters)
            bar.update()
    result = _sensitivity_result(first_fused, settings, labels, grid, reference, counts["computed"])
    result.maps.metadata.set_item("Sensitivity.n_feature_extractions", len(features_cache))
    result.maps.metadata.set_item("Sensitivity.n_fusions", len(fused_cache))
    return result


def _describe(setting):
    """``"weights=[1, 0.5], min_cluster_size=0.02"``: a setting as text."""
    return ", ".join(f"{name}={format_value(value)}" for name, value in setting.items())
