"""Shared test set-up: quiet HyperSpy, a headless matplotlib, synthetic scans.

The synthetic scans are generated once per session (``scan_cache``) and
shared; tests that might modify a signal take it through ``fresh_scan``,
which hands out deep copies. The default fits of those scans (fused
features, ``cluster(random_state=0)``, each modality alone, ``map_phases``)
are computed once too (``default_fit``): many tests judge the same maps.
"""


import types

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import hyperspy.api as hs  # noqa: E402

hs.preferences.General.show_progressbar = False

SCENARIOS = ("four_phases", "chemistry_only", "structure_only", "precipitates")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: takes more than a minute (still runs by default; deselect with -m 'not slow')"
    )


class _ScanCache:
    """Tiny synthetic scans, generated on first request and then reused.

    The returned :class:`~stemfuse_hs.data.SyntheticScan` objects are shared
    by the whole session: read them, never modify them (use ``fresh_scan``).
    """

    def __init__(self):
        self._scans = {}

    def __call__(self, scenario, lazy=False):
        key = (scenario, bool(lazy))
        if key not in self._scans:
            from stemfuse_hs.data import synthetic_scan

            self._scans[key] = synthetic_scan(scenario, size="tiny", seed=0, lazy=bool(lazy))
        return self._scans[key]


@pytest.fixture(scope="session")
def scan_cache():
    """``scan_cache(scenario, lazy=False)`` -> shared tiny SyntheticScan (read only)."""
    return _ScanCache()


@pytest.fixture
def fresh_scan(scan_cache):
    """``fresh_scan(scenario, lazy=False)`` -> namespace with deep copies of ``dp`` and ``eds``.

    ``truth``, ``beam_center`` and the shared ``scan`` itself are included
    for reference; only ``dp`` and ``eds`` are copies that may be modified.
    """

    def make(scenario, lazy=False):
        scan = scan_cache(scenario, lazy)
        return types.SimpleNamespace(
            dp=scan.dp.deepcopy(),
            eds=scan.eds.deepcopy(),
            truth=scan.truth.copy(),
            beam_center=np.array(scan.beam_center, copy=True),
            scan=scan,
        )

    return make


@pytest.fixture(params=SCENARIOS)
def scenario(request):
    return request.param


class _DefaultFits:
    """The package's default results on the shared tiny scans (seed 0), computed once.

    Every method returns a shared object: read it, never modify it.
    """

    def __init__(self, scans):
        self._scans = scans
        self._results = {}

    def _cached(self, key, compute):
        if key not in self._results:
            self._results[key] = compute()
        return self._results[key]

    def scan(self, scenario):
        return self._scans(scenario)

    def fused(self, scenario):
        """``fuse(dp, eds)`` with the default extractors and weights."""
        import stemfuse_hs

        scan = self.scan(scenario)
        return self._cached(("fused", scenario), lambda: stemfuse_hs.fuse(scan.dp, scan.eds))

    def labels(self, scenario):
        """``fuse(dp, eds).cluster(random_state=0)``."""
        return self._cached(("labels", scenario), lambda: self.fused(scenario).cluster(random_state=0))

    def alone(self, scenario, modality):
        """``sdt_features(dp)`` (modality "diffraction") or ``variance_features(eds)`` ("eds"), clustered alone."""
        import stemfuse_hs

        def compute():
            scan = self.scan(scenario)
            features = {"diffraction": lambda: stemfuse_hs.sdt_features(scan.dp),
                        "eds": lambda: stemfuse_hs.variance_features(scan.eds)}[modality]()
            return features.cluster(random_state=0)

        return self._cached(("alone", scenario, modality), compute)

    def phases(self, scenario):
        """``map_phases(dp, eds, random_state=0)`` on the default fused features."""
        import stemfuse_hs

        scan = self.scan(scenario)
        return self._cached(
            ("phases", scenario),
            lambda: stemfuse_hs.map_phases(scan.dp, scan.eds, random_state=0, fused=self.fused(scenario)),
        )


@pytest.fixture(scope="session")
def default_fit(scan_cache):
    """Shared default results of the tiny seed-0 scans (read only); see ``_DefaultFits``."""
    return _DefaultFits(scan_cache)


@pytest.fixture(scope="session")
def four_phases(scan_cache):
    """Shared eager four_phases scan (read only)."""
    return scan_cache("four_phases")


@pytest.fixture(scope="session")
def four_phases_lazy(scan_cache):
    """Shared lazy four_phases scan (read only)."""
    return scan_cache("four_phases", lazy=True)


# The default fit of the shared four_phases scan, as the clustering tests read it.
@pytest.fixture(scope="module")
def four(default_fit):
    """The shared tiny ``four_phases`` SyntheticScan (seed 0)."""
    return default_fit.scan("four_phases")


@pytest.fixture(scope="module")
def fused(default_fit):
    """``fuse(dp, eds)`` of ``four`` with the default extractors and weights."""
    return default_fit.fused("four_phases")


@pytest.fixture(scope="module")
def labels(default_fit):
    """``fused.cluster(random_state=0)``: the default label map of ``four``."""
    return default_fit.labels("four_phases")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


