"""Every clustering parameter, once: default, constraint and one-line doc.

:data:`CLUSTER_PARAMETERS` is the one home of the parameters of
:meth:`FusedSTEMSignal.cluster
<stemfuse_hs.signals.features.FusedSTEMSignal.cluster>` (and of
:func:`~stemfuse_hs.clustering.scan.cluster_scan`, the array-level function
it calls), in the spirit of scikit-learn's ``_parameter_constraints``.
Everything else reads it: the method's signature defaults, the ``stemfuse``
command's ``[clustering]`` options and parameter file section
(:mod:`stemfuse_hs.cli`), the grid keys that
:func:`~stemfuse_hs.signals.stability.sensitivity` accepts and the
parameter prose of the docstrings (:func:`fill_cluster_doc`).
tests/test_cluster_parameters.py ties them together.

:func:`validate_cluster_parameters` is the one check: the public entrance
calls it once, before any data is read, and hands the frozen
:class:`ClusterParameters` it returns to the inner layers, which do not
check again.

HDBSCAN's cluster selection: the pipeline selects ``"leaf"`` clusters (the
finest ones) and lets the merge decide which splits are phases. The bare
array function :func:`~stemfuse_hs.clustering.cluster.soft_cluster` keeps
HDBSCAN's own default, ``"eom"``, because it is a thin HDBSCAN wrapper used
on its own (and tested so); nothing reached from ``cluster`` uses that
default.

Only the standard library is imported here (the checks import
:mod:`stemfuse_hs._validation` when they run), and the module sits beside
:mod:`stemfuse_hs.clustering`, not in it, so that reading it does not run
that package's imports: the ``stemfuse`` command builds its options from
it without waiting for numpy.
"""

import dataclasses
import inspect
import textwrap
from dataclasses import dataclass
from types import MappingProxyType

from ._signature import keywords_with_defaults

__all__ = [
    "BACKENDS",
    "CLUSTER_DEFAULTS",
    "CLUSTER_PARAMETERS",
    "ClusterParameters",
    "METRICS",
    "Parameter",
    "cluster_keywords",
    "cluster_keywords_doc",
    "cluster_parameters_doc",
    "fill_cluster_doc",
    "validate_cluster_parameters",
    "with_cluster_signature",
]

#: UMAP metrics the pipeline accepts ("jaccard" for binary features).
METRICS = ("euclidean", "chebyshev", "manhattan", "cosine", "correlation", "jaccard")
#: ``"cpu"``: umap-learn and hdbscan (the default, what CI tests);
#: ``"cuml"``: RAPIDS cuML on a GPU when installed (CPU otherwise, with a warning).
BACKENDS = ("cpu", "cuml")
#: UMAP layout optimisations (:mod:`stemfuse_hs.clustering.layout`); "auto"
#: chooses by the fit's size (:func:`stemfuse_hs.clustering.embed.resolve_layout`).
LAYOUTS = ("auto", "umap-learn", "parallel")
#: HDBSCAN's ways of selecting clusters from its tree.
SELECTION_METHODS = ("leaf", "eom")

#: What a ``kind`` accepts, for the docstrings.
_TYPE_TEXT = {
    "int": "int",
    "real": "float",
    "fraction": "float",
    "bool": "bool",
    "count_or_fraction": "int or float",
    "seed": "int",
    "n_jobs": "int",
}


