"""Agreement between label maps: alignment, consensus, stability, adjusted Rand.

A clustering run numbers its clusters arbitrarily: the same phase may be
cluster 0 in one run and cluster 2 in the next. Before runs (or the results
of different parameters) can be compared position by position, every label
map is *aligned* to a reference map: its clusters are renamed so that each
takes the reference id it overlaps most, one to one, which is a linear
assignment on the contingency table (Hungarian method,
``scipy.optimize.linear_sum_assignment``). Clusters may appear or vanish
from run to run; a cluster without a partner in the reference gets an id of
its own, shared with the clusters of other runs it overlaps, so that a
phase found by some runs but not by the reference keeps one id.

Everything works on flat integer label arrays (``-1`` = noise, kept as
noise) and needs memory linear in the number of positions: contingency
tables are ``(k_a, k_b)`` counts and the consensus is a vote per position
and cluster, never a positions-by-positions co-association matrix.
"""

from dataclasses import dataclass

import numpy as np

from .._checks import check_weights

__all__ = [
    "LabelAgreement",
    "contingency_table",
    "adjusted_rand_index",
    "pairwise_ari",
    "align_labels",
    "align_runs",
    "consensus_labels",
    "label_agreement",
    "rescale_blocks",
]

NOISE = -1


def _flat_labels(labels, name="labels"):
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iub":
        if labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise TypeError(f"{name} must hold integer cluster ids (-1 = noise), got dtype {labels.dtype}.")
    labels = labels.astype(np.int64, copy=False).ravel()
    if labels.size and labels.min() < NOISE:
        raise ValueError(f"{name} holds {labels.min()}: cluster ids are >= 0 and -1 marks noise.")
    return labels


def _label_stack(runs):
    runs = np.asarray(runs)
    if runs.ndim < 2:
        raise ValueError(f"expected a stack of label maps (n_runs, ...), got shape {runs.shape}.")
    n_runs = runs.shape[0]
    stack = _flat_labels(runs, "runs").reshape(n_runs, -1)
    return stack


def contingency_table(labels_a, labels_b):
    """Counts of positions with each pair of labels.

    Parameters
    ----------
    labels_a, labels_b : array_like of int
        Two label maps of the same positions (any shape, same size); ``-1``
        (noise) counts as a label of its own.

    Returns
    -------
    table : numpy.ndarray
        ``(k_a, k_b)`` int64: ``table[i, j]`` positions labelled
        ``values_a[i]`` in ``labels_a`` and ``values_b[j]`` in ``labels_b``.
    values_a, values_b : numpy.ndarray
        The distinct labels of each map, sorted.

    Examples
    --------
    >>> table, a, b = contingency_table([0, 0, 1, 1, -1], [1, 1, 0, 1, 0])
    >>> table.tolist(), a.tolist(), b.tolist()
    ([[1, 0], [0, 2], [1, 1]], [-1, 0, 1], [0, 1])
    """
    a = _flat_labels(labels_a, "labels_a")
    b = _flat_labels(labels_b, "labels_b")
    if a.size != b.size:
        raise ValueError(f"the label maps cover {a.size} and {b.size} positions; they must be of the same scan.")
    values_a, index_a = np.unique(a, return_inverse=True)
    values_b, index_b = np.unique(b, return_inverse=True)
    # One bincount over combined indices: O(n) memory, never (n, n).
    flat = index_a.astype(np.int64) * values_b.size + index_b
    table = np.bincount(flat, minlength=values_a.size * values_b.size).reshape(values_a.size, values_b.size)
    return table.astype(np.int64), values_a, values_b


def adjusted_rand_index(labels_a, labels_b):
    """Adjusted Rand index between two label maps of the same positions.

    1 for identical partitions (whatever the cluster numbering), about 0 for
    unrelated ones. Noise (-1) is treated as one more cluster, as
    :func:`sklearn.metrics.adjusted_rand_score` (which computes it) treats
    any label; the maps are checked as label maps first (integer ids, -1 =
    noise, the same number of positions, any shape).

    Parameters
    ----------
    labels_a, labels_b : array_like of int

    Returns
    -------
    float

    Examples
    --------
    >>> adjusted_rand_index([0, 0, 1, 1], [5, 5, 2, 2])
    1.0
    >>> round(adjusted_rand_index([0, 0, 1, 1, 2, 2], [0, 0, 1, 2, 2, 2]), 3)
    0.444
    """
    from sklearn.metrics import adjusted_rand_score

    a = _flat_labels(labels_a, "labels_a")
    b = _flat_labels(labels_b, "labels_b")
    if a.size != b.size:
        raise ValueError(f"the label maps cover {a.size} and {b.size} positions; they must be of the same scan.")
    return float(adjusted_rand_score(a, b))


