"""Density clustering of the embedding (HDBSCAN) with soft memberships.

Every position gets a membership in every cluster from HDBSCAN's
``all_points_membership_vectors``; its label is the most likely cluster, or
-1 (noise) where that membership is below ``min_membership``. Clusters that
are not distinct in the fused feature space are merged afterwards.
"""

from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np

from .._validation import check_choice, check_fraction, check_int, check_real

__all__ = ["ClusterResult", "resolve_min_cluster_size", "soft_cluster", "merge_indistinct", "separation", "valley_depth"]


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


def resolve_min_cluster_size(min_cluster_size, n_positions):
    """A count from a count or a fraction of the positions.

    Examples
    --------
    >>> resolve_min_cluster_size(0.02, 7500), resolve_min_cluster_size(100, 7500)
    (150, 100)
    """
    if isinstance(min_cluster_size, bool):
        raise TypeError(f"min_cluster_size must be a count or a fraction, got {min_cluster_size!r}.")
    if isinstance(min_cluster_size, Integral):
        size = check_int("min_cluster_size", min_cluster_size, minimum=2)
    elif isinstance(min_cluster_size, Real):
        fraction = check_fraction("min_cluster_size", min_cluster_size, closed_high=False)
        size = max(2, int(round(fraction * n_positions)))
    else:
        raise TypeError(f"min_cluster_size must be a count or a fraction, got {min_cluster_size!r}.")
    if size > n_positions:
        raise ValueError(
            f"min_cluster_size={min_cluster_size} ({size} positions) is larger than the number of positions ({n_positions})."
        )
    return size


def soft_cluster(
    embedding,
    *,
    min_cluster_size=0.02,
    min_samples=10,
    cluster_selection_epsilon=0.0,
    cluster_selection_method="eom",
    min_membership=None,
):
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
    import hdbscan

    embedding = np.asarray(embedding, dtype=np.float64)
    n = embedding.shape[0]
    size = resolve_min_cluster_size(min_cluster_size, n)
    min_samples = check_int("min_samples", min_samples, minimum=1)
    min_samples = min(min_samples, size)
    cluster_selection_epsilon = check_real("cluster_selection_epsilon", cluster_selection_epsilon, minimum=0)
    check_choice("cluster_selection_method", cluster_selection_method, ("eom", "leaf"))
    if min_membership is not None:
        min_membership = check_fraction("min_membership", min_membership, closed_low=True)
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
    parameters = {
        "min_cluster_size": int(size),
        "min_cluster_size_given": min_cluster_size,
        "min_samples": int(min_samples),
        "cluster_selection_epsilon": cluster_selection_epsilon,
        "cluster_selection_method": cluster_selection_method,
        # No threshold is the same as a threshold of 0: nobody becomes noise.
        "min_membership": 0.0 if min_membership is None else min_membership,
        "n_clusters_hdbscan": n_found,
        "n_noise_hdbscan": int((clusterer.labels_ < 0).sum()),
    }
    return ClusterResult(labels=labels, memberships=memberships, parameters=parameters)


def _labels_from_memberships(memberships, min_membership):
    n = memberships.shape[0]
    if memberships.shape[1] == 0:
        return np.full(n, -1, dtype=np.int64)
    labels = np.argmax(memberships, axis=1).astype(np.int64)
    if min_membership is not None:
        labels[memberships.max(axis=1) < min_membership] = -1
    return labels


