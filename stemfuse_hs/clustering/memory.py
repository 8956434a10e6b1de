"""Full fit or subsample fit: the memory model of :meth:`FusedSTEMSignal.cluster`.

UMAP embeds every fitted position at once: a full fit computes lazy
features into memory (``n_positions x n_features`` float32) and umap-learn
copies them while it fits. :func:`plan_fit` estimates that working memory
and, for lazy features, chooses by itself a fit on a subsample (every other
position then assigned chunk by chunk, :mod:`.subsample`; the features are
never held whole) when the full fit would not fit the budget.

The default rule (``max_fit_positions=None``)
---------------------------------------------
* Lazy features: every position is fitted when there are at most
  :data:`DEFAULT_MAX_FIT_POSITIONS` (200,000) of them and a full fit's
  working memory, estimated by :func:`full_fit_bytes` (about
  :data:`FULL_FIT_COPIES` times the float32 feature matrix), is within the
  budget: :data:`FIT_MEMORY_BUDGET` (2 GiB), or half the memory available
  when ``cluster`` is called if that is less. Otherwise UMAP and HDBSCAN are
  fitted on the largest subsample whose working memory
  (:func:`subsample_fit_bytes`) fits the budget, at most 200,000 and at
  least :data:`MIN_AUTO_FIT_POSITIONS` (10,000) positions. With the default
  features of a 256 x 256 uint16 detector (6,745 fused features, 27 kB a
  position) a 128 x 128 scan (16,384 positions, 1.37 GiB estimated) is fitted
  whole and a 256 x 256 scan (65,536 positions, 5.47 GiB) on a subsample of
  20,552 positions.
* Features in memory (eager): every position up to 200,000 (the matrix is
  held already; :func:`~stemfuse_hs._arrays.check_memory` refuses what
  would not fit at all).
* An explicit ``max_fit_positions`` wins: a subsample of that many
  positions when the scan has more, a full fit otherwise.
* ``backend="cuml"`` fits every position (the GPU path has no subsample).

The choice is recorded in the label map's parameters
(:meth:`FitPlan.parameters`): ``fit_positions``, ``fit_reason``,
``fit_memory_estimate_bytes`` and ``fit_memory_budget_bytes`` (-1 when no
budget applied), next to ``fit`` (``"full"`` or ``"subsample"``) and
``max_fit_positions``.
"""

from dataclasses import dataclass

from .. import _arrays
from .._arrays import format_bytes
from .._validation import check_int

__all__ = [
    "DEFAULT_MAX_FIT_POSITIONS",
    "FIT_MEMORY_BUDGET",
    "FULL_FIT_COPIES",
    "MIN_AUTO_FIT_POSITIONS",
    "SUBSAMPLE_COPIES",
    "FitPlan",
    "fit_memory_budget",
    "full_fit_bytes",
    "plan_fit",
    "subsample_fit_bytes",
]

#: Most positions fitted at once by default (a 448 x 448 scan fits whole;
#: a 512 x 512 one does not).
DEFAULT_MAX_FIT_POSITIONS = 200_000
#: Working memory (bytes) a fit of lazy features may take by default; half
#: the available memory when that is less. Change it here for a session:
#: ``stemfuse_hs.clustering.memory.FIT_MEMORY_BUDGET = 8 * 2**30``.
FIT_MEMORY_BUDGET = 2 * 2**30
#: Fewest positions an automatic subsample fit uses (below, the map loses
#: small phases); a scan of no more positions is always fitted whole.
MIN_AUTO_FIT_POSITIONS = 10_000
#: Working memory of a full fit in float32 feature matrices: the matrix,
#: umap-learn's copy of it (``X[index]``) and its neighbour search
#: (measured: 256 x 256 scan, 6,745 features, 1.8 GB matrix, UMAP's
#: descent, peak 5.8 GB above the fused signal). With exact neighbours it
#: is less (128 x 128 scan, 0.41 GiB matrix: 1.0 GiB in all at the peak,
#: in the exact search), so this errs on the safe side.
FULL_FIT_COPIES = 3.3
#: The same for the subsample fit: the subsample, its copy in UMAP, UMAP's
#: search index on it; plus two chunks being assigned (:func:`subsample_fit_bytes`).
SUBSAMPLE_COPIES = 3.0
#: Positions assigned at a time on the subsample path
#: (:data:`stemfuse_hs.clustering.subsample.DEFAULT_CHUNK_SIZE`).
CHUNK_POSITIONS = 8_192
#: Bytes per position and neighbour of UMAP's graph and neighbour lists.
GRAPH_BYTES = 64


def full_fit_bytes(n_positions, n_features, n_neighbors=10):
    """Estimated working memory (bytes) of a fit on every position.

    Examples
    --------
    >>> full_fit_bytes(16_384, 6_745) / 2**30  # doctest: +ELLIPSIS
    1.36...
    """
    return int(FULL_FIT_COPIES * n_positions * n_features * 4) + GRAPH_BYTES * n_positions * n_neighbors


def subsample_fit_bytes(n_fit, n_positions, n_features, n_neighbors=10):
    """Estimated working memory (bytes) of a fit on ``n_fit`` positions, every position assigned.

    Examples
    --------
    >>> subsample_fit_bytes(20_000, 65_536, 6_745) / 2**30  # doctest: +ELLIPSIS
    1.95...
    """
    held = SUBSAMPLE_COPIES * n_fit * n_features * 4 + 2 * CHUNK_POSITIONS * n_features * 4
    return int(held) + GRAPH_BYTES * n_positions * n_neighbors