def pairwise_ari(runs):
    """Adjusted Rand index between every pair of label maps.

    Parameters
    ----------
    runs : array_like of int
        ``(n_runs, ...)`` a stack of label maps of the same positions.

    Returns
    -------
    numpy.ndarray
        ``(n_runs, n_runs)`` symmetric, ones on the diagonal.

    Examples
    --------
    >>> pairwise_ari([[0, 0, 1, 1], [1, 1, 0, 0], [0, 1, 0, 1]]).round(2).tolist()
    [[1.0, 1.0, -0.5], [1.0, 1.0, -0.5], [-0.5, -0.5, 1.0]]
    """
    stack = _label_stack(runs)
    n_runs = stack.shape[0]
    matrix = np.eye(n_runs)
    for i in range(n_runs):
        for j in range(i + 1, n_runs):
            matrix[i, j] = matrix[j, i] = adjusted_rand_index(stack[i], stack[j])
    return matrix


def _assign(overlap):
    """Row -> column pairs maximising the total overlap, positive overlaps only."""
    from scipy.optimize import linear_sum_assignment

    if overlap.size == 0:
        return []
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if overlap[r, c] > 0]


def align_labels(labels, reference, next_id=None):
    """Renumber the clusters of ``labels`` after those of ``reference``.

    Each cluster takes the id of the reference cluster it overlaps most,
    one to one, by maximising the total overlap (Hungarian assignment on the
    contingency table). Clusters left without a partner (there are more of
    them than in the reference, or they do not overlap any unmatched
    reference cluster) get new ids from ``next_id`` on. Noise stays ``-1``.

    Parameters
    ----------
    labels, reference : array_like of int
        Label maps of the same positions (same size); ``-1`` = noise.
    next_id : int, optional
        First id for unmatched clusters; default one more than the largest
        id of ``reference``.

    Returns
    -------
    aligned : numpy.ndarray
        ``labels`` renumbered, same shape, int64.
    mapping : dict
        Original id -> new id.

    Examples
    --------
    >>> aligned, mapping = align_labels([2, 2, 0, 0, 1, -1], [0, 0, 1, 1, 1, 1])
    >>> aligned.tolist(), mapping
    ([0, 0, 1, 1, 2, -1], {0: 1, 1: 2, 2: 0})
    """
    shape = np.shape(labels)
    flat = _flat_labels(labels)
    ref = _flat_labels(reference, "reference")
    table, values, ref_values = contingency_table(flat, ref)
    own = values >= 0
    ref_own = ref_values >= 0
    overlap = table[np.ix_(own, ref_own)]
    values, ref_values = values[own], ref_values[ref_own]
    mapping = {int(values[r]): int(ref_values[c]) for r, c in _assign(overlap)}
    if next_id is None:
        next_id = int(ref_values.max()) + 1 if ref_values.size else 0
    # Unmatched clusters numbered by size, largest first, so that the ids
    # given out do not depend on how the run happened to number them.
    unmatched = [int(v) for v in values if int(v) not in mapping]
    sizes = {v: int(np.count_nonzero(flat == v)) for v in unmatched}
    for v in sorted(unmatched, key=lambda v: (-sizes[v], v)):
        mapping[v] = int(next_id)
        next_id += 1
    return _relabel(flat, mapping).reshape(shape), dict(sorted(mapping.items()))


def _relabel(flat, mapping):
    if flat.size == 0:
        return flat.copy()
    top = max(int(flat.max()), max(mapping, default=0)) + 2
    lookup = np.full(top, NOISE, dtype=np.int64)  # index 0 is noise (-1 + 1)
    for old, new in mapping.items():
        lookup[old + 1] = new
    return lookup[flat + 1]