def separation(features_a, features_b, bins=40):
    """How deep the density valley between two groups of positions is.

    Both groups are projected on the line between their means (cross-fitted:
    the line from one half of each group, the projections of the other
    half). Distinct phases leave a valley in the density of the projections between the
    two means; one phase cut in two (by a thickness gradient, say) does not.
    The result is ``1 - valley / lower_peak`` of a lightly smoothed histogram
    of the pooled projections: about 0 when there is no valley, 1 when the
    groups do not touch.

    Parameters
    ----------
    features_a, features_b : numpy.ndarray
        ``(n_a, p)`` and ``(n_b, p)`` positions in feature space.
    bins : int
        Histogram bins over the span of the projections.

    Returns
    -------
    float
        In [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(0, 1, (500, 10)), rng.normal(0, 1, (500, 10))
    >>> b[:, 0] += 10
    >>> separation(a, b) > 0.9
    True
    >>> cloud = rng.normal(0, 1, (1000, 10))
    >>> left = cloud[:, 0] < 0
    >>> separation(cloud[left], cloud[~left]) < 0.3
    True
    """
    if len(features_a) < 4 or len(features_b) < 4:
        return 0.0
    # The direction between two sample means overfits in many dimensions:
    # noise alone separates the groups along it. Cross-fitting (direction
    # from one half, projections of the other) removes that bias.
    rng = np.random.default_rng(0)
    halves_a = np.array_split(rng.permutation(len(features_a)), 2)
    halves_b = np.array_split(rng.permutation(len(features_b)), 2)
    projections_a, projections_b = [], []
    for fit, held in ((0, 1), (1, 0)):
        direction = features_b[halves_b[fit]].mean(axis=0) - features_a[halves_a[fit]].mean(axis=0)
        norm = np.linalg.norm(direction)
        if norm == 0:
            return 0.0
        direction /= norm
        projections_a.append(features_a[halves_a[held]] @ direction)
        projections_b.append(features_b[halves_b[held]] @ direction)
    return valley_depth(np.concatenate(projections_a), np.concatenate(projections_b), bins)


def valley_depth(values_a, values_b, bins=40):
    """Depth of the density valley between two groups of 1-D values.

    ``1 - valley / lower_peak`` of a lightly smoothed histogram of the pooled
    values, the valley taken between the groups' medians: 0 without a
    valley, 1 when the groups do not touch.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> valley_depth(rng.normal(0, 1, 500), rng.normal(8, 1, 500)) > 0.9
    True
    """
    from scipy.ndimage import gaussian_filter1d

    values_a, values_b = np.asarray(values_a, float), np.asarray(values_b, float)
    pooled = np.concatenate([values_a, values_b])
    if pooled.size < 4 or np.ptp(pooled) == 0:
        return 0.0
    counts, edges = np.histogram(pooled, bins=bins)
    density = gaussian_filter1d(counts.astype(np.float64), 1.0)
    centres = 0.5 * (edges[:-1] + edges[1:])
    low, high = sorted((np.median(values_a), np.median(values_b)))
    between = (centres >= low) & (centres <= high)
    if not between.any():
        return 0.0
    peak_low = density[centres <= low].max() if (centres <= low).any() else density[between][0]
    peak_high = density[centres >= high].max() if (centres >= high).any() else density[between][-1]
    lower_peak = min(peak_low, peak_high)
    if lower_peak <= 0:
        return 1.0
    return float(np.clip(1.0 - density[between].min() / lower_peak, 0.0, 1.0))


def merge_indistinct(result, features, threshold=0.5, max_positions_per_cluster=5000, seed=0):
    """Merge clusters that have no density valley between them in feature space.

    Repeatedly merges the least separated pair (see :func:`separation`)
    until every pair has a valley at least ``threshold`` deep. Memberships of
    merged clusters are summed.

    Parameters
    ----------
    result : ClusterResult
    features : numpy.ndarray
        ``(n, p)`` the fused features the embedding was made from.
    threshold : float, default 0.5
        Valley depth (0 to 1) below which two clusters are one: 0.5 means
        the density between them must fall to half of the lower peak.
        ``0`` disables merging.
    max_positions_per_cluster : int
        Positions per cluster used to measure separations (a seeded sample).

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
    k = result.n_clusters
    groups = [[i] for i in range(k)]
    parameters = dict(result.parameters, merge_threshold=threshold)
    if threshold == 0 or k < 2:
        parameters["merged"] = groups
        return ClusterResult(result.labels, result.memberships, parameters)
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(k):
        members = np.flatnonzero(result.labels == i)
        if members.size > max_positions_per_cluster:
            members = np.sort(rng.choice(members, max_positions_per_cluster, replace=False))
        samples.append(np.asarray(features[members], dtype=np.float64))
    def pooled(group):
        return np.vstack([samples[i] for i in group])

    def pair_separation(group_a, group_b):
        a, b = pooled(group_a), pooled(group_b)
        return 0.0 if len(a) < 2 or len(b) < 2 else separation(a, b)

    # Separations of pairs that a merge did not touch stay valid: only the
    # pairs with the new group are measured again.
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
