"""Tests of the ``stemfuse`` command (stemfuse_hs.cli and stemfuse_hs.report).

The commands that cluster run in subprocesses (``python -m stemfuse_hs``) on
tiny synthetic scans, as a user would run them; the checks of error
messages, dry runs and the help call ``stemfuse_hs.cli.main`` in this process. The three runs that cluster (each
pays UMAP's numba compilation) start together in the background and are
awaited by the tests that read their results, so they share the cores.
"""

import base64
import contextlib
import hashlib
import inspect
import io
import json
import os
import re
import subprocess
import sys
import warnings

import pytest

from stemfuse_hs import cli
from stemfuse_hs import report as report_module

TIMEOUT = 600
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _command(*args):
    return [sys.executable, "-m", "stemfuse_hs", *map(str, args)]


def _env():
    # Headless, and no user HyperSpy preferences popping up progress bars.
    return dict(os.environ, MPLBACKEND="Agg")


def stemfuse_process(*args, cwd=None):
    """Run ``stemfuse ARGS`` to completion in a process of its own (``python -m stemfuse_hs``)."""
    return subprocess.run(
        _command(*args), capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd, env=_env()
    )


def stemfuse(*args):
    """Run ``stemfuse ARGS`` to completion in this process, through :func:`stemfuse_hs.cli.main`.

    Returns what :func:`subprocess.run` would (exit status, stdout,
    stderr), without paying a Python start-up and the imports for every
    check of an error message, a dry run or the help. What needs a process
    of its own (the console script, the traceback of ``--debug``, the
    clustering runs, SIGTERM) uses :func:`stemfuse_process` or
    :class:`Background`.
    """
    argv = [str(a) for a in args]
    stdout, stderr = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse's usage errors and --help
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return subprocess.CompletedProcess(["stemfuse", *argv], code, stdout.getvalue(), stderr.getvalue())


class Background:
    """A ``stemfuse`` run started now, awaited later."""

    def __init__(self, *args, cwd=None):
        self.args = args
        self.process = subprocess.Popen(
            _command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=_env()
        )
        self._result = None

    def result(self):
        if self._result is None:
            stdout, stderr = self.process.communicate(timeout=TIMEOUT)
            self._result = subprocess.CompletedProcess(self.args, self.process.returncode, stdout, stderr)
        return self._result

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines, "no message on stderr"
    assert lines[-1].startswith("stemfuse: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    # Only stage notes ("stemfuse: ... ...") may come before the error line.
    assert all(line.startswith("stemfuse: ") for line in lines), result.stderr


# --------------------------------------------------------------------------
# Fixtures: input files and the background runs
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory, scan_cache):
    """Tiny four_phases scan saved as .hspy and .zspy, plus a cropped EDS scan."""
    folder = tmp_path_factory.mktemp("inputs")
    scan = scan_cache("four_phases")
    paths = {
        "dp_hspy": folder / "dp.hspy",
        "dp_zspy": folder / "dp.zspy",
        "eds_hspy": folder / "eds.hspy",
        "eds_zspy": folder / "eds.zspy",
        "eds_cropped": folder / "eds_cropped.hspy",
    }
    scan.dp.save(paths["dp_hspy"])
    scan.dp.save(paths["dp_zspy"])
    scan.eds.save(paths["eds_hspy"])
    scan.eds.save(paths["eds_zspy"])
    scan.eds.inav[:, :-4].save(paths["eds_cropped"])
    params = folder / "params.toml"
    params.write_text(
        "[diffraction]\nfraction = 0.3\nbinning = 4\n"
        "[eds]\nexclude_lines = [\"Cu_Ka\", \"Cu_La\"]\n"
        "[clustering]\nrandom_state = 5\nn_neighbors = 12\n",
        encoding="utf-8",
    )
    paths["params"] = params
    paths["folder"] = folder
    paths["truth_shape"] = scan.truth.shape
    return paths


