"""UMAP's layout optimisation, the same on any number of threads.

umap-learn optimises the layout by stochastic gradient descent over the
graph's edges. Seeded, it runs on one thread (its parallel loop lets threads
write the same points in any order, so the result changes from run to run);
that loop was three quarters of the pipeline's time (docs/performance.md).

:func:`optimize_layout_euclidean` optimises the same objective (UMAP's
cross-entropy and densMAP's density term, with umap-learn's negative
sampling, learning-rate schedule, random numbers per point and initial
layout) with the points split into ``LAYOUT_BLOCKS`` fixed blocks of
neighbours in the initial layout (:func:`layout_blocks`), whichever thread
runs a block:

* an epoch is cut into ``LAYOUT_STEPS`` steps; in a step each block visits
  its share of the edges of its points in umap-learn's order, moving its
  own points as it goes and reading the other blocks' points as they were
  at the start of the step;
* the pull an edge gives a point of another block is kept and added after
  the step, point by point in edge order;
* densMAP's local radii are summed point by point in edge order.

No thread reads what another writes during a step and every sum has a fixed
order (the kernels' fast-math flags leave out reassociation,
:data:`KERNEL_FASTMATH`): the same seed gives the same layout, bit for bit,
on one thread or many (tests/clustering/test_reproducibility_threads.py),
and whether the kernels were compiled in this process or loaded from
numba's disk cache. It is not umap-learn's layout bit
for bit: a block sees the others' moves up to a step late, and an edge
computes ``pow(d2, b - 1)`` as ``pow(d2, b) / d2`` and reads densMAP's
per-point terms computed once an epoch (one power where umap-learn
computes five). ``layout="auto"`` (the default) runs it for fits of at least
``stemfuse_hs.clustering.embed.LAYOUT_PARALLEL_MIN_POSITIONS`` positions;
``layout="umap-learn"`` keeps umap-learn's own.

Measured (AMD EPYC, 2 cores, 2026-12-04), the steps matter, the blocks
less: on the tiny scans, ``cluster()`` with blocks numbered by index and
one step an epoch lost the precipitates (ARI 0.65-0.85 against 0.96-0.97
with umap-learn's layout); with blocks of the initial layout and 16 steps,
ten scenarios x three seeds gave a mean ARI of 0.421 against 0.425
(run-to-run agreement 0.920 against 0.899). With this module's defaults,
32 blocks and 8 steps, over every scenario and seeds 0-9 (tiny scans, each
seed its own scan and ``random_state``; 100 scans, the same calls with
either layout): the phase map of :func:`stemfuse_hs.map_phases` scored a
mean ARI of 0.608 against 0.613 with umap-learn's layout (paired
difference -0.006 +- 0.015 standard error), the fused ``cluster()``
0.389 against 0.384 (+0.005 +- 0.004); per scenario the means moved by
up to 0.1 either way (``poly_precipitates`` 0.21 against 0.31,
``poly_structure`` 0.39 against 0.29), which is the spread of single
seeds, not a bias. So it is the default (from 4,096 positions, where it
saves more than the one-off compilation of its kernels after an install
costs: 41.8 s against 17.7-22.9 s for the tiny demo right after a fresh
install). The layout of
the published-size ``four_phases`` scan (7,500 positions, 700 epochs)
took 10.1 s on two threads against 15.3 s for umap-learn's seeded layout
(min of two runs each, same process); its ``cluster()`` 19.6-20.9 s
against 24.0-24.4 s, ARI 0.947 against 0.949. Its threads step together
eight times an epoch: on cores kept busy by other processes (two pytest
workers of two threads each on two cores) it ran at about half speed, so
give each process its share of the cores with ``n_jobs``.

numba compiles the kernels on first use and caches them on disk.
"""

import contextlib
import contextvars

import numba
import numpy as np

from ..cluster_parameters import LAYOUTS

__all__ = [
    "LAYOUTS",
    "LAYOUT_BLOCKS",
    "LAYOUT_STEPS",
    "KERNEL_FASTMATH",
    "compiled_kernels",
    "fits_in_parallel",
    "layout_blocks",
    "optimize_layout_euclidean",
    "parallel_layout",
]

