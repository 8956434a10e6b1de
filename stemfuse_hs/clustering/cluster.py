"""Density clustering of the embedding (HDBSCAN) with soft memberships.

Every position gets a membership in every cluster from HDBSCAN's
``all_points_membership_vectors``; its label is the most likely cluster, or
-1 (noise) where that membership is below ``min_membership``. Clusters that
are not distinct in the fused feature space are merged afterwards.
"""

from dataclasses import dataclass, field

import numpy as np

from .._validation import check_array, check_int, check_real
from ..cluster_parameters import CLUSTER_DEFAULTS, CLUSTER_PARAMETERS, cluster_keywords, with_cluster_signature
from .separability import separation
# Re-exported for stemfuse_hs.fusion, which still imports it from here (its home is .separability).

__all__ = [
    "ClusterResult",
    "denoised_scores",
    "fit_hdbscan",
    "merge_indistinct",
    "resolve_min_cluster_size",
    "single_cluster",
    "soft_cluster",
]


@dataclass
class ClusterResult:
    """Labels and memberships of every position.

    Attributes
    ----------
    labels : numpy.ndarray
        ``(n,)`` int, -1 for noise.
    memberships : numpy.ndarray
        ``(n, n_clusters)`` float32 soft memberships. Rows sum to at most 1:
        HDBSCAN scales them by the probability that the position belongs to
        any cluster at all.
    parameters : dict
        Parameters used and what happened (merges, cluster counts).
    """

    labels: np.ndarray
    memberships: np.ndarray
    parameters: dict = field(default_factory=dict)

    @property
    def n_clusters(self):
        return self.memberships.shape[1]


def resolve_min_cluster_size(min_cluster_size, n_positions, name="min_cluster_size"):
    """A count from a count or a fraction of the positions (``name`` in the error messages).

    Examples
    --------
    >>> resolve_min_cluster_size(0.02, 7500), resolve_min_cluster_size(100, 7500)
    (150, 100)
    """
    n_positions = check_int("n_positions", n_positions, minimum=0)
    # The constraint is the spec's (a count >= 2 or a fraction in (0, 1)).
    from dataclasses import replace

    value = replace(CLUSTER_PARAMETERS["min_cluster_size"], name=name).check(min_cluster_size)
    size = value if isinstance(value, int) else max(2, int(round(value * n_positions)))
    if size > n_positions:
        raise ValueError(
            f"{name}={min_cluster_size} ({size} positions) is larger than the number of positions ({n_positions})."
        )
    return size


#: The clustering parameters HDBSCAN and the labelling take.
HDBSCAN_PARAMETERS = (
    "min_cluster_size", "min_samples", "cluster_selection_epsilon", "cluster_selection_method", "min_membership"
)


# HDBSCAN's own default selection for this bare wrapper; the pipeline passes
# the spec's "leaf" (see stemfuse_hs.cluster_parameters).
@with_cluster_signature(names=HDBSCAN_PARAMETERS, defaults={"cluster_selection_method": "eom"})
def soft_cluster(embedding, **parameters):
    """HDBSCAN on an embedding, labels from soft memberships.

    Parameters
    ----------
    embedding : numpy.ndarray
        ``(n, d)``.
    min_cluster_size : int or float, default 0.02
        Smallest cluster, as a count (int) or a fraction of the positions
        (float in (0, 1)), so that granularity does not change with scan size.
        The method relates it to the smallest microstructural feature.
    min_samples : int, default 10
        How conservative HDBSCAN is about density; capped at ``min_cluster_size``.
    cluster_selection_epsilon : float, default 0.0
        Clusters closer than this in the embedding are merged by HDBSCAN.
    cluster_selection_method : {"eom", "leaf"}, default "eom"
        HDBSCAN's choice of clusters from its tree: "eom" (excess of mass)
        or "leaf" (the finest clusters; use with :func:`merge_indistinct`).
    min_membership : float, optional
        Positions whose largest membership is below this are noise (-1).

    Returns
    -------
    ClusterResult

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = np.vstack([rng.normal(0, 0.3, (100, 3)), rng.normal(5, 0.3, (100, 3))])
    >>> result = soft_cluster(x, min_cluster_size=20)
    >>> result.n_clusters, len(set(result.labels[:100])), len(set(result.labels[100:]))
    (2, 1, 1)
    """
    # The keyword arguments, checked by the spec's constraints (this public
    # function checks its own; the pipeline calls fit_hdbscan directly).
    given = cluster_keywords(soft_cluster, parameters)
    checked = {name: CLUSTER_PARAMETERS[name].check(value) for name, value in given.items()}
    embedding = np.asarray(check_array("embedding", embedding, ndim=2, finite=True), dtype=np.float64)
    n = embedding.shape[0]
    if n < 2:
        raise ValueError(f"embedding has {n} position(s); clustering needs at least two.")
    return fit_hdbscan(embedding, **checked)


