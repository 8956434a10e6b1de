"""Robustness, round two: inputs as they come out of microscopes and converters.

Each test pins one case of issue #15 with the exact message or the exact
numbers: non-uniform navigation axes, energy axes in eV or without units,
float16 data, uint32 counts near 4e9, scans of three navigation
dimensions, a beam centre off the detector, titles holding ``$``, TeX or NUL,
and the command's results folder (staging, SIGTERM, ``--overwrite``, safe
parameter files, an escaped report).
"""

import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import dask.array as da
import numpy as np
import pytest

import hyperspy.api as hs
import stemfuse_hs
from stemfuse_hs import cli
from stemfuse_hs import report as report_module
from stemfuse_hs.clustering.means import cluster_statistics

# Small enough for a quick clustering of the tiny scans.
QUICK = dict(random_state=0, n_neighbors=10)


def _non_uniform(signal, axis=0, positions=None):
    """A deep copy of ``signal`` whose navigation axis ``axis`` is a non-uniform ``DataAxis``."""
    out = signal.deepcopy()
    nav = out.axes_manager.navigation_axes[axis]
    nav.convert_to_non_uniform_axis()
    if positions is not None:
        nav.axis = np.asarray(positions, dtype=float)
    return out


# --------------------------------------------------------------------------
# Non-uniform navigation axes
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def non_uniform_run(scan_cache):
    scan = scan_cache("four_phases")
    # Measured positions: a stage that drifts (steps 2.0 nm growing by 0.01 nm each).
    steps = 2.0 + 0.01 * np.arange(scan.dp.axes_manager.navigation_shape[0])
    positions = np.concatenate([[0.0], np.cumsum(steps[:-1])])
    dp, eds = _non_uniform(scan.dp, positions=positions), _non_uniform(scan.eds, positions=positions)
    fused = stemfuse_hs.fuse(dp, eds)
    labels = fused.cluster(**QUICK)
    return dp, eds, positions, fused, labels


def test_non_uniform_navigation_axis_is_copied_as_it_is(non_uniform_run):
    dp, eds, positions, fused, labels = non_uniform_run
    x = fused.axes_manager.navigation_axes[0]
    assert type(x).__name__ == "DataAxis"
    np.testing.assert_array_equal(x.axis, positions)
    assert (x.name, x.units) == ("x", "nm")
    # The label map's image axes are the scan's, positions included.
    np.testing.assert_array_equal(labels.axes_manager.signal_axes[0].axis, positions)
    assert labels.data.shape == (32, 48)
    mean, std = labels.cluster_statistics(eds)
    assert mean.axes_manager.navigation_shape == (labels.n_clusters,)
    assert np.all(np.isfinite(mean.data)) and np.all(np.isfinite(std.data))
    # Nothing of the inputs changed.
    np.testing.assert_array_equal(dp.axes_manager.navigation_axes[0].axis, positions)


def test_non_uniform_axes_that_differ_are_named_in_the_warning(scan_cache):
    scan = scan_cache("four_phases")
    n = scan.dp.axes_manager.navigation_shape[0]
    dp = _non_uniform(scan.dp, positions=np.arange(n) * 2.0)
    eds = _non_uniform(scan.eds, positions=np.arange(n) ** 1.5)
    with pytest.warns(UserWarning) as record:
        stemfuse_hs.fuse(stemfuse_hs.sdt_features(dp), stemfuse_hs.variance_features(eds))
    messages = [str(w.message) for w in record if "navigation axis" in str(w.message)]
    assert messages == [
        "fuse: navigation axis 0 differs between argument 1 (non-uniform, 0 to 94 nm) and argument 2 "
        f"(non-uniform, 0 to {(n - 1) ** 1.5:g} nm); fusing by position index."
    ]