@pytest.fixture(scope="module")
def runs(tmp_path_factory, files):
    """The demo and two runs, started together in the background."""
    out = tmp_path_factory.mktemp("runs")
    overwritten = out / "run_zspy"
    overwritten.mkdir()
    (overwritten / "notes.txt").write_text("not ours", encoding="utf-8")
    (overwritten / report_module.REPORT_FILE).write_text("stale", encoding="utf-8")
    started = {
        "demo": Background("demo", "--size", "tiny", "--out", out / "demo", "--random-state", 0),
        # .hspy diffraction + .zspy EDS; TOML parameters, two overridden on the command line.
        "run_hspy": Background(
            "run", files["dp_hspy"], files["eds_zspy"], "--out", out / "run_hspy",
            "--params", files["params"], "--binning", 2, "--random-state", 0,
        ),
        # .zspy diffraction + .hspy EDS, quiet, into an existing folder with --overwrite.
        "run_zspy": Background(
            "run", files["dp_zspy"], files["eds_hspy"], "--out", overwritten,
            "--overwrite", "--quiet", "--random-state", 0,
        ),
    }
    paths = {name: out / name for name in started}
    yield {"out": paths, "process": started}
    for run in started.values():
        run.stop()


def finished(runs, name):
    result = runs["process"][name].result()
    assert result.returncode == 0, f"{name} failed:\n{result.stderr[-3000:]}"
    return result, runs["out"][name]


