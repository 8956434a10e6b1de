"""Run the performance benchmarks and regenerate ``docs/performance.md``.

One command::

    python benchmarks/run.py --large               # everything (about an hour on 2 cores)
    python benchmarks/run.py                       # all but out of core: published size (50 x 150 scan,
                                                   #   256 x 256 detector), subsample, distributed
    python benchmarks/run.py --quick               # "small" size: a few minutes
    python benchmarks/run.py --render-only         # re-render the page from results/latest.json

What runs (each side in its own process, one after the other, so that
neither's memory or compiled code affects the other):

* ``side by side``: the reference notebook's computation
  (``benchmarks/reference_workflow.py``) and stemfuse_hs with its defaults on
  the same synthetic scan (``four_phases``, seed 0, generated once and
  stored as ``.npy`` in a cache folder): wall time, CPU time and peak
  resident memory per stage, and the adjusted Rand index (ARI) against the
  ground truth. Cheap stages are repeated (``--repeat``) and the median is
  reported. The "read once" time of the diffraction array (``data.sum()``
  and ``np.copy``) is measured in the same process.
* ``subsample``: ``fused.cluster(max_fit_positions=n_fit)`` (subsample fit,
  every position assigned; :mod:`stemfuse_hs.clustering.subsample`) against
  the full ``fused.cluster()`` on the same fused features of a 200 x 200
  scan (``--quick``: 100 x 100): speed-up and adjusted Rand index between
  the maps.
* ``distributed``: a lazy scan fused and clustered under a
  ``dask.distributed`` ``LocalCluster`` (2 worker processes) and with the
  threaded scheduler: same features, same labels?
* ``large`` (``--large``): ``benchmarks/out_of_core.py`` on a 256 x 256 scan
  with a 256 x 256 uint16 detector generated lazily and written to
  ``.zspy`` chunk by chunk, then each mode (``--large-modes``) processed in
  a fresh process whose peak resident memory is reported; the files are
  deleted afterwards unless ``--keep-data``. Modes: the defaults with the
  lazy matrix read chunk by chunk by ``embed_and_cluster_subsample``; the
  same with ``fuse(..., max_samples=8192)``; and the public
  ``fused.cluster(max_fit_positions=20000)`` with that fuse. ``--large-add``
  keeps the stored modes not run now, ``--large-resume`` collects a mode
  whose process finished in an interrupted run, ``--large-scan-shape ROWS
  COLS`` with ``--large-note TEXT`` runs a smaller scan and says why on the
  page.

Results are stored per section in ``benchmarks/results/latest.json`` (each
section re-reads the file before writing, so sections can run in separate
commands); the page is rendered from that file, so a section that was not
re-run keeps its earlier numbers, with the date, command and machine they
were measured with.
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _measure import StageRecorder, machine_info, versions, warm_up

RESULTS = HERE / "results" / "latest.json"
PAGE = ROOT / "docs" / "performance.md"
#: Generated scans; one folder per run (deleted at its end unless --keep-data).
DEFAULT_CACHE = Path(os.environ.get("STEMFUSE_BENCH_CACHE", f"/tmp/stemfuse-bench-cache-{os.getpid()}"))
SCENARIO = "four_phases"
SEED = 0
RANDOM_STATE = 0


# ---------------------------------------------------------------------------
# Data: generated once, stored as .npy, loaded by every worker
# ---------------------------------------------------------------------------
def _scan_key(size, scan_shape):
    shape = f"-{scan_shape[0]}x{scan_shape[1]}" if scan_shape else ""
    return f"{SCENARIO}-{size}{shape}-seed{SEED}"


def prepare_data(size, cache, scan_shape=None):
    """Generate the synthetic scan lazily into ``.npy`` files (no full copy in memory)."""
    import dask.array as da
    import numpy as np

    from stemfuse_hs.data import synthetic_scan

    directory = Path(cache) / _scan_key(size, scan_shape)
    if (directory / "done").exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    scan = synthetic_scan(SCENARIO, size=size, seed=SEED, lazy=True, scan_shape=scan_shape)
    start = time.perf_counter()
    targets = []
    for name, data in (("dp", scan.dp.data), ("eds", scan.eds.data)):
        targets.append(np.lib.format.open_memmap(directory / f"{name}.npy", "w+", data.dtype, data.shape))
    da.store([scan.dp.data, scan.eds.data], targets, lock=False)
    for target in targets:
        target.flush()
    del targets
    np.save(directory / "truth.npy", scan.truth)
    np.save(directory / "beam_center.npy", scan.beam_center)
    meta = {"size": size, "scan_shape": list(scan.truth.shape), "seconds": time.perf_counter() - start}
    (directory / "meta.json").write_text(json.dumps(meta))
    (directory / "done").write_text("")
    return directory


def load_scan(directory):
    """The stored scan as eager HyperSpy signals (pyxem Diffraction2D, exspy EDSTEMSpectrum)."""
    import hyperspy.api as hs
    import numpy as np

    from stemfuse_hs.data import synthetic_scan

    meta = json.loads((Path(directory) / "meta.json").read_text())
    template = synthetic_scan(SCENARIO, size=meta["size"], seed=SEED, lazy=True, scan_shape=tuple(meta["scan_shape"]))
    signals = []
    for name, lazy in (("dp", template.dp), ("eds", template.eds)):
        data = np.load(Path(directory) / f"{name}.npy")
        axes = [a.get_axis_dictionary() for a in lazy.axes_manager._axes]
        signal = hs.signals.BaseSignal(data, axes=axes, metadata=lazy.metadata.as_dictionary())
        signal._assign_subclass()
        signals.append(signal)
    truth = np.load(Path(directory) / "truth.npy")
    beam_center = np.load(Path(directory) / "beam_center.npy")
    return signals[0], signals[1], truth, beam_center


def _ari(truth, labels):
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(truth.ravel(), labels.ravel()))


def _repeated_stage(recorder, name, repeat, compute):
    """``compute()`` ``repeat`` times, each timed as stage ``name``; the last result.

    The previous result is let go (and collected) before the next run, so
    that a run's peak memory does not hold the run before it.
    """
    import gc

    result = None
    for i in range(repeat):
        if i:
            result = None
            gc.collect()
        with recorder.stage(name):
            result = compute()
    return result


# ---------------------------------------------------------------------------
# Workers (each runs in its own process)
# ---------------------------------------------------------------------------
def worker_reference(directory, repeat):
    import reference_workflow as ref

    dp, eds, truth, beam_center = load_scan(directory)
    recorder = StageRecorder()
    warm_up()
    centre = ref.binned_beam_centre(beam_center)

    def extract():
        dp_features, dp_float = ref.extract_dp_features(dp, centre)
        eds_features, threshold = ref.extract_eds_features(eds)
        return dp_features, dp_float, eds_features, threshold

    dp_features, dp_float, eds_features, threshold = _repeated_stage(recorder, "feature extraction", repeat, extract)
    scaled = _repeated_stage(recorder, "fusion", repeat, lambda: ref.fuse(dp_features, eds_features))
    with recorder.stage("embedding"):
        reduced = ref.embed(scaled, random_state=RANDOM_STATE)
    with recorder.stage("clustering"):
        labels, memberships = ref.cluster(reduced)
    for i in range(repeat):
        with recorder.stage("cluster means"):
            means = ref.cluster_means(dp_float, eds, memberships, labels)
    return {
        "stages": recorder.as_list(),
        "labels": labels.tolist(),
        "ari": _ari(truth, labels),
        "n_clusters": len(set(labels.tolist())),
        "n_features": [int(dp_features.shape[1]), int(eds_features.shape[1])],
        "beam_centre_binned_xy": list(centre),
        "eds_threshold": threshold,
        "n_membership_exactly_one": means["n_exactly_one"],
        "peak_rss_bytes": recorder.peak_rss(),
        "ru_maxrss_bytes": recorder.ru_maxrss(),
    }


def _layout_epochs(n_positions):
    """Epochs of stemfuse_hs's UMAP layout for a fit of ``n_positions`` (None: umap-learn's default)."""
    import importlib

    rule = getattr(importlib.import_module("stemfuse_hs.clustering.embed"), "layout_epochs", None)
    return None if rule is None else rule(n_positions)


def _layout_used(layout, n_positions):
    """The layout optimisation the fit ran ("auto" resolved by the fit's size), or ``layout`` for older packages."""
    try:
        from stemfuse_hs.clustering.embed import resolve_layout
    except ImportError:  # pragma: no cover - packages before layout="auto"
        return layout
    return resolve_layout(layout, n_positions)


def worker_stemfuse(directory, repeat):
    import hyperspy.api as hs
    import numpy as np

    import stemfuse_hs
    import stemfuse_hs.signals.features as features_module

    hs.preferences.General.show_progressbar = False
    dp, eds, truth, _ = load_scan(directory)
    recorder = StageRecorder()
    warm_up()
    data = dp.data
    read_once = {"sum": [], "copy": []}
    for _ in range(max(repeat, 3)):
        for what in ("sum", "copy"):
            start, cpu = time.perf_counter(), time.process_time()
            out = data.sum(dtype=np.uint64) if what == "sum" else np.copy(data)
            read_once[what].append((time.perf_counter() - start, time.process_time() - cpu))
            del out
    dp_features, eds_features = _repeated_stage(
        recorder,
        "feature extraction",
        repeat,
        lambda: (stemfuse_hs.sdt_features(dp), stemfuse_hs.variance_features(eds)),
    )
    fused = _repeated_stage(recorder, "fusion", repeat, lambda: stemfuse_hs.fuse(dp_features, eds_features))
    # fused.cluster(random_state=0) as is; its parts timed by wrapping the
    # functions it calls.
    parts = {}

    def timed(name, function):
        def wrapper(*args, **kwargs):
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                parts[name] = (time.perf_counter() - start, time.process_time() - cpu)

        return wrapper

    # The functions cluster() calls live in stemfuse_hs.clustering.embed_and_cluster
    # (older versions: imported into stemfuse_hs.signals.features).
    try:
        import stemfuse_hs.clustering.embed_and_cluster as pipeline_module
    except ImportError:  # pragma: no cover - older package layout
        pipeline_module = features_module
    names = ["reduce_dimensions", "embed", "fit_hdbscan", "merge_indistinct", "block_separation"]
    originals = {name: getattr(pipeline_module, name) for name in names if hasattr(pipeline_module, name)}
    for name, function in originals.items():
        setattr(pipeline_module, name, timed(name, function))
    try:
        with recorder.stage("embedding+clustering"):
            labels = fused.cluster(random_state=RANDOM_STATE)
    finally:
        for name, function in originals.items():
            setattr(pipeline_module, name, function)
    total_wall = recorder.stages[-1]["wall_s"]
    total_cpu = recorder.stages[-1]["cpu_s"]
    # The embedding stage: UMAP, and the principal components it is given
    # (a separate call since the package reduces once for the embedding and
    # the merge).
    reduction = parts.get("reduce_dimensions", (0.0, 0.0))
    embedding = (parts["embed"][0] + reduction[0], parts["embed"][1] + reduction[1])
    recorder.split("embedding+clustering", "embedding", *embedding)
    if "reduce_dimensions" in parts:
        recorder.split("embedding+clustering", "embedding: principal components", *reduction)
    recorder.split(
        "embedding+clustering",
        "clustering",
        total_wall - embedding[0],
        total_cpu - embedding[1],
    )
    recorder.split("embedding+clustering", "clustering: HDBSCAN + memberships", *parts["fit_hdbscan"])
    recorder.split("embedding+clustering", "clustering: merging", *parts["merge_indistinct"])
    if "block_separation" in parts:
        recorder.split("embedding+clustering", "clustering: block separation", *parts["block_separation"])
    for i in range(repeat):
        with recorder.stage("cluster means"):
            labels.cluster_statistics(dp)
            labels.cluster_statistics(eds)
    label_array = np.asarray(labels.data).ravel()

    return {
        "stages": recorder.as_list(),
        "labels": label_array.tolist(),
        "ari": _ari(truth, label_array),
        "n_clusters": int(labels.n_clusters),
        "n_features": [int(dp_features.data.shape[-1]), int(eds_features.data.shape[-1])],
        "block_weights": [float(w) for w in fused.metadata.Fusion.weights],
        "cluster_parameters": {
            key: labels.metadata.get_item(f"Clustering.parameters.{key}")
            for key in ("merge_threshold", "min_cluster_size", "cluster_selection_method", "metric", "densmap",
                        "layout", "max_fit_positions", "backend", "fit")
        },
        "read_once": read_once,
        "layout_epochs": _layout_epochs(label_array.size),
        "layout_used": _layout_used(labels.metadata.get_item("Clustering.parameters.layout"), label_array.size),
        "dp_bytes": int(data.nbytes),
        "peak_rss_bytes": recorder.peak_rss(),
        "ru_maxrss_bytes": recorder.ru_maxrss(),
    }


def worker_subsample(directory, n_fits):
    """Full clustering against subsample-and-assign on the same fused features.

    Through ``fused.cluster(max_fit_positions=n_fit)`` when the package has
    that keyword, else :func:`embed_and_cluster_subsample` directly (the
    same code path underneath); the fit/assign split is read from the
    :class:`SubsampleResult` either way.
    """
    import hyperspy.api as hs
    import numpy as np

    import stemfuse_hs
    import stemfuse_hs.clustering.subsample as subsample_module
    import stemfuse_hs.signals.features as features_module

    hs.preferences.General.show_progressbar = False
    dp, eds, truth, _ = load_scan(directory)
    warm_up()
    _warm_up_transform()
    fused = stemfuse_hs.fuse(dp, eds)
    del dp, eds
    n = int(np.prod(fused.data.shape[:-1]))
    matrix = np.asarray(fused.data).reshape(n, -1)
    use_api = "max_fit_positions" in _cluster_keywords()
    api = (
        "fused.cluster(max_fit_positions=n_fit, random_state=0)"
        if use_api
        else "embed_and_cluster_subsample(matrix, n_fit, random_state=0)"
    )
    original = subsample_module.embed_and_cluster_subsample
    captured = {}

    def capturing(*args, **kwargs):
        result = original(*args, **kwargs)
        captured["timings"] = dict(result.timings)
        return result

    recorder = StageRecorder()
    with recorder.stage("full"):
        full = fused.cluster(random_state=RANDOM_STATE)
    full_labels = np.asarray(full.data).ravel()
    runs = []
    for n_fit in n_fits:
        captured.clear()
        if use_api:
            patched = [(subsample_module, "embed_and_cluster_subsample")]
            if hasattr(features_module, "embed_and_cluster_subsample"):
                patched.append((features_module, "embed_and_cluster_subsample"))
            for module, name in patched:
                setattr(module, name, capturing)
            try:
                with recorder.stage(f"subsample {n_fit}"):
                    signal = fused.cluster(max_fit_positions=n_fit, random_state=RANDOM_STATE)
            finally:
                for module, name in patched:
                    setattr(module, name, original)
            labels = np.asarray(signal.data).ravel()
            n_clusters = int(signal.n_clusters)
        else:
            with recorder.stage(f"subsample {n_fit}"):
                result = capturing(matrix, n_fit=n_fit, random_state=RANDOM_STATE)
            labels = result.labels
            n_clusters = int(result.n_clusters)
        timings = captured.get("timings", {})
        runs.append(
            {
                "n_fit": n_fit,
                "stage": recorder.stages[-1],
                "fit": timings.get("fit"),
                "assign": timings.get("assign"),
                "subsample_path_used": bool(timings),
                "ari_truth": _ari(truth, labels),
                "ari_full": _ari(full_labels, labels),
                "n_clusters": n_clusters,
            }
        )
    return {
        "n_positions": n,
        "n_features": int(matrix.shape[1]),
        "api": api,
        "full": {"stage": recorder.stages[0], "ari_truth": _ari(truth, full_labels), "n_clusters": int(full.n_clusters)},
        "subsample": runs,
    }


def _warm_up_transform():
    from _measure import warm_up_subsample

    warm_up_subsample()


def worker_distributed(size):
    """A lazy scan: threaded scheduler against a LocalCluster of 2 worker processes."""
    import hyperspy.api as hs
    import numpy as np
    from distributed import Client, LocalCluster, get_task_stream

    import stemfuse_hs
    from stemfuse_hs.data import SIZES, synthetic_scan

    hs.preferences.General.show_progressbar = False
    warm_up()
    recorder = StageRecorder()
    out = {"size": size}
    runs = {}
    for mode in ("threaded", "distributed"):
        scan = synthetic_scan(SCENARIO, size=size, seed=SEED, lazy=True)
        client = cluster = None
        if mode == "distributed":
            with recorder.stage("start LocalCluster"):
                cluster = LocalCluster(
                    n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
                )
                client = Client(cluster)
        try:
            with recorder.stage(f"{mode}: features+fusion (lazy, computed)"):
                if client is not None:
                    with get_task_stream(client) as stream:
                        fused = stemfuse_hs.fuse(scan.dp, scan.eds)
                        fused.compute()
                    out["n_tasks_on_workers"] = len(stream.data)
                else:
                    fused = stemfuse_hs.fuse(scan.dp, scan.eds)
                    fused.compute()
            with recorder.stage(f"{mode}: embedding+clustering"):
                labels = fused.cluster(random_state=RANDOM_STATE)
        finally:
            if client is not None:
                client.close()
                cluster.close()
        runs[mode] = (np.asarray(fused.data), np.asarray(labels.data), scan.truth)
    (a, la, truth), (b, lb, _) = runs["threaded"], runs["distributed"]
    out.update(
        {
            "features_equal": bool(np.array_equal(a, b)),
            "max_abs_difference": float(np.max(np.abs(a - b))),
            "labels_equal": bool(np.array_equal(la, lb)),
            "ari_truth": _ari(truth, la),
            "scan_shape": list(truth.shape),
            "detector": list(SIZES[size]["detector"]),
            "channels": SIZES[size]["channels"],
            "stages": recorder.as_list(),
        }
    )
    return out


WORKERS = {
    "reference": worker_reference,
    "stemfuse": worker_stemfuse,
}


def _spawn(args, timeout=None):
    """Run ``run.py --worker ...`` in a fresh process; return its JSON result."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result_file = handle.name
    command = [sys.executable, str(Path(__file__).resolve()), "--worker-result", result_file] + args
    print("  $", " ".join(command[1:]), flush=True)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    try:
        subprocess.run(command, check=True, timeout=timeout, env=env, cwd=str(ROOT))
        return json.loads(Path(result_file).read_text())
    finally:
        Path(result_file).unlink(missing_ok=True)


# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------
def _cluster_keywords():
    """Keywords of ``FusedSTEMSignal.cluster`` (which options the measured package had)."""
    import inspect

    from stemfuse_hs.signals.features import FusedSTEMSignal

    return list(inspect.signature(FusedSTEMSignal.cluster).parameters)[1:]


def _stamp(command):
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": command,
        "machine": machine_info(),
        "versions": versions(),
        "cluster_keywords": _cluster_keywords(),
    }


def section_side_by_side(size, cache, repeat, command):
    print(f"[side by side] {size}: preparing data", flush=True)
    directory = prepare_data(size, cache)
    meta = json.loads((directory / "meta.json").read_text())
    out = {"size": size, "scan_shape": meta["scan_shape"], **_stamp(command)}
    for side in ("reference", "stemfuse"):
        print(f"[side by side] {size}: {side}", flush=True)
        out[side] = _spawn(["--worker", side, "--data", str(directory), "--repeat", str(repeat)])
    import numpy as np

    out["ari_between"] = _ari(np.array(out["reference"]["labels"]), np.array(out["stemfuse"]["labels"]))
    for side in ("reference", "stemfuse"):
        out[side].pop("labels")
    import stemfuse_hs.data

    spec = stemfuse_hs.data.SIZES[size]
    out["detector"] = list(spec["detector"])
    out["channels"] = spec["channels"]
    return out


def section_subsample(scan_shape, n_fits, cache, command):
    print(f"[subsample] scan {scan_shape}, n_fit {n_fits}", flush=True)
    directory = prepare_data("small", cache, scan_shape=scan_shape)
    out = {"scan_shape": list(scan_shape), "size": "small", **_stamp(command)}
    out.update(
        _spawn(["--worker", "subsample", "--data", str(directory), "--n-fit"] + [str(n) for n in n_fits])
    )
    return out


def section_distributed(size, command):
    print(f"[distributed] {size}", flush=True)
    out = _stamp(command)
    out.update(_spawn(["--worker", "distributed", "--size", size]))
    return out


MODE_LABELS = {
    "none": "features+fusion only",
    "subsample": "defaults: fuse(dp, eds), subsample fit + chunked assignment",
    "subsample-sample8k": "fuse(dp, eds, max_samples=8192), subsample fit + chunked assignment",
    "cluster": "fuse(dp, eds), fused.cluster(max_fit_positions=20000)",
    "cluster-sample8k": "fuse(dp, eds, max_samples=8192), fused.cluster(max_fit_positions=20000)",
    "full": "fuse(dp, eds), fused.cluster() (every position fitted)",
}
#: Command-line arguments of ``out_of_core.py run`` for each mode.
MODE_ARGS = {
    "none": ["--cluster", "none"],
    "subsample": ["--cluster", "subsample"],
    "subsample-sample8k": ["--cluster", "subsample", "--fuse-max-samples", "8192"],
    "cluster": ["--cluster", "cluster"],
    "cluster-sample8k": ["--cluster", "cluster", "--fuse-max-samples", "8192"],
    "full": ["--cluster", "full"],
}


def section_large(path, keep, command, modes, scan_shape=None, size_note=None, resume=False, add=False):
    """The out-of-core run: write the .zspy files, run each mode in a fresh process, delete.

    ``add``: keep the modes of the stored large section (same scan, same
    seed: the data are generated identically) and add or replace these.
    """
    path = Path(path)
    info_file = path / "info.json"
    out = _stamp(command)
    previous = load_results().get("large") if add else None
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    if info_file.exists():
        info = json.loads(info_file.read_text())
        wanted = list(scan_shape) if scan_shape else None
        if info.get("scan_shape") != wanted:
            print(f"[large] {path} holds another scan shape; rewriting", flush=True)
            shutil.rmtree(path)
    if not info_file.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        usage = shutil.disk_usage(path.parent)
        if usage.free < 20e9:
            raise SystemExit(f"--large: only {usage.free / 1e9:.1f} GB free under {path.parent}")
        print(f"[large] writing {path} (takes minutes)", flush=True)
        shape_args = ["--scan-shape", str(scan_shape[0]), str(scan_shape[1])] if scan_shape else []
        subprocess.run([sys.executable, str(HERE / "out_of_core.py"), "write", str(path)] + shape_args, check=True,
                       env=env)
    out["write"] = json.loads(info_file.read_text())
    if size_note:
        out["size_note"] = size_note
    out["runs"] = {}
    if previous and previous["write"]["dp_shape"] == out["write"]["dp_shape"]:
        for mode, run in previous["runs"].items():
            if mode not in modes:
                run.setdefault("measured", previous["date"])
                run.setdefault("command", previous["command"])
                out["runs"][mode] = run
    try:
        for mode in modes:
            result_file = path.parent / f"{path.name}-{mode}.json"
            if resume and result_file.exists() and result_file.stat().st_mtime > info_file.stat().st_mtime:
                # --large-resume: a mode whose process finished in an interrupted run.
                print(f"[large] {mode}: reusing {result_file} (--large-resume)", flush=True)
                run = json.loads(result_file.read_text())
                run["label"] = MODE_LABELS[mode]
                run["resumed_from"] = datetime.datetime.fromtimestamp(result_file.stat().st_mtime).isoformat(
                    timespec="seconds"
                )
                run["measured"] = run["resumed_from"]
                run["command"] = command
                out["runs"][mode] = run
                result_file.unlink()
                continue
            print(f"[large] run {mode}", flush=True)
            subprocess.run(
                [sys.executable, str(HERE / "out_of_core.py"), "run", str(path)] + MODE_ARGS[mode]
                + ["--json", str(result_file)],
                check=True,
                env=env,
            )
            run = json.loads(result_file.read_text())
            run["label"] = MODE_LABELS[mode]
            run["measured"] = datetime.datetime.now().isoformat(timespec="seconds")
            run["command"] = command
            out["runs"][mode] = run
            result_file.unlink()
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)
            print(f"[large] deleted {path}", flush=True)
    return out


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------
def load_results():
    if RESULTS.exists():
        return json.loads(RESULTS.read_text())
    return {}


def store_result(keys, value):
    """Set ``results[keys[0]][keys[1]]... = value`` in the results file.

    The file is re-read under a lock just before writing, so runs of
    different sections at the same time (e.g. ``--large`` alone in another
    terminal) keep each other's results.
    """
    import fcntl
    import tempfile

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(Path(tempfile.gettempdir()) / "stemfuse-bench-results.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = load_results()
        node = results
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
        temporary = RESULTS.with_suffix(".tmp")
        temporary.write_text(json.dumps(results, indent=1, default=float))
        temporary.replace(RESULTS)


def main(argv=None):
    global RESULTS, PAGE
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=None, help="synthetic sizes side by side (default: published)")
    parser.add_argument("--quick", action="store_true", help='"small" size, fewer repeats, small subsample check')
    parser.add_argument("--repeat", type=int, default=None, help="repeats of the cheap stages (default 3; quick 2)")
    parser.add_argument("--large", action="store_true", help="also the out-of-core 256 x 256 x 256 x 256 run")
    parser.add_argument("--large-path", default="/tmp/stemfuse-bench-large", help="where --large writes its .zspy")
    parser.add_argument("--large-scan-shape", type=int, nargs=2, default=None, metavar=("ROWS", "COLS"),
                        help="scan shape of the out-of-core run (default: 256 256, the target)")
    parser.add_argument("--large-resume", action="store_true",
                        help="reuse the result of a large mode whose process finished in an interrupted run")
    parser.add_argument("--large-add", action="store_true",
                        help="keep the stored large modes not run now (same scan) and add these")
    parser.add_argument("--large-note", default=None,
                        help="why the out-of-core run used another scan shape (printed on the page)")
    parser.add_argument("--large-modes", nargs="+", default=["subsample", "subsample-sample8k", "cluster-sample8k"],
                        choices=sorted(MODE_ARGS), help="modes of the large run (each a fresh process)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["side-by-side", "subsample", "distributed"],
                        help="sections not to run (their earlier results stay on the page)")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="folder for the generated scans")
    parser.add_argument("--keep-data", action="store_true", help="keep generated data (cache, large .zspy)")
    parser.add_argument("--render-only", action="store_true", help="only regenerate the page from the stored results")
    parser.add_argument("--results", default=str(RESULTS), help=argparse.SUPPRESS)
    parser.add_argument("--page", default=str(PAGE), help=argparse.SUPPRESS)
    # Internal: worker processes.
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-result", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--n-fit", type=int, nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        import warnings

        warnings.filterwarnings("ignore")
        if args.worker == "subsample":
            result = worker_subsample(args.data, args.n_fit)
        elif args.worker == "distributed":
            result = worker_distributed(args.size)
        else:
            result = WORKERS[args.worker](args.data, args.repeat)
        Path(args.worker_result).write_text(json.dumps(result, default=float))
        return 0

    from render import render_page

    RESULTS, PAGE = Path(args.results).resolve(), Path(args.page).resolve()
    if not args.render_only:
        command = "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
        sizes = args.sizes or (["small"] if args.quick else ["published"])
        repeat = args.repeat or (2 if args.quick else 3)
        try:
            if "side-by-side" not in args.skip:
                for size in sizes:
                    store_result(["side_by_side", size], section_side_by_side(size, args.cache, repeat, command))
            if "subsample" not in args.skip:
                if args.quick:
                    shape, n_fits = (100, 100), [2_500]
                else:
                    shape, n_fits = (200, 200), [5_000, 10_000]
                key = f"{shape[0]}x{shape[1]}"
                store_result(["subsample", key], section_subsample(shape, n_fits, args.cache, command))
            if "distributed" not in args.skip:
                store_result(["distributed"], section_distributed("small" if not args.quick else "tiny", command))
            if args.large:
                large = section_large(
                    args.large_path,
                    args.keep_data,
                    command,
                    args.large_modes,
                    args.large_scan_shape,
                    args.large_note,
                    args.large_resume,
                    args.large_add,
                )
                store_result(["large"], large)
        finally:
            if not args.keep_data:
                shutil.rmtree(args.cache, ignore_errors=True)
    PAGE.write_text(render_page(load_results()))
    print(f"wrote {PAGE} (from {RESULTS})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