@dataclass(frozen=True)
class Parameter:
    """One clustering parameter: its default, what it accepts and what it does.

    Attributes
    ----------
    name : str
        The keyword.
    default : object
        The default value.
    kind : str
        What is accepted: ``"int"`` and ``"real"`` (within ``minimum`` and
        ``maximum``), ``"fraction"`` (in [0, 1]), ``"bool"``, ``"choice"``
        (one of ``choices``), ``"count_or_fraction"`` (an integer count of
        at least 2 or a fraction in (0, 1)), ``"seed"`` (a non-negative
        integer) or ``"n_jobs"`` (joblib's convention).
    doc : str
        One line: what it does (the ``stemfuse`` option's help).
    details : str
        More prose for the docstrings, optional.
    minimum, maximum : int or float, optional
        Bounds of ``"int"`` and ``"real"``.
    choices : tuple
        Values of ``"choice"``.
    optional : bool
        None is accepted too.
    metavar : str, optional
        Placeholder in the ``stemfuse`` help.

    Examples
    --------
    >>> CLUSTER_PARAMETERS["merge_threshold"].default
    0.55
    """

    name: str
    default: object
    kind: str
    doc: str
    details: str = ""
    minimum: object = None
    maximum: object = None
    choices: tuple = ()
    optional: bool = False
    metavar: str = None

    def type_text(self):
        """The numpydoc type of the parameter, e.g. ``"int, default 10"``.

        Examples
        --------
        >>> CLUSTER_PARAMETERS["metric"].type_text().split(",")[0]
        '{"euclidean"'
        """
        if self.kind == "choice":
            text = "{" + ", ".join(f'"{c}"' for c in self.choices) + "}"
        else:
            text = _TYPE_TEXT[self.kind]
        if self.default is None:
            return f"{text}, optional"
        return f"{text}, default {self.default!r}"

    def check(self, value):
        """``value`` if it is allowed (as a plain Python value), else a TypeError or ValueError.

        Examples
        --------
        >>> CLUSTER_PARAMETERS["n_neighbors"].check(12)
        12
        >>> CLUSTER_PARAMETERS["n_neighbors"].check(1)
        Traceback (most recent call last):
        ...
        ValueError: n_neighbors must be >= 2, got 1.
        """
        from . import _validation as v

        name = self.name
        if value is None and self.optional:
            return None
        if self.kind == "int":
            return v.check_int(name, value, minimum=self.minimum, maximum=self.maximum)
        if self.kind == "real":
            return v.check_real(name, value, minimum=self.minimum, maximum=self.maximum)
        if self.kind == "fraction":
            return v.check_fraction(name, value, closed_low=True)
        if self.kind == "bool":
            return v.check_bool(name, value)
        if self.kind == "seed":
            return v.check_seed(value)
        if self.kind == "n_jobs":
            return v.check_n_jobs(value)
        if self.kind == "choice":
            if not isinstance(value, str):
                raise TypeError(f"{name} must be one of {list(self.choices)}, got {value!r}.")
            return v.check_choice(name, value, self.choices)
        if self.kind == "count_or_fraction":
            from numbers import Integral, Real

            if isinstance(value, bool) or not isinstance(value, Real):
                raise TypeError(f"{name} must be a count or a fraction, got {value!r}.")
            if isinstance(value, Integral):
                return v.check_int(name, value, minimum=2)
            return v.check_fraction(name, value, closed_high=False)
        raise AssertionError(self.kind)