def test_line_profile_with_measured_positions():
    rng = np.random.default_rng(1)
    n = 40
    positions = np.sort(rng.uniform(0, 100, n))
    patterns = rng.poisson(4.0, size=(n, 12, 12)).astype(np.uint16)
    patterns[: n // 2, 2, 9] += 30
    spectra = rng.poisson(3.0, size=(n, 64)).astype(np.uint16)
    spectra[n // 2 :, 20] += 30
    axes = [{"_type": "DataAxis", "axis": positions, "name": "distance", "units": "nm", "navigate": True}]
    dp = hs.signals.Signal2D(patterns, axes=axes + [{"size": 12}, {"size": 12}])
    eds = hs.signals.Signal1D(
        spectra, axes=axes + [{"size": 64, "scale": 0.1, "offset": 0.2, "units": "keV", "name": "Energy"}]
    )
    fused = stemfuse_hs.fuse(dp, eds)
    axis = fused.axes_manager.navigation_axes[0]
    np.testing.assert_array_equal(axis.axis, positions)
    assert fused.data.shape[0] == n


# --------------------------------------------------------------------------
# Energy axes in eV and without units
# --------------------------------------------------------------------------
def _in_ev(signal):
    out = signal.deepcopy()
    axis = out.axes_manager.signal_axes[0]
    axis.scale, axis.offset, axis.units = axis.scale * 1000, axis.offset * 1000, "eV"
    return out


def _uncalibrated(signal):
    out = signal.deepcopy()
    axis = out.axes_manager.signal_axes[0]
    axis.scale, axis.offset, axis.units = 1.0, 0.0, "<undefined>"
    return out


def test_ev_axis_excludes_the_same_channels_as_kev(scan_cache):
    eds = scan_cache("chemistry_only").eds
    kev = stemfuse_hs.variance_features(eds, exclude_lines=["Cu_Ka"])
    ev = stemfuse_hs.variance_features(_in_ev(eds), exclude_lines=["Cu_Ka"])
    excluded = np.flatnonzero(ev.metadata.Features.excluded_channels.data)
    # Cu Ka (8.048 keV) +- one FWHM on the 20 eV channels from 0.68 keV.
    assert excluded.tolist() == list(range(395, 410))
    assert excluded.tolist() == np.flatnonzero(kev.metadata.Features.excluded_channels.data).tolist()
    np.testing.assert_array_equal(ev.data, kev.data)
    axis = ev.axes_manager.signal_axes[0]
    assert axis.units == "eV"
    np.testing.assert_allclose(axis.axis, kev.axes_manager.signal_axes[0].axis * 1000)


def test_ev_axis_exclude_windows_are_in_the_axis_units(scan_cache):
    eds = scan_cache("chemistry_only").eds
    kev = stemfuse_hs.variance_features(eds, exclude_windows=[(7.9, 8.2)])
    ev = stemfuse_hs.variance_features(_in_ev(eds), exclude_windows=[(7900, 8200)])
    np.testing.assert_array_equal(
        ev.metadata.Features.excluded_channels.data, kev.metadata.Features.excluded_channels.data
    )
    assert ev.metadata.Features.parameters.exclude_windows.tolist() == [[7900.0, 8200.0]]


def test_ev_axis_line_features_match_kev(scan_cache):
    eds = scan_cache("chemistry_only").eds
    kev = stemfuse_hs.line_features(eds, lines=["Fe_Ka", "Cu_Ka"])
    ev = stemfuse_hs.line_features(_in_ev(eds), lines=["Fe_Ka", "Cu_Ka"])
    np.testing.assert_array_equal(ev.data, kev.data)


MESSAGE_NO_ENERGY = (
    "{function}: {uses} channel energies, but the signal axis 'Energy' has units None, not one of 'keV' "
    "or 'eV', so no X-ray line can be placed on it. Calibrate the axis (e.g. axis.scale, axis.offset, "
    "axis.units = 0.01, -0.2, 'keV') or leave out the energy-based options."
)


def test_axis_without_units_refuses_exclude_lines(scan_cache):
    eds = _uncalibrated(scan_cache("chemistry_only").eds)
    with pytest.raises(ValueError) as error:
        stemfuse_hs.variance_features(eds, exclude_lines=["Cu_Ka"])
    assert str(error.value) == MESSAGE_NO_ENERGY.format(
        function="variance_features", uses="exclude_lines=['Cu_Ka'] needs"
    )
    with pytest.raises(ValueError) as error:
        stemfuse_hs.line_features(eds, lines=["Cu_Ka"])
    assert str(error.value) == MESSAGE_NO_ENERGY.format(function="line_features", uses="X-ray line windows need")
    # Without energy-based options an index axis is fine.
    assert stemfuse_hs.variance_features(eds).data.shape[:-1] == eds.data.shape[:-1]


# --------------------------------------------------------------------------
# float16 and uint32 near 4e9: cluster statistics
# --------------------------------------------------------------------------
def _truth(data, signal_ndim, weights):
    """Weighted mean and standard deviation in float64, two-pass (numpy)."""
    n = weights.shape[0]
    flat = np.asarray(data, dtype=np.float64).reshape(n, -1)
    means, stds = [], []
    for c in range(weights.shape[1]):
        w = weights[:, c]
        mean = w @ flat / w.sum()
        means.append(mean)
        stds.append(np.sqrt(w @ (flat - mean) ** 2 / w.sum()))
    shape = (weights.shape[1],) + data.shape[data.ndim - signal_ndim :]
    return np.reshape(means, shape), np.reshape(stds, shape)


def _weights(n, k, seed=0):
    rng = np.random.default_rng(seed)
    weights = rng.random((n, k))
    weights[: n // 3, 0] = 0  # a cluster some positions do not weigh in
    return weights


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_uint32_counts_near_4e9_give_exact_statistics(lazy):
    rng = np.random.default_rng(5)
    data = (4.0e9 + rng.normal(0, 10, size=(16, 12, 6, 6))).astype(np.uint32)
    data[8:] -= np.uint32(2_000_000)  # a second phase, two million counts lower
    phase = np.repeat([0, 1], 8 * 12)
    weights = np.zeros((16 * 12, 3))
    # Two clusters of soft memberships, one per phase, and a hard one inside the first.
    weights[:, 0] = np.where(phase == 0, rng.uniform(0.5, 1.0, phase.size), 0.0)
    weights[:, 1] = np.where(phase == 1, rng.uniform(0.5, 1.0, phase.size), 0.0)
    weights[:40, 2] = 1.0
    mean, std = cluster_statistics(da.from_array(data, chunks=(5, 7, 6, 3)) if lazy else data, 2, weights)
    true_mean, true_std = _truth(data, 2, weights)
    assert mean.dtype == std.dtype == np.float32
    np.testing.assert_allclose(mean, true_mean, rtol=1e-7)
    np.testing.assert_allclose(std, true_std, rtol=1e-5)
    # The spread is ~10 counts in every cluster (float64 sums of squares gave 0 to ~60).
    assert 6 < std.min() and std.max() < 15


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_float16_statistics_are_computed(lazy):
    rng = np.random.default_rng(6)
    data = rng.gamma(3.0, 2.0, size=(9, 7, 8, 8)).astype(np.float16)
    weights = _weights(63, 2, seed=1)
    mean, std = cluster_statistics(da.from_array(data, chunks=(4, 7, 8, 8)) if lazy else data, 2, weights)
    true_mean, true_std = _truth(data, 2, weights)
    np.testing.assert_allclose(mean, true_mean, rtol=1e-6)
    np.testing.assert_allclose(std, true_std, rtol=1e-5)


def test_float16_signal_cluster_statistics(non_uniform_run):
    dp, _, _, _, labels = non_uniform_run
    half = dp.deepcopy()
    half.change_dtype("float16")
    mean, std = labels.cluster_statistics(half)
    ref_mean, ref_std = labels.cluster_statistics(dp)
    # The data rounded to float16 (11 significant bits) give the same statistics to that precision.
    np.testing.assert_allclose(mean.data, ref_mean.data, rtol=2e-3, atol=1e-3)
    np.testing.assert_allclose(std.data, ref_std.data, rtol=2e-3, atol=2e-3)


# --------------------------------------------------------------------------
# Three navigation dimensions: refused up front
# --------------------------------------------------------------------------
MESSAGE_ND = (
    "{function}: {which} has 3 navigation dimensions (navigation shape (16, 12, 2)); only line scans (1) "
    "and maps (2) are supported. Process each map separately, e.g. signal.inav[..., 0] for the first "
    "along the extra axes, and fuse and cluster each."
)


def test_three_navigation_dimensions_are_refused_by_fuse_and_cluster():
    rng = np.random.default_rng(2)
    dp = hs.signals.Signal2D(rng.poisson(3.0, size=(2, 12, 16, 8, 8)).astype(np.float32))
    eds = hs.signals.Signal1D(rng.poisson(3.0, size=(2, 12, 16, 40)).astype(np.float32))
    with pytest.raises(ValueError) as error:
        stemfuse_hs.fuse(dp, eds)
    assert str(error.value) == MESSAGE_ND.format(function="fuse", which="argument 1")
    from stemfuse_hs.signals.features import FusedSTEMSignal

    with pytest.raises(ValueError) as error:
        FusedSTEMSignal(np.zeros((2, 12, 16, 5), np.float32)).cluster()
    assert str(error.value) == MESSAGE_ND.format(function="cluster", which="the signal")
    # The way out the message gives works.
    fused = stemfuse_hs.fuse(dp.inav[..., 0], eds.inav[..., 0])
    assert fused.axes_manager.navigation_shape == (16, 12)


# --------------------------------------------------------------------------
# Beam centre off the detector
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "extractor", ["sdt_features", "radial_features", "annular_features", "binary_features"]
)
def test_beam_centre_off_the_detector_is_refused(scan_cache, extractor):
    dp = scan_cache("four_phases").dp
    with pytest.raises(ValueError) as error:
        getattr(stemfuse_hs, extractor)(dp, beam_centre=(-100, -100))
    assert str(error.value) == (
        "beam_centre=(-100, -100) is off the 32 x 32 pixel detector: row must be in [-0.5, 31.5] and "
        "column in [-0.5, 31.5] (unbinned pixels)."
    )


def test_beam_centre_on_the_detector_edge_is_accepted():
    from stemfuse_hs.features.sdt import sdt

    data = np.random.default_rng(0).poisson(5.0, size=(4, 5, 32, 32))
    result = sdt(data, beam_centre=(31.5, -0.5), beam_radius=3)
    assert result.features.shape[:2] == (4, 5)
    with pytest.raises(ValueError, match=r"^beam_centre=\(32, 0\) is off the 32 x 32 pixel detector"):
        sdt(data, beam_centre=(32, 0), beam_radius=3)


# --------------------------------------------------------------------------
# Titles with $, TeX and NUL
# --------------------------------------------------------------------------
TITLE = "Fe$_3$O$_4$ $\\frac$ \x00end"
SHOWN = "Fe\\$_3\\$O\\$_4\\$ \\$\\frac\\$ end"  # every $ escaped, NUL dropped


@pytest.fixture(scope="module")
def titled(scan_cache):
    scan = scan_cache("four_phases")
    dp, eds = scan.dp.deepcopy(), scan.eds.deepcopy()
    dp.metadata.General.title = eds.metadata.General.title = TITLE
    return dp, eds


def test_selection_plots_show_titles_literally(titled):
    from stemfuse_hs.plot import plot_sdt_selection, plot_variance_selection

    dp, eds = titled
    sdt = stemfuse_hs.sdt_features(dp)
    variance = stemfuse_hs.variance_features(eds)
    # A source title recorded by an older version may still hold the NUL.
    sdt.metadata.Features.source_title = variance.metadata.Features.source_title = TITLE
    for fig in (plot_sdt_selection(sdt), plot_variance_selection(variance)):
        fig.savefig(io.BytesIO(), format="png")  # raised mathtext's ParseSyntaxException
    assert plot_sdt_selection(sdt)._suptitle.get_text().startswith(f"SDT selection of {SHOWN}: binning 2")
    assert plot_variance_selection(variance)._suptitle.get_text() == f"Variance selection of {SHOWN}"


def test_results_of_a_titled_scan_save_to_hspy(titled, tmp_path):
    dp, eds = titled
    features = stemfuse_hs.variance_features(eds)
    assert features.metadata.General.title == "Variance features of Fe$_3$O$_4$ $\\frac$ end"
    fused = stemfuse_hs.fuse(stemfuse_hs.sdt_features(dp), features)
    labels = fused.cluster(**QUICK)
    mean, _ = labels.cluster_statistics(eds)
    for name, signal in (("labels", labels), ("mean", mean), ("features", features)):
        signal.save(tmp_path / f"{name}.hspy")  # raised "VLEN strings do not support embedded NULLs"
    loaded = hs.load(tmp_path / "labels.hspy")
    blocks = loaded.metadata.Clustering.fusion.Blocks
    assert blocks.eds.source_title == "Fe$_3$O$_4$ $\\frac$ end"
    assert hs.load(tmp_path / "mean.hspy").metadata.General.title == "Cluster mean of Fe$_3$O$_4$ $\\frac$ end"
    assert dp.metadata.General.title == TITLE  # the input is not modified


def test_cli_results_with_a_backslash_in_the_title_load_again(tmp_path):
    # RosettaSciIO names a .zspy file's group after the title; zarr reads "\\" in it as a path separator.
    signal = hs.signals.Signal1D(np.zeros((2, 5)))
    signal.metadata.General.title = "Cluster mean of Fe$_3$O$_4$ \\frac"
    cli.save_zspy(signal, tmp_path / "mean.zspy")
    assert hs.load(tmp_path / "mean.zspy").metadata.General.title == "Cluster mean of Fe$_3$O$_4$ \u29f5frac"


# --------------------------------------------------------------------------
# The HTML report and the parameter files
# --------------------------------------------------------------------------
HOSTILE = '<script>alert("x")</script> & $_3$'


def test_report_escapes_every_user_string_and_loads_nothing(non_uniform_run, tmp_path):
    _, eds, _, _, labels = non_uniform_run
    out = tmp_path / "results <em>"
    out.mkdir()
    labels.save(out / report_module.LABELS_FILE)
    mean, std = labels.cluster_statistics(eds)
    mean.metadata.General.title = HOSTILE
    mean.axes_manager.signal_axes[0].name = HOSTILE
    mean.save(out / report_module.MEAN_FILES["eds"])
    std.save(out / report_module.STD_FILES["eds"])
    report_module.write_json(out / report_module.PARAMS_FILE, {"eds": {"exclude_lines": [HOSTILE]}})
    report_module.write_json(
        out / report_module.RUN_FILE,
        {
            "inputs": [
                {"role": HOSTILE, "name": HOSTILE, "path": f"/data/{HOSTILE}", "bytes": 1, "sha256": HOSTILE,
                 "signal": HOSTILE, "shape": HOSTILE, "dtype": HOSTILE, "title": HOSTILE}
            ],
            "scheduler": HOSTILE,
            "argv": ["stemfuse", "run", HOSTILE],
            "cwd": HOSTILE,
            "finished": HOSTILE,
            "block_shares": {HOSTILE: 1.0},
        },
    )
    page = report_module.write_report(out).read_text(encoding="utf-8")
    assert "<script" not in page and "<em>" not in page
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; $_3$"
    # file name, path, role, signal, SHA-256, scheduler, command, folder, parameter value...
    assert page.count(escaped) >= 10
    assert "stemfuse phase map: results &lt;em&gt;" in page
    # Nothing from the network: no external reference of any kind.
    assert not re.search(r"(src|href)\s*=\s*[\"'](?!data:|#)", page)
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert "@import" not in text and "url(" not in text and "http" not in text and "//" not in text


def test_report_refuses_a_folder_without_run_json(tmp_path):
    (tmp_path / report_module.LABELS_FILE).mkdir()
    with pytest.raises(FileNotFoundError) as error:
        report_module.write_report(tmp_path)
    assert str(error.value) == (
        f"'{tmp_path}' holds no run.json, which a run writes last: the run that wrote this folder "
        "did not finish (interrupted?). Run it again."
    )


@pytest.mark.parametrize(
    "text",
    [
        "diffraction: !!python/object/apply:os.system ['touch {marker}']\n",
        "!!python/object/new:os.system ['touch {marker}']\n",
    ],
)
def test_yaml_parameter_files_run_no_object_tags(tmp_path, text):
    marker = tmp_path / "executed"
    path = tmp_path / "params.yaml"
    path.write_text(text.format(marker=marker), encoding="utf-8")
    with pytest.raises(cli.CLIError, match=r"^cannot parse parameter file .*could not determine a constructor"):
        cli.load_params_file(path)
    assert not marker.exists()


# --------------------------------------------------------------------------
# The results folder of an interrupted run
# --------------------------------------------------------------------------
def _start_demo(out, *extra):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.Popen(
        [sys.executable, "-m", "stemfuse_hs", "demo", "--size", "tiny", "--out", str(out), "--random-state", "0",
         "--quiet", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def _terminate_once_staging(runs, timeout=120):
    """SIGTERM every process of ``runs`` (``{name: (process, parent folder)}``) once its staging folder holds a file.

    The runs are watched together, each signalled as soon as it is under
    way, so that a run does not finish while another is being stopped.
    Returns ``{name: (returncode, stderr)}``.
    """
    deadline = time.monotonic() + timeout
    waiting = dict(runs)
    while waiting and time.monotonic() < deadline:
        for name, (process, parent) in list(waiting.items()):
            staging = [p for p in parent.iterdir() if p.name.startswith(cli.STAGING_PREFIX)]
            if staging and any(staging[0].iterdir()):
                process.send_signal(signal.SIGTERM)
                del waiting[name]
            else:
                assert process.poll() is None, f"the {name} run ended before it could be interrupted"
        time.sleep(0.02)
    assert not waiting, f"no staging folder for {sorted(waiting)}"
    results = {}
    for name, (process, _) in runs.items():
        _, stderr = process.communicate(timeout=60)
        results[name] = (process.returncode, stderr)
    return results


PREVIOUS_RESULTS = {"notes.txt": "mine", report_module.RUN_FILE: '{"finished": "earlier"}', report_module.REPORT_FILE: "old"}


@pytest.fixture(scope="module")
def terminated_demos(tmp_path_factory):
    """Two demos, started together and each sent SIGTERM mid-run: into a new folder and with --overwrite."""
    new_parent, previous_parent = tmp_path_factory.mktemp("new"), tmp_path_factory.mktemp("previous")
    previous = previous_parent / "previous"
    previous.mkdir()
    for name, text in PREVIOUS_RESULTS.items():
        (previous / name).write_text(text, encoding="utf-8")
    runs = {
        "new": (_start_demo(new_parent / "new"), new_parent),
        "previous": (_start_demo(previous, "--overwrite"), previous_parent),
    }
    stopped = _terminate_once_staging(runs)
    return {name: (*stopped[name], runs[name][1]) for name in runs}


def test_sigterm_leaves_no_results_folder(terminated_demos):
    returncode, stderr, parent = terminated_demos["new"]
    assert returncode == 143 and stderr.strip().splitlines()[-1] == "stemfuse: terminated"
    assert sorted(p.name for p in parent.iterdir()) == []  # neither --out nor the staging folder


def test_sigterm_with_overwrite_leaves_the_previous_results(terminated_demos):
    returncode, _, parent = terminated_demos["previous"]
    assert returncode == 143
    assert {p.name: p.read_text(encoding="utf-8") for p in (parent / "previous").iterdir()} == PREVIOUS_RESULTS
    assert sorted(p.name for p in parent.iterdir()) == ["previous"]


def test_publish_replaces_only_our_files_and_run_json_last(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    (out / report_module.REPORT_FILE).write_text("old", encoding="utf-8")
    (out / report_module.RUN_FILE).write_text("old", encoding="utf-8")
    with pytest.raises(cli.CLIError) as error:
        cli._prepare_output(out, overwrite=False)
    assert str(error.value) == (
        f"output folder '{out}' exists and is not empty; use --overwrite to replace its results or choose "
        "another --out."
    )
    staging = cli._prepare_output(out, overwrite=True)
    assert staging.parent == tmp_path and staging.name.startswith(".stemfuse-partial-out-")
    assert (out / report_module.RUN_FILE).read_text(encoding="utf-8") == "old"  # untouched until published
    (staging / report_module.REPORT_FILE).write_text("new", encoding="utf-8")
    (staging / report_module.RUN_FILE).write_text("new", encoding="utf-8")
    moved = []
    real_replace = os.replace
    monkeypatch.setattr(cli.os, "replace", lambda a, b: (moved.append(os.path.basename(b)), real_replace(a, b)))
    cli._publish(staging, out, overwrite=True)
    assert moved == [report_module.REPORT_FILE, report_module.RUN_FILE]
    assert {p.name: p.read_text(encoding="utf-8") for p in out.iterdir()} == {
        "notes.txt": "mine", report_module.REPORT_FILE: "new", report_module.RUN_FILE: "new",
    }
    assert not staging.exists()