def fit_memory_budget(available=None):
    """The budget of an automatic choice: :data:`FIT_MEMORY_BUDGET`, or half of ``available`` if less.

    ``available`` defaults to :func:`~stemfuse_hs._arrays.available_memory`
    (None when unknown: the budget alone).

    Examples
    --------
    >>> fit_memory_budget(available=64 * 2**30) == FIT_MEMORY_BUDGET
    True
    >>> fit_memory_budget(available=2 * 2**30) / 2**30
    1.0
    """
    available = _arrays.available_memory() if available is None else available
    budget = int(FIT_MEMORY_BUDGET)
    return budget if available is None else min(budget, int(available) // 2)


@dataclass(frozen=True)
class FitPlan:
    """What :func:`plan_fit` decided.

    Attributes
    ----------
    fit : {"full", "subsample"}
    n_fit : int
        Positions UMAP and HDBSCAN are fitted on.
    max_fit_positions : int
        What to pass on to :func:`~.pipeline.cluster_features`: a subsample
        fit exactly when the scan has more positions.
    reason : str
        Why, in words (recorded as ``parameters["fit_reason"]``).
    estimate_bytes : int
        Estimated working memory of the chosen fit.
    budget_bytes : int or None
        The budget the choice was made against (None: none applied).
    """

    fit: str
    n_fit: int
    max_fit_positions: int
    reason: str
    estimate_bytes: int
    budget_bytes: object = None

    def parameters(self):
        """The record for the label map's parameters (``-1``: no budget applied)."""
        return {
            "fit_positions": int(self.n_fit),
            "fit_reason": self.reason,
            "fit_memory_estimate_bytes": int(self.estimate_bytes),
            "fit_memory_budget_bytes": -1 if self.budget_bytes is None else int(self.budget_bytes),
        }


def _subsample_within(budget, n_positions, n_features, n_neighbors):
    """Largest ``n_fit`` whose :func:`subsample_fit_bytes` is within ``budget`` (0 if none)."""
    fixed = subsample_fit_bytes(0, n_positions, n_features, n_neighbors)
    per_position = SUBSAMPLE_COPIES * n_features * 4
    return max(0, int((budget - fixed) // per_position))


def plan_fit(
    n_positions,
    n_features,
    *,
    lazy,
    max_fit_positions=None,
    n_neighbors=10,
    backend="cpu",
    budget=None,
    available=None,
):
    """Decide between a full fit and a subsample fit, and the subsample's size.

    Parameters
    ----------
    n_positions : int
        Positions to cluster (the included ones).
    n_features : int
    lazy : bool
        Whether the features are a dask array (a full fit computes them into
        memory).
    max_fit_positions : int, optional
        The user's: wins over the budget. None (default) applies the rule of
        the module notes.
    n_neighbors : int, default 10
    backend : {"cpu", "cuml"}, default "cpu"
    budget : int, optional
        Working memory allowed, in bytes (default :func:`fit_memory_budget`).
    available : int, optional
        Memory available, in bytes (default: measured), for the default budget.

    Returns
    -------
    FitPlan

    Examples
    --------
    >>> plan_fit(16_384, 6_745, lazy=True, budget=2 * 2**30).fit
    'full'
    >>> plan = plan_fit(65_536, 6_745, lazy=True, budget=2 * 2**30)
    >>> plan.fit, plan.n_fit
    ('subsample', 20552)
    >>> plan_fit(65_536, 6_745, lazy=True, max_fit_positions=100_000, budget=2 * 2**30).fit
    'full'
    """
    n = check_int("n_positions", n_positions, minimum=1)
    f = check_int("n_features", n_features, minimum=1)
    full = full_fit_bytes(n, f, n_neighbors)

    def plan(m, reason, budget_bytes=None, passed=None):
        m = min(m, n)
        estimate = full if m >= n else subsample_fit_bytes(m, n, f, n_neighbors)
        # What cluster_features is given: more than n (or exactly m) keeps the plan.
        passed = (m if m < n else max(n, DEFAULT_MAX_FIT_POSITIONS)) if passed is None else passed
        return FitPlan("full" if m >= n else "subsample", m, passed, reason, estimate, budget_bytes)

    if max_fit_positions is not None:
        m = check_int("max_fit_positions", max_fit_positions, minimum=2)
        if n <= m:
            return plan(n, f"max_fit_positions={m} given: every position fitted", passed=m)
        return plan(m, f"max_fit_positions={m} given: subsample of {m} of {n} positions", passed=m)
    if backend == "cuml":
        return plan(n, "backend='cuml': every position fitted (the GPU path has no subsample)")
    cap = DEFAULT_MAX_FIT_POSITIONS
    if not lazy:
        if n <= cap:
            return plan(n, "automatic: features in memory, every position fitted")
        return plan(cap, f"automatic: more than {cap} positions: subsample of {cap}")
    budget = fit_memory_budget(available) if budget is None else int(budget)
    if n <= cap and full <= budget:
        return plan(
            n,
            f"automatic: a full fit of the {n} x {f} lazy features needs about {format_bytes(full)}, "
            f"within the budget of {format_bytes(budget)}",
            budget,
        )
    m = min(cap, max(MIN_AUTO_FIT_POSITIONS, _subsample_within(budget, n, f, n_neighbors)))
    if m >= n:
        return plan(
            n,
            f"automatic: {n} positions, no more than the smallest automatic subsample "
            f"({MIN_AUTO_FIT_POSITIONS}): every position fitted",
            budget,
        )
    why = (
        f"more than {cap} positions" if n > cap
        else f"a full fit of the {n} x {f} lazy features would need about {format_bytes(full)}, "
        f"more than the budget of {format_bytes(budget)}"
    )
    return plan(m, f"automatic: {why}: subsample of {m} positions", budget)
