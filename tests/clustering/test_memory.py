"""Full fit or subsample fit: the memory model of cluster() (stemfuse_hs.clustering.memory).

The budget is monkeypatched small, so nothing large is allocated.
"""

import numpy as np
import pytest

import stemfuse_hs
from stemfuse_hs import _arrays
from stemfuse_hs.clustering import memory
from stemfuse_hs.clustering.memory import (
    DEFAULT_MAX_FIT_POSITIONS,
    FIT_MEMORY_BUDGET,
    MIN_AUTO_FIT_POSITIONS,
    fit_memory_budget,
    full_fit_bytes,
    plan_fit,
    subsample_fit_bytes,
)

GiB = 2**30
#: Fused features of the default extractors on a 256 x 256 uint16 detector.
F = 6_745


def test_documented_defaults():
    assert FIT_MEMORY_BUDGET == 2 * GiB
    assert MIN_AUTO_FIT_POSITIONS == 10_000
    assert DEFAULT_MAX_FIT_POSITIONS == 200_000


def test_estimates():
    assert full_fit_bytes(1000, 10, n_neighbors=5) == int(memory.FULL_FIT_COPIES * 1000 * 10 * 4) + 64 * 1000 * 5
    assert subsample_fit_bytes(100, 1000, 10, n_neighbors=5) == (
        int(memory.SUBSAMPLE_COPIES * 100 * 10 * 4 + 2 * memory.CHUNK_POSITIONS * 10 * 4) + 64 * 1000 * 5
    )


def test_budget_is_half_the_available_memory_when_that_is_less(monkeypatch):
    assert fit_memory_budget(available=100 * GiB) == 2 * GiB
    assert fit_memory_budget(available=3 * GiB) == 3 * GiB // 2
    monkeypatch.setattr(_arrays, "available_memory", lambda: None)  # unknown: the budget alone
    assert fit_memory_budget() == 2 * GiB
    monkeypatch.setattr(_arrays, "available_memory", lambda: 2 * GiB)
    assert fit_memory_budget() == GiB


def test_lazy_128x128_scan_is_fitted_whole_and_256x256_on_a_subsample():
    plan = plan_fit(128 * 128, F, lazy=True, budget=2 * GiB)
    assert (plan.fit, plan.n_fit, plan.max_fit_positions) == ("full", 16_384, DEFAULT_MAX_FIT_POSITIONS)
    assert plan.estimate_bytes == full_fit_bytes(16_384, F) <= 2 * GiB
    assert plan.reason.startswith("automatic: a full fit of the 16384 x 6745 lazy features needs about ")
    assert plan.reason.endswith("within the budget of 2 GiB")
    plan = plan_fit(256 * 256, F, lazy=True, budget=2 * GiB)
    assert plan.fit == "subsample" and plan.max_fit_positions == plan.n_fit
    # The largest subsample within the budget: one more position is over it.
    assert subsample_fit_bytes(plan.n_fit, 65_536, F) <= 2 * GiB < subsample_fit_bytes(plan.n_fit + 1, 65_536, F)
    assert plan.estimate_bytes == subsample_fit_bytes(plan.n_fit, 65_536, F)
    assert plan.reason == (
        f"automatic: a full fit of the 65536 x 6745 lazy features would need about "
        f"{_arrays.format_bytes(full_fit_bytes(65_536, F))}, more than the budget of 2 GiB: "
        f"subsample of {plan.n_fit} positions"
    )


def test_exact_thresholds():
    # A full fit exactly at the budget is taken; one byte less of budget is not.
    n, f = 50_000, 100
    at = full_fit_bytes(n, f)
    assert plan_fit(n, f, lazy=True, budget=at).fit == "full"
    below = plan_fit(n, f, lazy=True, budget=at - 1)
    assert below.fit == "subsample"
    # The subsample never falls below MIN_AUTO_FIT_POSITIONS ...
    tiny = plan_fit(n, f, lazy=True, budget=1)
    assert (tiny.fit, tiny.n_fit) == ("subsample", MIN_AUTO_FIT_POSITIONS)
    # ... and a scan of no more positions is fitted whole whatever the budget.
    plan = plan_fit(MIN_AUTO_FIT_POSITIONS, f, lazy=True, budget=1)
    assert (plan.fit, plan.n_fit) == ("full", MIN_AUTO_FIT_POSITIONS)
    assert plan.reason == (
        "automatic: 10000 positions, no more than the smallest automatic subsample (10000): every position fitted"
    )
    # Past DEFAULT_MAX_FIT_POSITIONS a subsample of at most that many, whatever the budget.
    plan = plan_fit(DEFAULT_MAX_FIT_POSITIONS + 1, 10, lazy=True, budget=100 * GiB)
    assert (plan.fit, plan.n_fit) == ("subsample", DEFAULT_MAX_FIT_POSITIONS)
    assert plan.reason == "automatic: more than 200000 positions: subsample of 200000 positions"
    assert plan_fit(DEFAULT_MAX_FIT_POSITIONS, 10, lazy=True, budget=100 * GiB).fit == "full"