def _overlap(labels, values, other, n_ids):
    """``(len(values), n_ids)`` positions with ``labels == values[i]`` and ``other == j``."""
    keep = (labels >= 0) & (other >= 0) & (other < n_ids)
    rows = np.searchsorted(values, labels[keep])
    flat = rows * n_ids + other[keep]
    return np.bincount(flat, minlength=len(values) * n_ids).reshape(len(values), n_ids)


def align_runs(runs, reference=0):
    """Align a stack of label maps to one of them.

    Every map's clusters take the ids of the reference map's clusters they
    overlap most, one to one (Hungarian assignment on the contingency
    table); among equally good assignments, the one that also agrees best
    with the maps aligned before wins. A cluster left without a partner is
    then matched, by the same assignment, against the ids already given to
    clusters of earlier maps that the reference lacks (by their overlap in
    those maps), so a cluster that several maps find but the reference does
    not keeps one id. Clusters matching nothing get new ids, larger
    clusters first.

    Parameters
    ----------
    runs : array_like of int
        ``(n_runs, ...)`` label maps of the same positions; ``-1`` = noise.
    reference : int, default 0
        Index of the map whose ids are kept.

    Returns
    -------
    numpy.ndarray
        ``(n_runs, ...)`` int64: the aligned maps; ``aligned[reference]``
        equals ``runs[reference]``.

    Examples
    --------
    >>> align_runs([[0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 0, 2]]).tolist()
    [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 2]]

    A cluster that the reference lacks keeps one id across the other runs:

    >>> align_runs([[0, 0, 0, 0, 0], [0, 0, 0, 1, 1], [2, 2, 2, 0, 0]]).tolist()
    [[0, 0, 0, 0, 0], [0, 0, 0, 1, 1], [0, 0, 0, 1, 1]]
    """
    runs_array = np.asarray(runs)
    stack = _label_stack(runs_array)
    n_runs, n = stack.shape
    reference = int(reference)
    if not -n_runs <= reference < n_runs:
        raise ValueError(f"reference={reference} is not a run index (0 to {n_runs - 1}).")
    reference %= n_runs
    ref = stack[reference]
    ref_ids = np.unique(ref[ref >= 0])
    next_id = int(ref_ids.max()) + 1 if ref_ids.size else 0
    first_extra = next_id
    aligned = np.empty_like(stack)
    aligned[reference] = ref
    done = []
    # Weight of the reference in the stage-1 score: any overlap with it
    # outweighs every overlap with the other maps, which only break ties.
    dominant = float(n) * n_runs + 1.0
    for r in [r for r in range(n_runs) if r != reference]:
        labels = stack[r]
        values = np.unique(labels[labels >= 0])
        mapping = {}
        if values.size:
            with_ref = _overlap(labels, values, ref, next_id)
            with_others = np.zeros_like(with_ref)
            for d in done:
                with_others += _overlap(labels, values, aligned[d], next_id)
            # Stage 1: the reference's own clusters.
            score = with_ref[:, ref_ids] * dominant + with_others[:, ref_ids]
            for i, j in _assign(score):
                if with_ref[i, ref_ids[j]] > 0:
                    mapping[int(values[i])] = int(ref_ids[j])
            # Stage 2: ids already given to clusters the reference lacks.
            rows = [i for i, v in enumerate(values) if int(v) not in mapping]
            extra = np.arange(first_extra, next_id)
            if rows and extra.size:
                for i, j in _assign(with_others[np.ix_(rows, extra)]):
                    mapping[int(values[rows[i]])] = int(extra[j])
        unmatched = [int(v) for v in values if int(v) not in mapping]
        sizes = {v: int(np.count_nonzero(labels == v)) for v in unmatched}
        for v in sorted(unmatched, key=lambda v: (-sizes[v], v)):
            mapping[v] = next_id
            next_id += 1
        aligned[r] = _relabel(labels, mapping)
        done.append(r)
    return aligned.reshape(runs_array.shape)