def img_payloads(page):
    return re.findall(r'<img[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)


# --------------------------------------------------------------------------
# Whole runs
# --------------------------------------------------------------------------
def test_demo_writes_every_file_and_a_complete_report(runs):
    result, out = finished(runs, "demo")
    names = report_module.OUTPUT_NAMES
    for name in names:
        assert (out / name).exists(), name
    report_path = (out / report_module.REPORT_FILE).resolve()
    assert f"Report: {report_path}" in result.stdout
    ari = re.search(r"Adjusted Rand index vs the ground truth: ([0-9.]+)", result.stdout)
    assert ari and 0 <= float(ari.group(1)) <= 1

    page = report_path.read_text(encoding="utf-8")
    payloads = img_payloads(page)
    assert len(payloads) == len(report_module.FIGURE_FILES)
    for payload in payloads:
        assert base64.b64decode(payload).startswith(PNG_MAGIC)
    for figure in report_module.FIGURE_FILES.values():
        assert (out / figure).read_bytes().startswith(PNG_MAGIC)
        assert figure in page
    for name in cli._BY_SECTION["clustering"]:
        assert f"<td>{name}</td>" in page
    assert "adjusted Rand index" in page and ari.group(1) in page
    assert "between the final clusters (which modality drives the map): diffraction" in page
    for stage in ("clustering", "diffraction features", "EDS features", "fusion"):
        assert f"<td>{stage}</td>" in page
    assert "umap_learn" in page and "hyperspy" in page
    assert "src=\"http" not in page and "<script" not in page  # one self-contained page

    params = json.loads((out / report_module.PARAMS_FILE).read_text())
    assert params["command"] == "demo"
    assert params["demo"] == {"scenario": "four_phases", "size": "tiny", "seed": 0}
    assert params["clustering"]["random_state"] == 0
    run = json.loads((out / report_module.RUN_FILE).read_text())
    assert run["n_clusters"] == len(run["cluster_sizes"])
    assert sum(run["cluster_sizes"]) + run["n_noise"] == 32 * 48
    # The physics merge (the default) is reported merge by merge.
    merge = run["phase_merge"]
    assert merge["n_phases"] == run["n_clusters"] and merge["n_segments"] >= merge["n_phases"]
    assert len(merge["merges"]) == (
        merge["n_segments"] - merge["n_phases"] - len(merge["grown"]) - len(merge["pieces"]) - len(merge["positions_moved"])
        - sum((m["moved_out"] > 0) + (m["moved_in"] > 0) for m in merge["unmixed"]) - len(merge["boundaries"])
        - len(merge["grains"]) - len(merge["grains_by_composition"])
    )
    assert "<h2>Phases from segments</h2>" in page
    # The demo's last pass moves a few positions by their own counts (6 on 2026-12-05), listed in the report.
    assert merge["positions_moved"] and sum(m["positions"] for m in merge["positions_moved"]) < 50
    assert "Positions moved last, by their own X-ray counts" in page
    assert f"{merge['n_segments']} segments of the fused embedding joined into {merge['n_phases']} phases" in page
    assert params["phase_map"] == {
        "method": "physics", "segment_size": None, "minor_cluster_size": 8, "grain_threshold": 5.0,
        "min_grain_log_ratio": 10.0, "min_position_log_ratio": 20.0, "max_unmixed_share": 0.2, "boundary_margin": 2.0,
    }


def test_demo_results_load_with_their_types(runs):
    import hyperspy.api as hs

    _, out = finished(runs, "demo")
    labels = hs.load(out / report_module.LABELS_FILE)
    assert type(labels).__name__ == "ClusterLabels"
    k = labels.n_clusters
    assert k >= 1
    assert labels.memberships.axes_manager.navigation_shape == (k,)
    assert labels.embedding.axes_manager.signal_shape == (3,)
    assert labels.parameters["random_state"] == 0
    expected = {"dp": "Diffraction2D", "eds": "EDSTEMSpectrum"}
    for role, cls in expected.items():
        for name in (report_module.MEAN_FILES[role], report_module.STD_FILES[role]):
            signal = hs.load(out / name)
            assert type(signal).__name__ == cls, name
            assert signal.axes_manager.navigation_shape == (k,)


def _sha256(path):
    return report_module.sha256sum(path)


def test_run_on_hspy_and_zspy_files_with_toml_params_and_overrides(runs, files):
    import hyperspy.api as hs

    result, out = finished(runs, "run_hspy")
    assert "Report: " in result.stdout
    assert "stemfuse: clustering ..." in result.stderr  # stage notes when not --quiet
    params = json.loads((out / report_module.PARAMS_FILE).read_text())
    assert params["inputs"] == {"dp": str(files["dp_hspy"].resolve()), "eds": str(files["eds_zspy"].resolve())}
    # From the TOML file ...
    assert params["diffraction"]["fraction"] == 0.3
    assert params["eds"]["exclude_lines"] == ["Cu_Ka", "Cu_La"]
    assert params["clustering"]["n_neighbors"] == 12
    # ... unless given on the command line.
    assert params["diffraction"]["binning"] == 2
    assert params["clustering"]["random_state"] == 0
    # And what the pipeline actually used, as recorded in the label map.
    labels = hs.load(out / report_module.LABELS_FILE)
    assert labels.parameters["random_state"] == 0
    assert labels.parameters["n_neighbors"] == 12
    blocks = labels.metadata.Clustering.fusion["Blocks"]
    assert blocks["diffraction"]["feature_parameters"]["binning"] == 2
    assert blocks["diffraction"]["feature_parameters"]["fraction"] == 0.3
    assert list(blocks["eds"]["feature_parameters"]["exclude_lines"]) == ["Cu_Ka", "Cu_La"]
    assert labels.axes_manager.signal_shape == (48, 32)

    run = json.loads((out / report_module.RUN_FILE).read_text())
    inputs = {item["role"]: item for item in run["inputs"]}
    with open(files["dp_hspy"], "rb") as f:
        assert inputs["dp"]["sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert inputs["eds"]["sha256"] == _sha256(files["eds_zspy"])
    page = (out / report_module.REPORT_FILE).read_text(encoding="utf-8")
    for item in inputs.values():
        assert item["name"] in page and item["sha256"] in page
    assert len(img_payloads(page)) == len(report_module.FIGURE_FILES)


def test_run_zspy_and_hspy_quiet_overwrite(runs, files):
    result, out = finished(runs, "run_zspy")
    assert result.stdout.strip().splitlines()[-1].startswith("Report: ")
    assert "stemfuse:" not in result.stderr and "%|" not in result.stderr and "Completed" not in result.stderr
    assert (out / "notes.txt").read_text(encoding="utf-8") == "not ours"  # only our files are replaced
    assert (out / report_module.REPORT_FILE).read_text(encoding="utf-8") != "stale"
    run = json.loads((out / report_module.RUN_FILE).read_text())
    assert [item["name"] for item in run["inputs"]] == ["dp.zspy", "eds.hspy"]
    # Same scan, same parameters and seed as the .hspy/.zspy demo: same map.
    _, demo = finished(runs, "demo")
    assert run["cluster_sizes"] == json.loads((demo / report_module.RUN_FILE).read_text())["cluster_sizes"]


def test_report_rebuilds_the_page_from_the_results(runs):
    _, out = finished(runs, "demo")
    page = out / report_module.REPORT_FILE
    before = page.read_text(encoding="utf-8")
    page.unlink()
    (out / report_module.FIGURE_FILES["label_map"]).unlink()
    result = stemfuse("report", out, "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"Report: {page.resolve()}" in result.stdout
    after = page.read_text(encoding="utf-8")
    assert (out / report_module.FIGURE_FILES["label_map"]).exists()
    assert len(img_payloads(after)) == len(report_module.FIGURE_FILES)
    # Same content apart from the time the page was generated.
    strip = lambda text: re.sub(r"report generated [^<]*", "", text)  # noqa: E731
    assert [line for line in strip(after).splitlines() if "base64" not in line] == [
        line for line in strip(before).splitlines() if "base64" not in line
    ]


def _demo_report_with(runs, tmp_path, **phase_merge):
    """The demo's report rewritten from a copy of its run.json with ``phase_merge`` entries replaced; and that run."""
    import shutil

    _, demo = finished(runs, "demo")
    out = shutil.copytree(demo, tmp_path / "demo")
    run = json.loads((out / report_module.RUN_FILE).read_text())
    original = dict(run["phase_merge"])
    run["phase_merge"].update(phase_merge)
    (out / report_module.RUN_FILE).write_text(json.dumps(run))
    return report_module.write_report(out).read_text(encoding="utf-8"), original


def test_report_lists_positions_completed_from_the_finer_map(runs, tmp_path):
    grown = [{"from_phase": 0, "into_phase": 2, "positions": 17, "p_value": 1e-9, "composition_difference": 0.21}]
    page, _ = _demo_report_with(runs, tmp_path, grown=grown)
    assert "Positions moved into a phase that holds most of a small phase of the finer map" in page
    assert re.search(r"<td[^>]*>0</td><td[^>]*>2</td><td[^>]*>17</td>", page)


def test_report_lists_carved_pieces_given_back_to_their_host(runs, tmp_path):
    returned = [{"from_phase": 2, "into_phase": 0, "positions": 9}]
    page, original = _demo_report_with(runs, tmp_path, carved_pieces_returned=returned)
    assert isinstance(original["carved_pieces_returned"], list)
    assert "Pieces of a small phase of the finer map given back to its host" in page
    assert re.search(r"<td[^>]*>2</td><td[^>]*>0</td><td[^>]*>9</td>", page)


def test_report_lists_pieces_moved_by_their_lattice(runs, tmp_path):
    pieces = [{"segment": 5, "from_phase": 1, "into_phase": 0, "positions": 23}]
    page, _ = _demo_report_with(runs, tmp_path, pieces=pieces)
    assert "Connected pieces of segments moved to the phase of their composition" in page
    assert re.search(r"<td[^>]*>5</td><td[^>]*>1</td><td[^>]*>0</td><td[^>]*>23</td>", page)


def test_report_lists_joined_phases_and_the_specks_taken_into_grains(runs, tmp_path):
    rejudged = [{"positions": 49, "lattice": 1, "similarity": 0.98}]
    refitted = [{"centring": "F", "scale_px": 3.5241, "refined_on": 46, "spread": 0.0012},
                {"centring": "hcp", "scale_px": 4.9885, "c_over_a": 1.6227, "refined_on": 0, "spread": None}]
    page, original = _demo_report_with(
        runs, tmp_path, joined_phases=[{"phase": 4, "into_phase": 1}], loose_positions=37, weakly_judged_grains=6,
        weak_grains_rejudged=rejudged, grain_lattices=refitted, loose_positions_joined=52,
    )
    assert original["joined_phases"] == [] and isinstance(original["loose_positions"], int)
    assert isinstance(original["loose_positions_joined"], int)
    assert "52 positions in no grain (grain boundaries, pieces too small to judge) given the phase of the grain" in page
    assert isinstance(original["grain_lattices"], list)
    assert "claim, and the grains judged again: face-centred cubic (scale 3.5241 px; 46 spacings, spread 0.12 %).</p>" in page
    assert isinstance(original["weakly_judged_grains"], int) and isinstance(original["weak_grains_rejudged"], list)
    assert "given the lattice of a neighbouring part of their crystal judged on more" in page
    assert re.search(r"<td[^>]*>49</td><td[^>]*>1</td><td[^>]*>0.98</td>", page)
    assert "Phases joined once their grains of another lattice had moved out" in page
    assert re.search(r"<td[^>]*>4</td><td[^>]*>1</td>", page)
    assert "37 positions left out of every grain" in page
    assert "6 grains judged on a single spot spacing split like undecided ones" in page


def test_report_says_when_the_grains_were_judged_by_lattices_indexed_on_them(runs, tmp_path):
    indexed = [{"centring": "F", "scale_px": 27.76, "refined_on": 0, "spread": None, "indexed_on": "grains"},
               {"centring": "I", "scale_px": 34.91, "refined_on": 0, "spread": None, "indexed_on": "grains"}]
    page, _ = _demo_report_with(runs, tmp_path, grain_lattices=indexed)
    assert ("The grains were judged by lattices indexed again on their own spacings (face-centred cubic and "
            "body-centred cubic)") in page


def test_report_lists_the_particles_judged_whole(runs, tmp_path):
    unmixed = [{"phase": 1, "host": 0, "moved_out": 99, "moved_in": 0, "host_share": 0.77, "own_share": 0.97,
                "halo": 0.64, "particles": 10}]
    page, _ = _demo_report_with(runs, tmp_path, unmixed=unmixed)
    assert "particles: judged whole by a fitted disk" in page
    assert re.search(r"<td[^>]*>99</td><td[^>]*>0</td><td[^>]*>0.77</td><td[^>]*>0.97</td><td[^>]*>0.64</td><td[^>]*>10</td>", page)


def test_report_names_the_scan_lattice_and_the_merges_it_made(runs, tmp_path):
    lattice = {"centring": "F", "n": [3, 4, 8], "lines_px": [6.02, 6.95, 9.83], "max_error": 0.0031}
    merges = [{"segments": "0", "joined": "1", "p_value": 0.5, "composition_difference": 0.0, "lattice_overlap": 0.33,
               "indexed": True}]
    page, original = _demo_report_with(runs, tmp_path, scan_lattice=lattice, second_lattice=None, merges=merges)
    # four_phases: fcc and bcc index as two lattices, not as one.
    assert (original["scan_lattice"]["centring"], original["second_lattice"]["centring"]) == ("F", "I")
    assert "index as one face-centred cubic lattice (6.02 px (N=3), 6.95 px (N=4), 9.83 px (N=8); worst 0.3 %)" in page
    assert re.search(r"<th[^>]*>indexed</th>", page) and re.search(r"<td[^>]*>yes</td>", page)
    bcc = {"centring": "I", "n": [2, 4], "lines_px": [6.17, 8.72], "max_error": 0.002}
    page, _ = _demo_report_with(runs, tmp_path / "two", scan_lattice=lattice, second_lattice=bcc, merges=merges)
    assert "index as two lattices, a face-centred cubic lattice (6.02 px (N=3), 6.95 px (N=4), 9.83 px (N=8); " \
        "worst 0.3 %) and a body-centred cubic lattice (6.17 px (N=2), 8.72 px (N=4); worst 0.2 %)" in page


def test_params_json_is_accepted_by_run_and_demo(runs, files):
    _, demo_out = finished(runs, "demo")
    saved = json.loads((demo_out / report_module.PARAMS_FILE).read_text())
    result = stemfuse("run", files["dp_hspy"], files["eds_hspy"], "--params", demo_out / "params.json",
                      "--dry-run", "--quiet")
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    for section in cli.SECTIONS:
        assert resolved[section] == saved[section]
    result = stemfuse("demo", "--params", demo_out / "params.json", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["demo"] == saved["demo"]

    # A run's params.json names its inputs: no file arguments needed.
    _, run_out = finished(runs, "run_hspy")
    result = stemfuse("run", "--params", run_out / "params.json", "--dry-run", "--quiet", "--fraction", 0.25)
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    assert resolved["inputs"]["dp"] == str(files["dp_hspy"].resolve())
    assert resolved["diffraction"]["fraction"] == 0.25
    assert resolved["clustering"]["n_neighbors"] == 12


# --------------------------------------------------------------------------
# Failures: one line on stderr, non-zero exit, no traceback
# --------------------------------------------------------------------------
def test_missing_file(files, tmp_path):
    result = stemfuse("run", tmp_path / "nothere.hspy", files["eds_hspy"], "--out", tmp_path / "out")
    assert_one_line_error(result, "nothere.hspy", "does not exist")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, content", [("junk.hspy", b"this is not HDF5"), ("junk.abc", b"\x00\x01")])
def test_unreadable_file(files, tmp_path, name, content):
    bad = tmp_path / name
    bad.write_bytes(content)
    result = stemfuse("run", bad, files["eds_hspy"], "--out", tmp_path / "out")
    assert_one_line_error(result, "cannot read DP_FILE", name)
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback(files, tmp_path):
    bad = tmp_path / "junk.hspy"
    bad.write_bytes(b"this is not HDF5")
    result = stemfuse_process("--debug", "run", bad, files["eds_hspy"], "--out", tmp_path / "out")
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_mismatched_scans(files, tmp_path):
    result = stemfuse("run", files["dp_hspy"], files["eds_cropped"], "--out", tmp_path / "out")
    assert_one_line_error(result, "(48, 32)", "(48, 28)")
    assert not (tmp_path / "out").exists()


def test_parameter_out_of_range(files, tmp_path):
    result = stemfuse("run", files["dp_hspy"], files["eds_hspy"], "--out", tmp_path / "out", "--fraction", 2, "-q")
    assert_one_line_error(result, "fraction", "2")
    assert not (tmp_path / "out").exists()  # a failed run leaves no empty folder behind


def test_existing_output_folder_needs_overwrite(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    result = stemfuse("demo", "--size", "tiny", "--out", out)
    assert_one_line_error(result, "taken", "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_usage_errors_are_one_line(tmp_path):
    result = stemfuse("run", "a.hspy", "b.hspy", "--binning", "two")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--binning" in result.stderr
    result = stemfuse("demo", "--size", "huge")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_bad_parameter_files(files, tmp_path):
    typo = tmp_path / "typo.toml"
    typo.write_text("[clustering]\nrandom_sate = 1\n", encoding="utf-8")
    result = stemfuse("demo", "--params", typo, "--dry-run")
    assert_one_line_error(result, "random_sate", "random_state")
    flat = tmp_path / "flat.yaml"
    flat.write_text("fraction: 0.3\n", encoding="utf-8")
    result = stemfuse("demo", "--params", flat, "--dry-run")
    assert_one_line_error(result, "[diffraction]")


# --------------------------------------------------------------------------
# Help, start-up, parameters
# --------------------------------------------------------------------------
def test_help_lists_every_option_with_its_default():
    top = stemfuse("--help")
    assert top.returncode == 0
    for command in ("demo", "run", "report"):
        assert command in top.stdout
    for command in ("run", "demo"):
        text = stemfuse(command, "--help").stdout
        flat = " ".join(text.split())
        for option in cli.OPTIONS:
            assert option.flag in text, option.flag
        assert "--binning N detector binning: sums N x N pixels (default: 2)" in flat
        assert "(default: 0.4)" in flat and "(default: euclidean)" in flat
        assert "--out DIR" in flat and "--params FILE" in flat and "--overwrite" in flat
        # Every option says what happens when it is not given.
        for block in re.split(r"\n  (?=-)", text.split("options:", 1)[1]):
            if block.startswith("-") and not block.startswith("-h"):
                assert "default" in " ".join(block.split()), block
    demo_help = " ".join(stemfuse("demo", "--help").stdout.split())
    assert "(default: 0)" in demo_help.rsplit("--random-state SEED", 1)[1][:200]
    assert "--scheduler ADDRESS" in stemfuse("run", "--help").stdout


def test_help_does_not_import_the_scientific_stack():
    code = (
        "import sys\n"
        "from stemfuse_hs.cli import main\n"
        "try:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('hyperspy', 'pyxem', 'exspy', 'umap', 'hdbscan', 'numpy', 'dask', 'matplotlib') "
        "if m in sys.modules]\n"
        "print('HEAVY:' + ','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "HEAVY:"


def test_option_defaults_follow_the_package():
    import stemfuse_hs
    from stemfuse_hs.clustering import MEAN_MODES, METRICS
    from stemfuse_hs.clustering.phases import LATTICE_LINKAGES
    from stemfuse_hs.data import SCENARIOS
    from stemfuse_hs.features.sdt import STD_SCALES
    from stemfuse_hs.fusion import WEIGHTINGS

    functions = {
        "diffraction": stemfuse_hs.sdt_features,
        "eds": stemfuse_hs.variance_features,
        "fusion": stemfuse_hs.fuse,
        "clustering": stemfuse_hs.FusedSTEMSignal.cluster,
        "statistics": stemfuse_hs.ClusterLabels.cluster_statistics,
        "phases": stemfuse_hs.merge_phases,
    }
    for section, function in functions.items():
        signature = inspect.signature(function)
        keywords = {
            name: p.default
            for name, p in signature.parameters.items()
            if p.default is not inspect.Parameter.empty and name not in ("show_progressbar", "dp", "eds")
        }
        options = {o.name: o.default for o in cli.OPTIONS if o.section == section}
        assert set(options) == set(keywords), section
        for name, default in keywords.items():
            expected = list(default) if isinstance(default, tuple) else default
            got = list(options[name]) if isinstance(options[name], tuple) else options[name]
            assert got == expected, f"{section}.{name}: CLI {got!r}, package {expected!r}"
    choices = {o.dest: set(o.choices) for o in cli.OPTIONS if o.choices}
    assert choices["diffraction.std_scale"] == set(STD_SCALES)
    assert choices["fusion.weighting"] == set(WEIGHTINGS)
    assert choices["clustering.metric"] == set(METRICS)
    assert choices["statistics.mode"] == set(MEAN_MODES)
    assert choices["phases.lattice_linkage"] == set(LATTICE_LINKAGES)
    assert set(cli.DEMO_SCENARIOS) == set(SCENARIOS)
    map_phases = inspect.signature(stemfuse_hs.map_phases).parameters
    assert cli._BY_DEST["phase_map.minor_cluster_size"].default == map_phases["minor_cluster_size"].default
    assert cli._BY_DEST["phase_map.segment_size"].default == map_phases["segment_size"].default
    assert cli._BY_DEST["phase_map.min_position_log_ratio"].default == map_phases["min_position_log_ratio"].default
    assert cli._BY_DEST["phase_map.max_unmixed_share"].default == map_phases["max_unmixed_share"].default
    assert cli._BY_DEST["phase_map.boundary_margin"].default == map_phases["boundary_margin"].default
    assert cli._BY_DEST["phase_map.grain_threshold"].default == map_phases["grain_threshold"].default
    assert cli._BY_DEST["phase_map.min_grain_log_ratio"].default == map_phases["min_grain_log_ratio"].default


def test_parameter_precedence(tmp_path):
    params_file = tmp_path / "p.yaml"
    params_file.write_text(
        "diffraction:\n  fraction: 0.3\n  beam_centre: [16, 15]\n"
        "eds:\n  exclude_windows: [7.9, 8.2]\n  normalize: none\n"
        "clustering:\n  min_cluster_size: 40\n  densmap: false\n",
        encoding="utf-8",
    )
    args = cli.build_parser().parse_args(
        ["run", "a.hspy", "b.hspy", "--params", str(params_file), "--fraction", "0.2",
         "--min-cluster-size", "0.05", "--exclude-window", "1", "2", "--exclude-window", "3", "4"]
    )
    params = cli.resolve_parameters(args, "run")
    assert params["diffraction"]["fraction"] == 0.2
    assert params["diffraction"]["beam_centre"] == [16.0, 15.0]
    assert params["eds"]["exclude_windows"] == [[1.0, 2.0], [3.0, 4.0]]
    assert params["eds"]["normalize"] is None
    assert params["clustering"]["min_cluster_size"] == 0.05
    assert params["clustering"]["densmap"] is False
    assert params["clustering"]["random_state"] is None
    assert params["inputs"] == {"dp": "a.hspy", "eds": "b.hspy"}
    assert cli.default_parameters("demo")["clustering"]["random_state"] == 0


def test_unmixing_is_skipped_by_none_on_the_command_line_or_null_in_a_file(tmp_path):
    params_file = tmp_path / "p.yaml"
    params_file.write_text("phase_map:\n  max_unmixed_share: null\n", encoding="utf-8")
    from_file = cli.resolve_parameters(cli.build_parser().parse_args(["run", "a.hspy", "b.hspy", "--params", str(params_file)]), "run")
    from_flag = cli.resolve_parameters(cli.build_parser().parse_args(["run", "a.hspy", "b.hspy", "--max-unmixed-share", "none"]), "run")
    share = cli.resolve_parameters(cli.build_parser().parse_args(["run", "a.hspy", "b.hspy", "--max-unmixed-share", "0.1"]), "run")
    assert from_file["phase_map"]["max_unmixed_share"] is None and from_flag["phase_map"]["max_unmixed_share"] is None
    assert share["phase_map"]["max_unmixed_share"] == 0.1


def test_sha256_of_files_and_folders(tmp_path):
    data = os.urandom(3 * 1024 + 7)
    path = tmp_path / "a.bin"
    path.write_bytes(data)
    assert report_module.sha256sum(path, block_size=1000) == hashlib.sha256(data).hexdigest()
    folder = tmp_path / "store.zspy"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "0").write_bytes(b"x")
    first = report_module.sha256sum(folder)
    (folder / "sub" / "0").write_bytes(b"y")
    assert report_module.sha256sum(folder) != first