_SPEC = (
    # -- UMAP (the embedding) --
    Parameter("n_components", 3, "int", "UMAP embedding dimensions", minimum=1, metavar="N"),
    Parameter("n_neighbors", 10, "int", "UMAP neighbours", minimum=2, metavar="N"),
    Parameter("min_dist", 0.0, "real", "UMAP minimum distance", minimum=0, metavar="D"),
    Parameter(
        "metric", "euclidean", "choice", "UMAP metric",
        details='The method used "euclidean" and "chebyshev"; "jaccard" suits binary features.',
        choices=METRICS,
    ),
    Parameter("densmap", True, "bool", "density-preserving UMAP (densMAP)"),
    Parameter(
        "layout", "auto", "choice",
        "UMAP layout optimisation: parallel (on every thread, the same layout on any number of them), "
        "umap-learn's own (one thread when seeded), or auto: parallel from 4,096 fitted positions",
        details=(
            "``\"parallel\"`` optimises UMAP's and densMAP's objective with the points in fixed "
            "blocks that see each other's moves 8 times an epoch (:mod:`stemfuse_hs.clustering.layout`): the "
            "same seed gives the same layout whatever the thread count. Its threads wait for one another 8 "
            "times an epoch: where other processes keep the cores busy (several fits at once), give each "
            "process its share of the cores with ``n_jobs``. ``\"umap-learn\"`` runs umap-learn's own "
            "optimisation, bit for bit, on one thread when seeded. ``\"auto\"`` (the default) runs the "
            "parallel layout for fits of at least ``LAYOUT_PARALLEL_MIN_POSITIONS`` (4,096) positions and "
            "umap-learn's below, where the layout takes a second or two and the parallel kernels' one-off "
            "compilation after an install (about 15 s on 2 cores) would cost more than they save. Over "
            "every built-in scenario and seeds 0-9 (tiny, 100 paired scans) the two layouts gave the same "
            "ARI within noise (see :mod:`stemfuse_hs.clustering.layout`); at the published size the parallel "
            "layout took 10.1 s against 15.3 s on 2 cores."
        ),
        choices=LAYOUTS,
    ),
    Parameter(
        "pca_components", None, "int",
        "principal components UMAP embeds with the euclidean metric (default: none, the features as they are)",
        details=(
            "Much faster on thousands of features, but it lost phases on a large synthetic scan (see "
            ":mod:`stemfuse_hs.clustering.embed`). None embeds the features as they are, as the method "
            "does; other metrics always do."
        ),
        minimum=1, optional=True, metavar="N",
    ),
    # -- HDBSCAN (the clusters) --
    Parameter(
        "min_cluster_size", 0.02, "count_or_fraction",
        "smallest cluster: a count (integer) or a fraction of the positions (decimal)", metavar="N|F",
    ),
    Parameter("min_samples", 10, "int", "HDBSCAN min_samples", minimum=1, metavar="N"),
    Parameter(
        "cluster_selection_epsilon", 0.0, "real", "HDBSCAN merges clusters closer than this in the embedding",
        minimum=0, metavar="E",
    ),
    Parameter(
        "cluster_selection_method", "leaf", "choice",
        "HDBSCAN cluster selection: the finest clusters (leaf, then merged by the valley test) or excess of mass (eom)",
        details=(
            "HDBSCAN's own \"eom\" sometimes keeps a parent cluster that holds two phases; \"eom\" with "
            "``merge_threshold=0`` is the reference method's plain HDBSCAN."
        ),
        choices=SELECTION_METHODS,
    ),
    Parameter(
        "min_membership", None, "fraction",
        "positions whose largest membership is below this become noise (default: none)",
        optional=True, metavar="M",
    ),
    # -- the merge --
    Parameter(
        "merge_threshold", 0.55, "real",
        "merge clusters without a density valley this deep between them in feature space; 0 disables",
        details=(
            "Thickness or bending can split one phase into several dense regions of the embedding (see "
            ":func:`stemfuse_hs.clustering.separability.separation`)."
        ),
        minimum=0, maximum=1, metavar="T",
    ),
    # -- how the fit runs --
    Parameter(
        "max_fit_positions", None, "int",
        "scans with more positions are embedded and clustered on a random subsample of this many, "
        "every other position assigned (default: chosen by itself from the memory a full fit would need)",
        details=(
            "None (the default) fits every position up to 200,000, except lazy features whose full fit "
            "would need more working memory than the budget (2 GiB, or half the available memory if "
            "less), which are fitted on the largest subsample within it, at least 10,000 positions "
            "(:func:`stemfuse_hs.clustering.memory.plan_fit`). Recorded as ``parameters[\"fit\"]`` "
            "(``\"full\"`` or ``\"subsample\"``) with ``fit_positions``, ``fit_reason``, "
            "``fit_memory_estimate_bytes`` and ``fit_memory_budget_bytes``. Lazy features fitted on a "
            "subsample are never held whole: read once for the subsample and once more, chunk by chunk, "
            "to assign (:func:`stemfuse_hs.clustering.subsample.embed_and_cluster_subsample`)."
        ),
        minimum=2, optional=True, metavar="N",
    ),
    Parameter(
        "backend", "cpu", "choice",
        "cpu (umap-learn, hdbscan) or cuml (RAPIDS on an NVIDIA GPU when installed, else the CPU)",
        details="cuML has no densMAP: its embedding is plain UMAP.",
        choices=BACKENDS,
    ),
    Parameter(
        "random_state", None, "seed", "seed for repeatable maps (the same on any number of threads; default: none)",
        optional=True, metavar="SEED",
    ),
    Parameter(
        "n_jobs", -1, "n_jobs", "threads of the parallel layout (and of umap-learn without a seed), -1 for all",
        metavar="N",
    ),
)