def consensus_labels(aligned, prefer=None):
    """Per-position mode of aligned label maps, and how many maps agree with it.

    Parameters
    ----------
    aligned : array_like of int
        ``(n_runs, ...)`` label maps aligned with :func:`align_runs`.
    prefer : int, optional
        Index of a map whose label wins ties (the reference); otherwise ties
        go to the lowest cluster id, and to a cluster over noise.

    Returns
    -------
    consensus : numpy.ndarray
        ``(...)`` int64: the most frequent label of every position (-1
        where noise is strictly the most frequent).
    agreement : numpy.ndarray
        ``(...)`` float32 in (0, 1]: fraction of maps giving the consensus
        label, the position's stability.
    votes : numpy.ndarray
        ``(..., n_ids)`` float32: fraction of maps giving each cluster id
        ``0 .. n_ids - 1`` (noise not counted), usable as soft memberships.

    Examples
    --------
    >>> consensus, agreement, votes = consensus_labels([[0, 0, 1], [0, 1, 1], [0, 1, -1]])
    >>> consensus.tolist(), [round(float(a), 2) for a in agreement]
    ([0, 1, 1], [1.0, 0.67, 0.67])
    >>> (votes * 3).round().astype(int).tolist()  # runs voting for clusters 0 and 1
    [[3, 0], [1, 2], [0, 2]]
    """
    aligned = np.asarray(aligned)
    stack = _label_stack(aligned)
    n_runs, n = stack.shape
    n_ids = int(stack.max()) + 1 if stack.size and stack.max() >= 0 else 0
    # One pass per cluster id: (n,) counters, never (n, n).
    votes = np.zeros((n, n_ids), dtype=np.float32)
    best_count = np.zeros(n, dtype=np.int32)
    consensus = np.full(n, NOISE, dtype=np.int64)
    for cluster in range(n_ids):
        count = np.count_nonzero(stack == cluster, axis=0).astype(np.int32)
        votes[:, cluster] = count / n_runs
        better = count > best_count
        consensus[better] = cluster
        best_count[better] = count[better]
    noise = np.count_nonzero(stack == NOISE, axis=0).astype(np.int32)
    noise_wins = noise > best_count
    consensus[noise_wins] = NOISE
    best_count[noise_wins] = noise[noise_wins]
    if prefer is not None:
        preferred = stack[int(prefer)]
        tie = np.count_nonzero(stack == preferred, axis=0) == best_count
        consensus[tie] = preferred[tie]
    agreement = (best_count / n_runs).astype(np.float32)
    out_shape = aligned.shape[1:]
    return consensus.reshape(out_shape), agreement.reshape(out_shape), votes.reshape(out_shape + (n_ids,))


@dataclass
class LabelAgreement:
    """How far several label maps of the same positions agree.

    Attributes
    ----------
    aligned : numpy.ndarray
        ``(n_runs, ...)`` int64: the maps renumbered after the reference
        (:func:`align_runs`).
    consensus : numpy.ndarray
        ``(...)`` the per-position mode of the aligned maps.
    stability : numpy.ndarray
        ``(...)`` float32: fraction of maps that agree with the consensus.
    votes : numpy.ndarray
        ``(..., n_ids)`` float32: fraction of maps giving each cluster id.
    ari : numpy.ndarray
        ``(n_runs, n_runs)`` pairwise adjusted Rand index.
    reference : int
        Index of the map whose cluster ids were kept.
    """

    aligned: np.ndarray
    consensus: np.ndarray
    stability: np.ndarray
    votes: np.ndarray
    ari: np.ndarray
    reference: int

    @property
    def n_ids(self):
        """Number of cluster ids in the aligned maps (0 .. n_ids - 1)."""
        return int(self.votes.shape[-1])