def test_eager_features_ignore_the_budget():
    plan = plan_fit(65_536, F, lazy=False, budget=1)
    assert (plan.fit, plan.reason) == ("full", "automatic: features in memory, every position fitted")
    plan = plan_fit(DEFAULT_MAX_FIT_POSITIONS + 1, F, lazy=False, budget=1)
    assert (plan.fit, plan.n_fit) == ("subsample", DEFAULT_MAX_FIT_POSITIONS)
    assert plan.reason == "automatic: more than 200000 positions: subsample of 200000"


def test_explicit_max_fit_positions_wins():
    plan = plan_fit(65_536, F, lazy=True, max_fit_positions=100_000, budget=1)
    assert (plan.fit, plan.n_fit, plan.max_fit_positions) == ("full", 65_536, 100_000)
    assert plan.reason == "max_fit_positions=100000 given: every position fitted"
    plan = plan_fit(16_384, F, lazy=True, max_fit_positions=5_000, budget=100 * GiB)
    assert (plan.fit, plan.n_fit, plan.max_fit_positions) == ("subsample", 5_000, 5_000)
    assert plan.reason == "max_fit_positions=5000 given: subsample of 5000 of 16384 positions"
    assert plan_fit(65_536, F, lazy=True, backend="cuml", budget=1).fit == "full"


def test_parameters_record():
    plan = plan_fit(65_536, F, lazy=True, budget=2 * GiB)
    assert plan.parameters() == {
        "fit_positions": plan.n_fit,
        "fit_reason": plan.reason,
        "fit_memory_estimate_bytes": plan.estimate_bytes,
        "fit_memory_budget_bytes": 2 * GiB,
    }
    assert plan_fit(100, 3, lazy=True, max_fit_positions=50).parameters()["fit_memory_budget_bytes"] == -1


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"max_fit_positions": 1}, ValueError, "max_fit_positions"),
        ({"max_fit_positions": 2.5}, TypeError, "max_fit_positions"),
    ],
)
def test_invalid_max_fit_positions(kwargs, error, message):
    with pytest.raises(error, match=message):
        plan_fit(100, 3, lazy=True, **kwargs)


@pytest.fixture(scope="module")
def fused_pair(four_phases, default_fit):
    eager = default_fit.fused("four_phases")
    lazy = stemfuse_hs.fuse(four_phases.dp.as_lazy(), four_phases.eds.as_lazy())
    return eager, lazy


def test_lazy_scan_over_the_budget_takes_the_subsample_path_by_itself(fused_pair, monkeypatch):
    """With a small budget, the default call on lazy features fits a subsample, never holding them whole."""
    import stemfuse_hs.clustering.embed_and_cluster as embed_and_cluster
    import stemfuse_hs.clustering.scan as scan

    eager, lazy = fused_pair
    n = int(np.prod(lazy.data.shape[:-1]))
    f = int(lazy.data.shape[-1])
    n_fit = n // 2
    monkeypatch.setattr(memory, "MIN_AUTO_FIT_POSITIONS", 100)
    # Without the chunk term, which dominates on so small a scan.
    monkeypatch.setattr(memory, "CHUNK_POSITIONS", 0)
    monkeypatch.setattr(memory, "FIT_MEMORY_BUDGET", subsample_fit_bytes(n_fit, n, f))
    # Eager features ignore the budget: a full fit.
    full = eager.cluster(random_state=0)
    assert full.metadata.Clustering.parameters.fit == "full"
    expected = eager.cluster(max_fit_positions=n_fit, random_state=0)

    def refuse(*args, **kwargs):
        raise AssertionError("the lazy feature matrix was computed whole")

    monkeypatch.setattr(embed_and_cluster, "compute_in_blocks", refuse)
    monkeypatch.setattr(scan, "compute_in_blocks", refuse)
    labels = lazy.cluster(random_state=0)
    parameters = labels.metadata.Clustering.parameters
    assert parameters.fit == "subsample"
    assert parameters.fit_positions == n_fit == parameters.max_fit_positions
    assert parameters.fit_reason.startswith(f"automatic: a full fit of the {n} x {f} lazy features would need about ")
    assert parameters.fit_reason.endswith(f"subsample of {n_fit} positions")
    assert parameters.fit_memory_budget_bytes == subsample_fit_bytes(n_fit, n, f)
    assert parameters.fit_memory_estimate_bytes == subsample_fit_bytes(n_fit, n, f)
    np.testing.assert_array_equal(np.asarray(labels.data), np.asarray(expected.data))
    # The user's max_fit_positions wins over the budget (a full fit: computed, here refused).
    with pytest.raises(AssertionError, match="computed whole"):
        lazy.cluster(max_fit_positions=n, random_state=0)


def test_default_call_records_a_full_fit_within_the_budget(fused_pair, default_fit):
    eager, _ = fused_pair
    parameters = default_fit.labels("four_phases").metadata.Clustering.parameters
    n = int(np.prod(eager.data.shape[:-1]))
    assert (parameters.fit, parameters.fit_positions, parameters.max_fit_positions) == ("full", n, 200_000)
    assert parameters.fit_reason == "automatic: features in memory, every position fitted"
    assert parameters.fit_memory_budget_bytes == -1