#: Blocks of consecutive points the layout is split into, whatever the
#: number of threads (the layout depends on it, the thread count does not).
LAYOUT_BLOCKS = 32
#: Steps an epoch is cut into: after each, the blocks see each other's moves.
LAYOUT_STEPS = 8
#: The kernels' fast-math flags: LLVM's ``fast`` set but ``reassoc``. With
#: ``reassoc`` (``fastmath=True``) LLVM may reorder the sums, and it did so
#: differently in the process that compiled the kernels and in the later
#: processes that loaded them from numba's disk cache: densMAP's radii
#: differed in the last bit on 1.6 % of the points, and a published-size
#: map of the same scan with them (``poly_hcp`` seed 1 at 7,500 positions:
#: ARI 0.469 against 0.431). Without it every sum runs in the order written.
KERNEL_FASTMATH = frozenset({"nnan", "ninf", "nsz", "arcp", "contract", "afn"})
# Threads of the parallel layout inside ``parallel_layout`` (None outside).
_THREADS = contextvars.ContextVar("stemfuse_parallel_layout_threads", default=None)


@contextlib.contextmanager
def parallel_layout(n_jobs=-1):
    """Within the block (this thread), UMAP fits lay out with :func:`optimize_layout_euclidean`.

    umap-learn's own optimisation is replaced for fits only (its
    ``transform`` keeps its own); :func:`stemfuse_hs._kernels.cache_umap_compilation`
    puts the switch in ``umap.umap_``.

    Parameters
    ----------
    n_jobs : int, optional
        Threads; -1 (the default) or any negative number: numba's thread
        count when the block starts (before UMAP sets its own).

    Examples
    --------
    >>> with parallel_layout(1):
    ...     fits_in_parallel()
    1
    >>> fits_in_parallel() is None
    True
    """
    threads = numba.get_num_threads() if n_jobs < 0 else min(int(n_jobs), numba.config.NUMBA_NUM_THREADS)
    token = _THREADS.set(max(1, threads))
    try:
        yield
    finally:
        _THREADS.reset(token)


def fits_in_parallel():
    """Threads of the parallel layout when inside :func:`parallel_layout`, else None."""
    return _THREADS.get()


def compiled_kernels():
    """The numba functions of the layout (cached on disk once compiled)."""
    return [_step_edges, _epoch, _local_radii]


@numba.njit(inline="always")
def _clip(value):
    if value > 4.0:
        return 4.0
    if value < -4.0:
        return -4.0
    return value


@numba.njit(inline="always")
def _random_int(states, row):
    # umap-learn's tau_rand_int (Tausworthe generator) on row ``row`` of the states, one row per point.
    s0, s1, s2 = states[row, 0], states[row, 1], states[row, 2]
    s0 = (((s0 & 4294967294) << 12) & 0xFFFFFFFF) ^ ((((s0 << 13) & 0xFFFFFFFF) ^ s0) >> 19)
    s1 = (((s1 & 4294967288) << 4) & 0xFFFFFFFF) ^ ((((s1 << 2) & 0xFFFFFFFF) ^ s1) >> 25)
    s2 = (((s2 & 4294967280) << 17) & 0xFFFFFFFF) ^ ((((s2 << 3) & 0xFFFFFFFF) ^ s2) >> 11)
    states[row, 0], states[row, 1], states[row, 2] = s0, s1, s2
    return s0 ^ s1 ^ s2