def label_agreement(runs, reference="medoid"):
    """Align label maps, take their consensus and measure their agreement.

    Parameters
    ----------
    runs : array_like of int
        ``(n_runs, ...)`` label maps of the same positions (``-1`` = noise),
        e.g. the same clustering with different seeds or parameters.
    reference : int or "medoid", default "medoid"
        The map whose cluster ids are kept. ``"medoid"``: the map with the
        highest mean adjusted Rand index to the others (the most typical
        one; ties to the first, maps of noise only never chosen unless all
        are), so that one odd run does not set the ids.

    Returns
    -------
    LabelAgreement

    Examples
    --------
    >>> import numpy as np
    >>> runs = np.array([[0, 0, 1, 1, 2, 2], [2, 2, 0, 0, 1, 1], [1, 1, 0, 0, 2, 0]])
    >>> result = label_agreement(runs)
    >>> result.consensus.tolist(), [round(float(a), 2) for a in result.stability]
    ([0, 0, 1, 1, 2, 2], [1.0, 1.0, 1.0, 1.0, 1.0, 0.67])
    """
    stack = _label_stack(runs)
    shape = np.shape(runs)
    ari = pairwise_ari(stack)
    n_runs = stack.shape[0]
    if isinstance(reference, str):
        if reference != "medoid":
            raise ValueError(f"reference must be a run index or 'medoid', got {reference!r}.")
        mean_ari = (ari.sum(axis=1) - 1) / max(n_runs - 1, 1)
        # A map of noise only has no ids to give: never the reference
        # unless every map is noise only.
        has_clusters = (stack >= 0).any(axis=1)
        if has_clusters.any():
            mean_ari = np.where(has_clusters, mean_ari, -np.inf)
        reference = int(np.argmax(mean_ari))
    else:
        reference = int(reference)
        if not -n_runs <= reference < n_runs:
            raise ValueError(f"reference={reference} is not a run index (0 to {n_runs - 1}).")
        reference %= n_runs
    aligned = align_runs(stack, reference)
    consensus, stability, votes = consensus_labels(aligned, prefer=reference)
    return LabelAgreement(
        aligned=aligned.reshape(shape),
        consensus=consensus.reshape(shape[1:]),
        stability=stability.reshape(shape[1:]),
        votes=votes.reshape(shape[1:] + (votes.shape[-1],)),
        ari=ari,
        reference=reference,
    )


def rescale_blocks(matrix, block_slices, old_weights, new_weights):
    """Re-weight the blocks of a fused matrix without recomputing it.

    A block of a matrix fused with the ``"auto"`` or ``"equal"`` weighting
    (:func:`stemfuse_hs.fusion.fuse_blocks`) is ``weight * normalised
    block``: its weight multiplies the whole block after centring and
    scaling. Multiplying its columns by ``new / old`` therefore gives
    exactly the matrix fused with the new weights. It does not hold for the
    ``"reference"`` weighting, whose factor acts before a joint scaling.

    Parameters
    ----------
    matrix : numpy.ndarray
        ``(n_positions, n_features)`` fused features.
    block_slices : sequence of (int, int)
        Column range of each block.
    old_weights, new_weights : sequence of float
        One weight per block: those applied, those wanted (finite, >= 0,
        not all zero).

    Returns
    -------
    numpy.ndarray
        A new float32 matrix.

    Raises
    ------
    ValueError
        If a block with weight 0 should get a non-zero weight: its values
        are gone.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.ones((2, 3), np.float32)
    >>> rescale_blocks(m, [(0, 1), (1, 3)], [1.0, 0.5], [1.0, 2.0]).tolist()
    [[1.0, 4.0, 4.0], [1.0, 4.0, 4.0]]
    """
    matrix = np.asarray(matrix)
    slices = [(int(a), int(b)) for a, b in np.asarray(block_slices, dtype=np.int64).reshape(-1, 2)]
    old = np.asarray(old_weights, dtype=np.float64).ravel()
    new = np.asarray(check_weights(new_weights, len(slices)), dtype=np.float64)
    if old.shape != (len(slices),):
        raise ValueError(f"{old.size} applied weights recorded for {len(slices)} blocks.")
    lost = (old == 0) & (new != 0)
    if np.any(lost):
        raise ValueError(
            f"block(s) {np.flatnonzero(lost).tolist()} were fused with weight 0: their features are zero "
            "and cannot be re-weighted; fuse again with a non-zero weight."
        )
    factors = np.ones(matrix.shape[-1], dtype=np.float64)
    for (start, stop), o, w in zip(slices, old, new):
        factors[start:stop] = 1.0 if o == 0 else w / o
    out = np.array(matrix, dtype=np.float32, copy=True)
    out *= factors.astype(np.float32)
    return out