#: ``{name: Parameter}`` in signature order, read-only.
CLUSTER_PARAMETERS = MappingProxyType({p.name: p for p in _SPEC})
#: ``{name: default}``, read-only.
CLUSTER_DEFAULTS = MappingProxyType({p.name: p.default for p in _SPEC})


def _umap_kwargs(self):
    """The UMAP keywords (``n_components`` ... ``densmap``, ``layout``) as a dict."""
    return {k: getattr(self, k) for k in ("n_components", "n_neighbors", "min_dist", "metric", "densmap", "layout")}


def _hdbscan_kwargs(self):
    """The HDBSCAN keywords (``min_cluster_size`` ... ``cluster_selection_method``) as a dict."""
    names = ("min_cluster_size", "min_samples", "cluster_selection_epsilon", "cluster_selection_method")
    return {k: getattr(self, k) for k in names}


#: Validated clustering parameters (frozen): one attribute per entry of
#: :data:`CLUSTER_PARAMETERS`, made by :func:`validate_cluster_parameters`.
ClusterParameters = dataclasses.make_dataclass(
    "ClusterParameters",
    [(p.name, object, dataclasses.field(default=p.default)) for p in _SPEC],
    frozen=True,
    namespace={"umap_kwargs": _umap_kwargs, "hdbscan_kwargs": _hdbscan_kwargs, "__module__": __name__},
)
ClusterParameters.__doc__ = "Validated clustering parameters (frozen), from :func:`validate_cluster_parameters`."


def validate_cluster_parameters(**parameters):
    """Check clustering parameters once and freeze them; defaults fill the rest.

    Whether a value fits the data (``n_neighbors`` and ``min_cluster_size``
    against the number of positions) is checked where the data is known
    (:func:`~stemfuse_hs.clustering.scan.cluster_scan`).

    Parameters
    ----------
    **parameters
        Any of :data:`CLUSTER_PARAMETERS`.

    Returns
    -------
    ClusterParameters

    Raises
    ------
    TypeError
        For an unknown name or a value of the wrong type.
    ValueError
        For a value out of range.

    Examples
    --------
    >>> params = validate_cluster_parameters(n_neighbors=12)
    >>> params.n_neighbors, params.merge_threshold
    (12, 0.55)
    >>> validate_cluster_parameters(n_neighbours=12)
    Traceback (most recent call last):
    ...
    TypeError: unknown clustering parameter(s) ['n_neighbours']; see stemfuse_hs.cluster_parameters.CLUSTER_PARAMETERS.
    """
    unknown = sorted(set(parameters) - set(CLUSTER_PARAMETERS))
    if unknown:
        raise TypeError(
            f"unknown clustering parameter(s) {unknown}; see stemfuse_hs.cluster_parameters.CLUSTER_PARAMETERS."
        )
    values = dict(CLUSTER_DEFAULTS, **parameters)
    return ClusterParameters(**{name: p.check(values[name]) for name, p in CLUSTER_PARAMETERS.items()})