def fit_hdbscan(
    embedding, *, min_cluster_size, min_samples, cluster_selection_epsilon, cluster_selection_method, min_membership
):
    """:func:`soft_cluster` on already validated parameters (what the pipeline calls).

    ``embedding`` is a finite ``(n, d)`` float64 array of at least two rows.
    """
    import hdbscan

    n = embedding.shape[0]
    size = resolve_min_cluster_size(min_cluster_size, n)
    min_samples = min(min_samples, size)
    clusterer = hdbscan.HDBSCAN(
        min_cluster_size=size,
        min_samples=min_samples,
        cluster_selection_epsilon=cluster_selection_epsilon,
        cluster_selection_method=cluster_selection_method,
        prediction_data=True,
    ).fit(embedding)
    n_found = int(clusterer.labels_.max()) + 1
    if n_found == 0:
        memberships = np.zeros((n, 0), dtype=np.float32)
    elif n_found == 1:
        # all_points_membership_vectors is undefined for one cluster: every
        # position belongs to it with HDBSCAN's own confidence.
        memberships = np.ones((n, 1), dtype=np.float32)
    else:
        memberships = np.asarray(hdbscan.all_points_membership_vectors(clusterer), dtype=np.float32)
    labels = _labels_from_memberships(memberships, min_membership)
    parameters = _record(
        size, min_cluster_size, min_samples, cluster_selection_epsilon, cluster_selection_method, min_membership
    )
    parameters.update(n_clusters_hdbscan=n_found, n_noise_hdbscan=int((clusterer.labels_ < 0).sum()))
    return ClusterResult(labels=labels, memberships=memberships, parameters=parameters)


def _record(size, given, min_samples, epsilon, method, min_membership):
    return {
        "min_cluster_size": int(size),
        "min_cluster_size_given": given,
        "min_samples": int(min_samples),
        "cluster_selection_epsilon": epsilon,
        "cluster_selection_method": method,
        # No threshold is the same as a threshold of 0: nobody becomes noise.
        "min_membership": 0.0 if min_membership is None else min_membership,
    }


def single_cluster(n, parameters):
    """Every position in one cluster, for positions that cannot be told apart.

    Identical feature vectors have no density structure to find (and UMAP
    cannot embed them); the honest answer is one group. The parameters are
    recorded as :func:`soft_cluster` and :func:`merge_indistinct` would.

    Parameters
    ----------
    n : int
        Number of positions (at least 1).
    parameters : ClusterParameters
        Validated (:func:`~stemfuse_hs.cluster_parameters.validate_cluster_parameters`).

    Examples
    --------
    >>> from stemfuse_hs.cluster_parameters import validate_cluster_parameters
    >>> result = single_cluster(5, validate_cluster_parameters())
    >>> result.labels.tolist(), result.n_clusters
    ([0, 0, 0, 0, 0], 1)
    """
    size = resolve_min_cluster_size(parameters.min_cluster_size, n)
    record = _record(
        size,
        parameters.min_cluster_size,
        min(parameters.min_samples, size),
        parameters.cluster_selection_epsilon,
        parameters.cluster_selection_method,
        parameters.min_membership,
    )
    record.update(n_clusters_hdbscan=1, n_noise_hdbscan=0, merge_threshold=parameters.merge_threshold, merged=[[0]])
    return ClusterResult(
        labels=np.zeros(n, dtype=np.int64), memberships=np.ones((n, 1), dtype=np.float32), parameters=record
    )


def _labels_from_memberships(memberships, min_membership):
    n = memberships.shape[0]
    if memberships.shape[1] == 0:
        return np.full(n, -1, dtype=np.int64)
    labels = np.argmax(memberships, axis=1).astype(np.int64)
    if min_membership is not None:
        labels[memberships.max(axis=1) < min_membership] = -1
    return labels