@numba.njit(fastmath=set(KERNEL_FASTMATH), parallel=True, cache=True)
def _step_edges(
    embedding,
    start_of_epoch,
    head,
    tail,
    block_of,
    edge_starts,
    epochs_per_sample,
    a,
    b,
    rng_states,
    gamma,
    alpha,
    epochs_per_negative_sample,
    epoch_of_next_negative_sample,
    epoch_of_next_sample,
    n,
    densmap_flag,
    inv_phi_sum,
    inv_exp_re,
    weight,
    dens_scale,
    dens_mu,
    deferred,
    step,
    n_steps,
):
    n_vertices, dim = embedding.shape
    for block in numba.prange(edge_starts.shape[0] - 1):
        count = edge_starts[block + 1] - edge_starts[block]
        first = edge_starts[block] + (count * step) // n_steps
        last = edge_starts[block] + (count * (step + 1)) // n_steps
        # The other end of an edge, copied: choosing between two arrays per
        # edge would count references to them in the innermost loop.
        other = np.empty(dim, dtype=embedding.dtype)
        for i in range(first, last):
            j = head[i]
            k = tail[i]
            own = block_of[k] == block
            if epoch_of_next_sample[i] > n:
                if not own:
                    for d in range(dim):
                        deferred[i, d] = 0.0
                continue
            dist_squared = 0.0
            for d in range(dim):
                other[d] = embedding[k, d] if own else start_of_epoch[k, d]
                diff = embedding[j, d] - other[d]
                dist_squared += diff * diff
            # One power where umap-learn computes five: pow(d2, b - 1) is pow(d2, b) / d2.
            power = pow(dist_squared, b) if dist_squared > 0.0 else 0.0
            slope = power / dist_squared if dist_squared > 0.0 else 0.0
            grad_cor_coeff = 0.0
            if densmap_flag:
                phi = 1.0 / (1.0 + a * power)
                dphi_term = a * b * slope * phi
                common = 1.0 - b * (1 - phi)
                drk = phi * inv_phi_sum[k] * (common * inv_exp_re[k] + dphi_term)
                drj = phi * inv_phi_sum[j] * (common * inv_exp_re[j] + dphi_term)
                grad_cor_coeff = dens_scale * (weight[k] * drk + weight[j] * drj) / dens_mu[i]
            grad_coeff = -2.0 * a * b * slope / (a * power + 1.0)
            for d in range(dim):
                diff = embedding[j, d] - other[d]
                grad_d = _clip(grad_coeff * diff)
                if densmap_flag:
                    grad_d += _clip(2 * grad_cor_coeff * diff)
                embedding[j, d] += grad_d * alpha
                if own:
                    embedding[k, d] += -grad_d * alpha
                else:
                    deferred[i, d] = -grad_d * alpha
            epoch_of_next_sample[i] += epochs_per_sample[i]
            n_neg_samples = int((n - epoch_of_next_negative_sample[i]) / epochs_per_negative_sample[i])
            for _ in range(n_neg_samples):
                k = _random_int(rng_states, j) % n_vertices
                own = block_of[k] == block
                dist_squared = 0.0
                for d in range(dim):
                    other[d] = embedding[k, d] if own else start_of_epoch[k, d]
                    diff = embedding[j, d] - other[d]
                    dist_squared += diff * diff
                if dist_squared > 0.0:
                    grad_coeff = 2.0 * gamma * b
                    grad_coeff /= (0.001 + dist_squared) * (a * pow(dist_squared, b) + 1)
                elif j == k:
                    continue
                else:
                    grad_coeff = 0.0
                if grad_coeff > 0.0:
                    for d in range(dim):
                        embedding[j, d] += _clip(grad_coeff * (embedding[j, d] - other[d])) * alpha
            epoch_of_next_negative_sample[i] += n_neg_samples * epochs_per_negative_sample[i]