def with_cluster_signature(function=None, *, names=None, defaults=None):
    """Show the spec's keywords, with their defaults, in the signature of ``function(..., **parameters)``.

    ``function`` takes the clustering parameters as ``**parameters``; its
    ``__signature__`` lists them instead, keyword-only, in the spec's order
    and with the spec's defaults, before its other keyword-only arguments:
    what ``help()``, Jupyter and the API documentation show. ``names``
    limits them to a part of the spec (an array-level function that takes
    only UMAP's or only HDBSCAN's); ``defaults`` overrides a default where a
    bare function keeps its library's own. :func:`cluster_keywords` gives
    the body the keywords of a call with these defaults filled in.

    Examples
    --------
    >>> @with_cluster_signature
    ... def f(x, *, show_progressbar=None, **parameters):
    ...     return validate_cluster_parameters(**parameters).n_neighbors
    >>> str(inspect.signature(f)).startswith("(x, *, n_components=3, n_neighbors=10,")
    True
    >>> f(None, n_neighbors=12)
    12
    >>> @with_cluster_signature(names=("n_neighbors",), defaults={"n_neighbors": 15})
    ... def g(x, **parameters):
    ...     return cluster_keywords(g, parameters)
    >>> str(inspect.signature(g)), g(None)
    ('(x, *, n_neighbors=15)', {'n_neighbors': 15})
    """
    if function is None:
        return lambda function: with_cluster_signature(function, names=names, defaults=defaults)
    chosen = [CLUSTER_PARAMETERS[name] for name in names] if names is not None else list(_SPEC)
    overrides = dict(defaults or {})
    signature = inspect.signature(function)
    own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    position = next((i for i, p in enumerate(own) if p.kind is inspect.Parameter.KEYWORD_ONLY), len(own))
    spec = [
        inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=overrides.get(p.name, p.default))
        for p in chosen
    ]
    function.__signature__ = signature.replace(parameters=own[:position] + spec + own[position:])
    function.cluster_keywords = tuple(p.name for p in chosen)
    return function


def cluster_keywords(function, parameters):
    """The clustering keywords of a call of ``function`` (see :func:`with_cluster_signature`), defaults filled in.

    A keyword that is not one of them is refused as Python refuses an
    unexpected keyword argument; nothing else is checked here.
    """
    return keywords_with_defaults(function, parameters, function.cluster_keywords)


# --------------------------------------------------------------------------
# Docstring fragments (as exspy's _docstrings), generated from the spec
# --------------------------------------------------------------------------
def cluster_parameters_doc(names=None):
    """numpydoc ``Parameters`` entries of the clustering parameters (no indentation).

    Examples
    --------
    >>> print(cluster_parameters_doc(["n_neighbors"]))
    n_neighbors : int, default 10
        UMAP neighbours.
    """
    lines = []
    for name in names or CLUSTER_PARAMETERS:
        p = CLUSTER_PARAMETERS[name]
        lines.append(f"{p.name} : {p.type_text()}")
        text = p.doc[0].upper() + p.doc[1:] + "."
        if p.details:
            text += " " + p.details
        lines.extend(textwrap.wrap(text, 76, initial_indent="    ", subsequent_indent="    "))
    return "\n".join(lines)


def cluster_keywords_doc():
    """One line per clustering keyword, ``name`` (default): doc, for ``**cluster_kwargs`` entries.

    Examples
    --------
    >>> cluster_keywords_doc().splitlines()[1]
    '- ``n_neighbors`` (10): UMAP neighbours'
    """
    return "\n".join(f"- ``{p.name}`` ({p.default!r}): {p.doc}" for p in _SPEC)


def fill_cluster_doc(function):
    """Substitute the clustering prose into ``function``'s docstring, at its indentation.

    A line ``{cluster_parameters}`` becomes :func:`cluster_parameters_doc`'s
    entries, a line ``{cluster_keywords}`` the list of
    :func:`cluster_keywords_doc`, each indented as the placeholder was.

    Examples
    --------
    >>> def f(**cluster_kwargs):
    ...     '''Parameters
    ...     ----------
    ...     {cluster_parameters}
    ...     '''
    >>> "n_neighbors : int, default 10" in fill_cluster_doc(f).__doc__
    True
    """
    fragments = {"{cluster_parameters}": cluster_parameters_doc(), "{cluster_keywords}": cluster_keywords_doc()}
    lines = []
    for line in (function.__doc__ or "").splitlines():
        key = line.strip()
        if key in fragments:
            indent = line[: len(line) - len(line.lstrip())]
            lines.extend(indent + text if text else text for text in fragments[key].splitlines())
        else:
            lines.append(line)
    function.__doc__ = "\n".join(lines)
    return function