def denoised_scores(features, n_components=10, max_samples=20_000, seed=0):
    """Leading principal-component scores of every position.

    The merge decisions are made here rather than in thousands of noisy
    dimensions, where the line between two sample means separates even
    identical groups.
    """
    from sklearn.decomposition import PCA

    from .embed import project_rows

    features = np.asarray(features, dtype=np.float32)
    k = int(min(n_components, features.shape[1], max(features.shape[0] - 1, 1)))
    if k >= features.shape[1]:
        return features.astype(np.float64)
    rng = np.random.default_rng(seed)
    fit_rows = features
    if features.shape[0] > max_samples:
        fit_rows = features[np.sort(rng.choice(features.shape[0], max_samples, replace=False))]
    # A drawn subsample is already a copy: centre it in place (copy=False).
    pca = PCA(k, svd_solver="randomized", random_state=seed, copy=fit_rows is features).fit(fit_rows)
    return project_rows(pca, features, dtype=np.float64)


def merge_indistinct(result, features, threshold=CLUSTER_DEFAULTS["merge_threshold"], n_components=10, seed=0):
    """Merge clusters that have no density valley between them in feature space.

    Repeatedly merges the least separated pair (see :func:`~.separability.separation`, in
    the ``n_components`` leading principal components of ``features``)
    until every pair has a valley at least ``threshold`` deep. Memberships
    of merged clusters are summed and labels follow them.

    Parameters
    ----------
    result : ClusterResult
    features : numpy.ndarray
        ``(n, p)`` the fused features the embedding was made from.
    threshold : float, default 0.55
        Valley depth (0 to 1) below which two clusters are one: 0.55 means
        the density between them must fall to 45 % of the lower peak.
        ``0`` disables merging.
    n_components : int, default 10
        Principal components the separations are measured in.

    Returns
    -------
    ClusterResult
        With ``parameters["merged"]`` listing the merged groups of original
        cluster indices and ``parameters["merge_threshold"]``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(0, 1, (300, 2))
    >>> x[200:] += 9
    >>> labels = np.where(np.arange(300) >= 200, 2, (x[:, 0] > 0).astype(int))
    >>> m = np.zeros((300, 3), np.float32); m[np.arange(300), labels] = 1
    >>> merged = merge_indistinct(ClusterResult(labels, m), x)
    >>> merged.n_clusters, merged.parameters["merged"]
    (2, [[0, 1], [2]])
    """
    threshold = check_real("merge_threshold", threshold, minimum=0, maximum=1)
    if not isinstance(result, ClusterResult):
        raise TypeError(f"result must be a ClusterResult (from soft_cluster), got {type(result).__name__}.")
    n_components = check_int("n_components", n_components, minimum=1)
    features = check_array("features", features, ndim=2)
    if features.shape[0] != len(result.labels):
        raise ValueError(
            f"features has {features.shape[0]} rows for {len(result.labels)} labelled positions; they must match."
        )
    k = result.n_clusters
    groups = [[i] for i in range(k)]
    parameters = dict(result.parameters, merge_threshold=threshold)
    if threshold == 0 or k < 2:
        parameters["merged"] = groups
        return ClusterResult(result.labels, result.memberships, parameters)
    scores = denoised_scores(features, n_components, seed=seed)
    original = np.asarray(result.labels)

    def pair_separation(group_a, group_b):
        # Relabel the two groups as 0 and 1, everything else stays "other".
        labels = np.full(original.shape, -1)
        labels[np.isin(original, group_a)] = 0
        labels[np.isin(original, group_b)] = 1
        return separation(scores, labels, 0, 1)

    # Separations of pairs that a merge did not touch stay valid (the other
    # positions fill the tube whatever their cluster): only the pairs with
    # the new group are measured again.
    known = {
        (tuple(groups[a]), tuple(groups[b])): pair_separation(groups[a], groups[b])
        for a in range(len(groups))
        for b in range(a + 1, len(groups))
    }
    while len(groups) > 1:
        (first, second), best = min(known.items(), key=lambda item: item[1])
        if best >= threshold:
            break
        merged = sorted(first + second)
        groups = [g for g in groups if tuple(g) not in (first, second)]
        known = {pair: d for pair, d in known.items() if first not in pair and second not in pair}
        for g in groups:
            known[(tuple(g), tuple(merged))] = pair_separation(g, merged)
        groups.append(merged)
    groups.sort(key=lambda g: g[0])
    memberships = np.stack([result.memberships[:, g].sum(axis=1) for g in groups], axis=1).astype(np.float32)
    # Labels follow the merged memberships: a position below min_membership
    # in each of two clusters can be above it in their union.
    min_membership = parameters.get("min_membership", 0.0) or None
    labels = _labels_from_memberships(memberships, min_membership)
    parameters["merged"] = groups
    return ClusterResult(labels, memberships, parameters)