@numba.njit(fastmath=set(KERNEL_FASTMATH), parallel=True, cache=True)
def _epoch(
    embedding,
    start_of_epoch,
    head,
    tail,
    block_of,
    edge_starts,
    epochs_per_sample,
    a,
    b,
    rng_states,
    gamma,
    alpha,
    epochs_per_negative_sample,
    epoch_of_next_negative_sample,
    epoch_of_next_sample,
    n,
    densmap_flag,
    inv_phi_sum,
    inv_exp_re,
    weight,
    dens_scale,
    dens_mu,
    deferred,
    crossing,
    crossing_starts,
    n_steps,
):
    n_vertices, dim = embedding.shape
    n_blocks = edge_starts.shape[0] - 1
    for step in range(n_steps):
        start_of_epoch[:] = embedding
        _step_edges(
            embedding, start_of_epoch, head, tail, block_of, edge_starts, epochs_per_sample, a, b, rng_states,
            gamma, alpha, epochs_per_negative_sample, epoch_of_next_negative_sample, epoch_of_next_sample, n,
            densmap_flag, inv_phi_sum, inv_exp_re, weight, dens_scale, dens_mu,
            deferred, step, n_steps,
        )
        # The pulls on points of other blocks, point by point in edge order.
        for block in numba.prange(n_blocks):
            for p in range(crossing_starts[step, block], crossing_starts[step, block + 1]):
                i = crossing[p]
                for d in range(dim):
                    embedding[tail[i], d] += deferred[i, d]


@numba.njit(fastmath=set(KERNEL_FASTMATH), parallel=True, cache=True)
def _local_radii(embedding, head, tail, by_head, head_ptr, by_tail, tail_ptr, a, b, re_sum, phi_sum, edge_re, edge_phi):
    # densMAP's per-epoch radii: umap-learn's sums over each point's edges, in a fixed order.
    dim = embedding.shape[1]
    for i in numba.prange(head.shape[0]):
        dist_squared = 0.0
        for d in range(dim):
            diff = embedding[head[i], d] - embedding[tail[i], d]
            dist_squared += diff * diff
        phi = 1.0 / (1.0 + a * pow(dist_squared, b))
        edge_phi[i] = phi
        edge_re[i] = phi * dist_squared
    for v in numba.prange(re_sum.shape[0]):
        re = np.float32(0.0)
        phi = np.float32(0.0)
        for p in range(head_ptr[v], head_ptr[v + 1]):
            re += edge_re[by_head[p]]
            phi += edge_phi[by_head[p]]
        for p in range(tail_ptr[v], tail_ptr[v + 1]):
            re += edge_re[by_tail[p]]
            phi += edge_phi[by_tail[p]]
        phi_sum[v] = phi
        re_sum[v] = np.log(1e-8 + (re / phi))


def layout_blocks(embedding, n_blocks):
    """Split the points into ``n_blocks`` blocks of neighbouring points of the initial layout.

    Recursive bisection at the median of the widest coordinate: neighbours
    in the graph lie close in UMAP's initial (spectral) layout, so most
    edges stay within a block, where the layout moves both ends at once.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` int64, each point's block in ``range(n_blocks)``.

    Examples
    --------
    >>> import numpy as np
    >>> layout_blocks(np.array([[0.0], [5.0], [1.0], [6.0]]), 2).tolist()
    [0, 1, 0, 1]
    """
    points = np.asarray(embedding, dtype=np.float64)
    block_of = np.zeros(points.shape[0], dtype=np.int64)
    parts = [(np.arange(points.shape[0]), 0, n_blocks)]
    while parts:
        members, first, count = parts.pop()
        if count == 1 or members.size <= 1:
            block_of[members] = first
            continue
        coordinates = points[members]
        axis = int(np.argmax(coordinates.max(axis=0) - coordinates.min(axis=0)))
        order = members[np.lexsort((members, coordinates[:, axis]))]
        left = count // 2
        cut = int(round(members.size * left / count))
        parts.append((order[:cut], first, left))
        parts.append((order[cut:], first + left, count - left))
    return block_of


def optimize_layout_euclidean(
    head_embedding,
    tail_embedding,
    head,
    tail,
    n_epochs,
    n_vertices,
    epochs_per_sample,
    a,
    b,
    rng_state,
    gamma=1.0,
    initial_alpha=1.0,
    negative_sample_rate=5.0,
    parallel=False,
    verbose=False,
    densmap=False,
    densmap_kwds=None,
    tqdm_kwds=None,
    move_other=False,
    *,
    n_threads=None,
    n_blocks=LAYOUT_BLOCKS,
    n_steps=LAYOUT_STEPS,
):
    """Optimise a UMAP layout in place, the same on any number of threads.

    A drop-in for ``umap.layouts.optimize_layout_euclidean`` when fitting
    (``head_embedding is tail_embedding`` and ``move_other``); see the
    module notes for what differs. ``parallel`` is ignored: ``n_threads``
    says how many threads run the blocks (numba's setting if None) and
    changes nothing but the time.

    Parameters
    ----------
    head_embedding, tail_embedding : numpy.ndarray
        The same ``(n_vertices, dim)`` float32 array, the initial layout.
    head, tail : numpy.ndarray
        The graph's edges (each undirected edge twice, as umap-learn gives them).
    n_epochs : int
        Epochs.
    epochs_per_sample : numpy.ndarray
        Epochs between two samples of each edge.
    a, b : float
        The low-dimensional similarity's parameters.
    rng_state : numpy.ndarray
        Three int64, umap-learn's seed state.
    densmap : bool, optional
        Add densMAP's density term over the last ``densmap_kwds["frac"]`` of the epochs.
    densmap_kwds : dict, optional
        umap-learn's densMAP data (``lambda``, ``frac``, ``var_shift``, ``mu``, ``mu_sum``, ``R``).
    n_threads : int, optional
        Threads (numba's); the layout does not depend on it.
    n_blocks : int, optional
        Blocks of points (the layout depends on it).

    Returns
    -------
    numpy.ndarray
        ``head_embedding``, optimised.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> layout = rng.normal(size=(6, 2)).astype(np.float32)
    >>> head = np.array([0, 1, 1, 2, 3, 4, 4, 5], np.int32)
    >>> tail = np.array([1, 0, 2, 1, 4, 3, 5, 4], np.int32)
    >>> args = (head, tail, 50, 6, np.ones(8), 1.58, 0.9, np.array([1, 2, 3]))
    >>> one = optimize_layout_euclidean(layout.copy(), None, *args, move_other=True, n_threads=1)
    >>> two = optimize_layout_euclidean(layout.copy(), None, *args, move_other=True, n_threads=2)
    >>> bool(np.array_equal(one, two))
    True
    """
    one_embedding = tail_embedding is None or tail_embedding is head_embedding
    if not one_embedding or not move_other or isinstance(n_epochs, list):
        raise ValueError("optimize_layout_euclidean lays out a fit: one embedding, move_other=True, an int n_epochs.")
    embedding = head_embedding
    n_vertices = embedding.shape[0]
    n_blocks = max(1, min(int(n_blocks), n_vertices))
    block_of = layout_blocks(embedding, n_blocks)
    # Edges by the block of their head, then by head (umap-learn's order within a point).
    order = np.lexsort((np.arange(head.shape[0]), head, block_of[head]))
    head = np.ascontiguousarray(head[order], dtype=np.int64)
    tail = np.ascontiguousarray(tail[order], dtype=np.int64)
    epochs_per_sample = np.ascontiguousarray(epochs_per_sample[order], dtype=np.float64)
    edge_starts = np.searchsorted(block_of[head], np.arange(n_blocks + 1)).astype(np.int64)
    # The step of the epoch each edge is visited in (fixed shares of its block's edges).
    edge_step = np.empty(head.shape[0], dtype=np.int64)
    for block in range(n_blocks):
        count = edge_starts[block + 1] - edge_starts[block]
        bounds = edge_starts[block] + (count * np.arange(n_steps + 1)) // n_steps
        for step in range(n_steps):
            edge_step[bounds[step] : bounds[step + 1]] = step
    crossing = np.flatnonzero(block_of[head] != block_of[tail])
    crossing = crossing[np.lexsort((crossing, tail[crossing], block_of[tail[crossing]], edge_step[crossing]))]
    keys = edge_step[crossing] * n_blocks + block_of[tail[crossing]]
    crossing_starts = np.searchsorted(keys, np.arange(n_steps)[:, None] * n_blocks + np.arange(n_blocks + 1))
    deferred = np.zeros((head.shape[0], embedding.shape[1]), dtype=np.float32)
    start_of_epoch = np.empty_like(embedding)

    epochs_per_negative_sample = epochs_per_sample / negative_sample_rate
    epoch_of_next_negative_sample = epochs_per_negative_sample.copy()
    epoch_of_next_sample = epochs_per_sample.copy()
    rng_states = np.full((n_vertices, len(rng_state)), rng_state, dtype=np.int64) + embedding[:, 0].astype(
        np.float64
    ).view(np.int64).reshape(-1, 1)

    densmap_kwds = densmap_kwds or {}
    densmap = bool(densmap) and densmap_kwds.get("lambda", 0) > 0
    # Per point, set each densMAP epoch: 1 / phi_sum, exp(-re_sum) and the
    # correlation weight, so that an edge reads them instead of computing them.
    inv_phi_sum = np.zeros(n_vertices)
    inv_exp_re = np.zeros(n_vertices)
    weight = np.zeros(n_vertices)
    dens_mu = np.ones(1, dtype=np.float32)
    if densmap:
        dens_mu_tot = np.sum(densmap_kwds["mu_sum"]) / 2
        dens_r = np.asarray(densmap_kwds["R"], dtype=np.float32)
        dens_mu = np.ascontiguousarray(np.asarray(densmap_kwds["mu"])[order], dtype=np.float32)
        phi_sum = np.zeros(n_vertices, dtype=np.float32)
        re_sum = np.zeros(n_vertices, dtype=np.float32)
        by_head = np.argsort(head, kind="stable").astype(np.int64)
        head_ptr = np.searchsorted(head[by_head], np.arange(n_vertices + 1)).astype(np.int64)
        by_tail = np.argsort(tail, kind="stable").astype(np.int64)
        tail_ptr = np.searchsorted(tail[by_tail], np.arange(n_vertices + 1)).astype(np.int64)
        edge_re = np.empty(head.shape[0], dtype=np.float32)
        edge_phi = np.empty(head.shape[0], dtype=np.float32)
    crossing_starts = crossing_starts.astype(np.int64)

    threads_before = numba.get_num_threads()
    numba.set_num_threads(min(numba.config.NUMBA_NUM_THREADS, n_threads or threads_before))
    alpha = initial_alpha
    try:
        from tqdm.auto import tqdm

        tqdm_kwds = dict(tqdm_kwds or {})
        tqdm_kwds.setdefault("disable", not verbose)
        for n in tqdm(range(n_epochs), **tqdm_kwds):
            densmap_flag = densmap and ((n + 1) / float(n_epochs)) > (1 - densmap_kwds["frac"])
            dens_scale = 0.0
            if densmap_flag:
                _local_radii(
                    embedding, head, tail, by_head, head_ptr, by_tail, tail_ptr, float(a), float(b), re_sum, phi_sum,
                    edge_re, edge_phi,
                )
                re_std = np.sqrt(np.var(re_sum) + densmap_kwds["var_shift"])
                re_mean = np.mean(re_sum)
                re_cov = np.dot(re_sum, dens_r) / (n_vertices - 1)
                np.divide(1.0, phi_sum, out=inv_phi_sum)
                np.exp(-re_sum.astype(np.float64), out=inv_exp_re)
                np.subtract(dens_r, re_cov * (re_sum - re_mean) / (re_std * re_std), out=weight)
                dens_scale = float(densmap_kwds["lambda"] * dens_mu_tot / re_std / n_vertices)
            _epoch(
                embedding,
                start_of_epoch,
                head,
                tail,
                block_of,
                edge_starts,
                epochs_per_sample,
                float(a),
                float(b),
                rng_states,
                float(gamma),
                float(alpha),
                epochs_per_negative_sample,
                epoch_of_next_negative_sample,
                epoch_of_next_sample,
                int(n),
                densmap_flag,
                inv_phi_sum,
                inv_exp_re,
                weight,
                dens_scale,
                dens_mu,
                deferred,
                crossing,
                crossing_starts,
                n_steps,
            )
            alpha = initial_alpha * (1.0 - (float(n) / float(n_epochs)))
    finally:
        numba.set_num_threads(threads_before)
    return embedding
