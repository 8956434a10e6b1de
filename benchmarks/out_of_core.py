"""Out-of-core benchmark: a 256 x 256 scan with a 256 x 256 uint16 detector.

Writes ``synthetic_scan("four_phases", size="large", lazy=True)`` to
``.zspy`` files on disk (8.6 GB of diffraction data before compression;
that takes a while), then, in a fresh process, opens them with
``hs.load(..., lazy=True)`` and runs the pipeline, printing the wall time,
CPU time and peak resident memory (RSS sampled every 10 ms, and the
kernel's ``ru_maxrss``) of every stage::

    python benchmarks/out_of_core.py write /tmp/stemfuse-large
    python benchmarks/out_of_core.py run /tmp/stemfuse-large --json large.json
    python benchmarks/out_of_core.py run /tmp/stemfuse-large --cluster subsample --json large.json
    python benchmarks/out_of_core.py delete /tmp/stemfuse-large

``benchmarks/run.py --large`` does all of this and puts the numbers in the
documentation. Stages of ``run``:

* ``features+fusion``: ``hs.load`` (lazy) then ``stemfuse_hs.fuse(dp, eds)``
  with the defaults (SDT and variance features, adaptive block weights); the
  fused signal is still lazy.
* ``materialise``: the fused features computed into memory
  (65,536 x ~6,700 float32, about 1.8 GB) -- only for ``--cluster full``,
  which is what ``FusedSTEMSignal.cluster`` does first.
* ``embedding``, ``clustering``: ``--cluster full`` is
  ``fused.cluster(random_state=0)`` (UMAP densMAP on all positions);
  ``--cluster subsample`` is
  :func:`stemfuse_hs.clustering.subsample.embed_and_cluster_subsample`, fed
  the lazy fused matrix chunk by chunk (the matrix is never held whole);
  ``--cluster cluster`` is the public path,
  ``fused.cluster(max_fit_positions=n_fit, random_state=0)``: on a lazy
  signal it does the same as ``subsample`` (the subsample is gathered from
  the lazy features, then every position is read chunk by chunk to be
  assigned; the matrix is never held whole) and adds the block
  separation; ``--cluster default`` is ``fused.cluster(random_state=0)``,
  where the package chooses between a full and a subsample fit
  (:mod:`stemfuse_hs.clustering.memory`; the choice is in the result's
  ``"fit"``), and ``--cluster full`` forces every position fitted;
  ``--cluster none`` stops after the fusion.

``--trace`` adds the wall time, resident memory at entry and peak of the
pipeline's main calls (:data:`TRACED`): which stage makes the peak.
A run made alone goes on the page with::

    python benchmarks/out_of_core.py merge result.json --mode default --label "..." --command-line "..."
    python benchmarks/run.py --render-only
"""

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import StageRecorder, machine_info, warm_up, warm_up_subsample

DP_FILE = "dp.zspy"
EDS_FILE = "eds.zspy"
TRUTH_FILE = "truth.npy"
#: Chunks of the diffraction data on disk: 4 x 64 positions, whole patterns (32 MiB).
DP_CHUNKS = (4, 64, 256, 256)
EDS_CHUNKS = (32, 256, 2048)

#: Functions whose calls ``run(..., trace=True)`` times, with the resident
#: memory at entry and its peak during the call (``"calls"`` in the
#: result): where in the pipeline the memory peak is reached.
TRACED = (
    ("stemfuse_hs.clustering.scan", "compute_in_blocks"),
    ("stemfuse_hs.clustering.scan", "nonfinite_positions"),
    ("stemfuse_hs.clustering.embed_and_cluster", "reduce_dimensions"),
    ("stemfuse_hs.clustering.embed_and_cluster", "embed"),
    ("stemfuse_hs.clustering.embed_and_cluster", "fit_hdbscan"),
    ("stemfuse_hs.clustering.embed_and_cluster", "merge_indistinct"),
    ("stemfuse_hs.clustering.embed_and_cluster", "block_separation"),
    ("stemfuse_hs.clustering.embed", "nearest_neighbors"),
    ("stemfuse_hs.clustering.embed", "fit_umap"),
    ("stemfuse_hs.clustering.subsample", "_rows"),
    ("stemfuse_hs.clustering.subsample", "fit_umap"),
    ("stemfuse_hs.clustering.subsample", "merge_indistinct"),
    ("stemfuse_hs.clustering.subsample", "_transform"),
    ("stemfuse_hs.signals.labels", "build_cluster_labels"),
    ("umap.umap_", "nearest_neighbors"),
    ("umap.umap_", "fuzzy_simplicial_set"),
    ("umap.umap_", "simplicial_set_embedding"),
)


class CallTracer:
    """Wall time, resident memory at entry and peak RSS of every call of :data:`TRACED`.

    RSS is sampled every 10 ms by a thread of its own: the peak of a call
    is the largest sample between its entry and its exit (nested calls
    included). ``timeline`` keeps one ``(seconds, rss_bytes)`` sample every
    half second.
    """

    def __init__(self, origin, interval=0.01):
        import psutil

        self.process = psutil.Process()
        self.origin = origin
        self.interval = interval
        self.calls = []
        self.timeline = []
        self._patched = []
        self._open = []

    def _sample(self):
        last = -1.0
        while not self._stop.wait(self.interval):
            rss = self.process.memory_info().rss
            for record in list(self._open):
                record["peak_rss_bytes"] = max(record.get("peak_rss_bytes", 0), rss)
            now = time.perf_counter() - self.origin
            if now - last >= 0.5:
                self.timeline.append((round(now, 2), rss))
                last = now

    def __enter__(self):
        import importlib
        import threading

        lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        for module_name, name in TRACED:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            original = getattr(module, name, None)
            if original is None:
                continue
            self._patched.append((module, name, original))
            setattr(module, name, self._wrap(f"{module_name.rsplit('.', 1)[-1]}.{name}", original, lock))
        return self

    def _wrap(self, label, original, lock):
        import functools

        @functools.wraps(original)
        def traced(*args, **kwargs):
            record = {"name": label, "start_s": time.perf_counter() - self.origin,
                      "start_rss_bytes": self.process.memory_info().rss}
            with lock:
                self._open.append(record)
                self.calls.append(record)
            try:
                return original(*args, **kwargs)
            finally:
                rss = self.process.memory_info().rss
                record["wall_s"] = time.perf_counter() - self.origin - record["start_s"]
                record["end_rss_bytes"] = rss
                with lock:
                    self._open.remove(record)
                record.setdefault("peak_rss_bytes", rss)
                record["peak_rss_bytes"] = max(record["peak_rss_bytes"], rss)

        return traced

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        for module, name, original in self._patched:
            setattr(module, name, original)
        return False


def write(directory, scenario="four_phases", seed=0, size="large", scan_shape=None):
    """Write the lazy synthetic scan to ``directory`` as .zspy files (chunk by chunk, never whole)."""
    import hyperspy.api as hs
    import numpy as np

    from stemfuse_hs.data import synthetic_scan

    hs.preferences.General.show_progressbar = False
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    scan = synthetic_scan(scenario, size=size, seed=seed, lazy=True, scan_shape=scan_shape)
    start = time.perf_counter()
    cpu = time.process_time()
    scan.eds.save(directory / EDS_FILE, chunks=EDS_CHUNKS[: scan.eds.data.ndim], overwrite=True)
    chunks = tuple(min(c, n) for c, n in zip(DP_CHUNKS, scan.dp.data.shape))
    scan.dp.save(directory / DP_FILE, chunks=chunks, overwrite=True)
    np.save(directory / TRUTH_FILE, scan.truth)
    info = {
        "scenario": scenario,
        "seed": seed,
        "size": size,
        "scan_shape": list(scan_shape) if scan_shape else None,
        "dp_shape": list(scan.dp.data.shape),
        "eds_shape": list(scan.eds.data.shape),
        "dp_chunks": list(chunks),
        "dp_bytes_uncompressed": int(np.prod(scan.dp.data.shape)) * 2,
        "bytes_on_disk": disk_usage(directory),
        "write_wall_s": time.perf_counter() - start,
        "write_cpu_s": time.process_time() - cpu,
    }
    (directory / "info.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info, indent=1))
    return info


def _plain(value):
    """A JSON-friendly copy of a metadata value (numpy scalars to Python)."""
    return value.item() if hasattr(value, "item") else value


def disk_usage(directory):
    return sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file())


def run(directory, cluster="subsample", n_fit=20_000, chunk_size=8_192, random_state=0, fuse_max_samples=None,
        trace=False):
    """Load lazily, fuse, cluster; return the per-stage measurements.

    ``trace``: also time the calls of :data:`TRACED` with their peak
    resident memory (``result["calls"]``, ``result["timeline"]``).
    """
    import hyperspy.api as hs
    import numpy as np

    import stemfuse_hs

    hs.preferences.General.show_progressbar = False
    directory = Path(directory)
    recorder = StageRecorder()
    with recorder.stage("import+warm-up"):
        warm_up()
        if cluster in ("subsample", "cluster", "default"):
            warm_up_subsample()
    tracer = CallTracer(time.perf_counter()) if trace else contextlib.nullcontext()
    with tracer:
        result = _run_traced(recorder, directory, cluster, n_fit, chunk_size, random_state, fuse_max_samples)
    if trace:
        result["calls"] = tracer.calls
        result["timeline"] = tracer.timeline
    result["stages"] = recorder.as_list()
    result["peak_rss_bytes"] = recorder.peak_rss()
    result["ru_maxrss_bytes"] = recorder.ru_maxrss()
    result["machine"] = machine_info()
    return result


def _run_traced(recorder, directory, cluster, n_fit, chunk_size, random_state, fuse_max_samples):
    import hyperspy.api as hs
    import numpy as np

    import stemfuse_hs

    truth = np.load(directory / TRUTH_FILE)
    with recorder.stage("features+fusion"):
        dp = hs.load(directory / DP_FILE, lazy=True)
        eds = hs.load(directory / EDS_FILE, lazy=True)
        fuse_kwargs = {} if fuse_max_samples is None else {"max_samples": fuse_max_samples}
        fused = stemfuse_hs.fuse(dp, eds, **fuse_kwargs)
    result = {
        "fuse_kwargs": fuse_kwargs,
        "fusion_weights": [float(w) for w in np.asarray(fused.metadata.Fusion.weights)],
        "directory": str(directory),
        "dp_shape": list(dp.data.shape),
        "dp_chunks": [int(c[0]) for c in dp.data.chunks],
        "n_features": int(fused.data.shape[-1]),
        "cluster": cluster,
        "bytes_on_disk": disk_usage(directory),
    }
    labels = None
    if cluster in ("default", "full", "cluster"):
        # The public path as a user runs it: cluster() on the lazy fused
        # signal. "default": no arguments but the seed (the package decides
        # between a full fit and a subsample fit, parameters["fit"]);
        # "full": every position fitted (max_fit_positions = the scan),
        # the matrix computed into memory block by block; "cluster":
        # max_fit_positions=n_fit (subsample fit, lazy features read chunk
        # by chunk, never held whole).
        import stemfuse_hs.clustering.embed_and_cluster as pipeline_module
        import stemfuse_hs.clustering.subsample as subsample_module

        n_positions = int(np.prod(fused.data.shape[:-1]))
        kwargs = {"random_state": random_state}
        if cluster == "full":
            kwargs["max_fit_positions"] = n_positions
        elif cluster == "cluster":
            kwargs["max_fit_positions"] = n_fit
        timings, captured = {}, {}
        original_embed = pipeline_module.embed
        original_subsample = subsample_module.embed_and_cluster_subsample

        def timed_embed(*args, **kw):
            start = time.perf_counter()
            cpu = time.process_time()
            try:
                return original_embed(*args, **kw)
            finally:
                timings["embedding"] = (time.perf_counter() - start, time.process_time() - cpu)

        def capturing(*args, **kw):
            captured["out"] = original_subsample(*args, **kw)
            return captured["out"]

        pipeline_module.embed = timed_embed
        subsample_module.embed_and_cluster_subsample = capturing
        try:
            with recorder.stage("embedding+clustering"):
                signal = fused.cluster(**kwargs)
        finally:
            pipeline_module.embed = original_embed
            subsample_module.embed_and_cluster_subsample = original_subsample
        if "embedding" in timings:
            recorder.split("embedding+clustering", "embedding", *timings["embedding"])
        labels = np.asarray(signal.data).ravel()
        result["api"] = "fused.cluster(" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")"
        parameters = signal.metadata.Clustering.parameters.as_dictionary() if signal.metadata.has_item(
            "Clustering.parameters") else {}
        result["fit"] = {k: _plain(parameters[k]) for k in ("fit", "max_fit_positions", "fit_positions", "fit_reason",
                                                             "fit_memory_estimate_bytes", "fit_memory_budget_bytes")
                         if k in parameters}
        out = captured.get("out")
        if out is not None:
            result["n_fit"] = int(out.parameters["n_fit"])
    elif cluster == "subsample":
        import stemfuse_hs.clustering.subsample as subsample_module

        # The out-of-core path: the lazy fused matrix is read chunk by
        # chunk (never whole) by embed_and_cluster_subsample.
        with recorder.stage("embedding+clustering"):
            n = int(np.prod(fused.data.shape[:-1]))
            matrix = fused.data.reshape((n, -1))
            out = subsample_module.embed_and_cluster_subsample(
                matrix, n_fit=n_fit, chunk_size=chunk_size, random_state=random_state
            )
        labels = out.labels
        result["api"] = (
            f"embed_and_cluster_subsample(lazy matrix, n_fit={n_fit}, chunk_size={chunk_size}, random_state={random_state})"
        )
        result["n_fit"] = n_fit
    if cluster in ("default", "full", "cluster", "subsample"):
        out = captured.get("out") if cluster != "subsample" else out
        if out is not None and out.timings:
            recorder.split("embedding+clustering", "fit (UMAP+HDBSCAN on subsample)", *out.timings["fit"])
            recorder.split("embedding+clustering", "assign (transform+predict, chunked)", *out.timings["assign"])
            result["chunk_size"] = int(out.parameters.get("chunk_size", chunk_size))
        if out is not None:
            result["merge_threshold"] = float(out.parameters["merge_threshold"])
    if labels is not None:
        from sklearn.metrics import adjusted_rand_score

        result["ari"] = float(adjusted_rand_score(truth.ravel(), labels))
        result["n_clusters"] = int(labels.max()) + 1
        result["labels"] = labels
    return result


def merge(result_file, mode, label, command):
    """Store one ``run --json`` result as ``large.runs[mode]`` of ``results/latest.json``.

    For a run of ``out_of_core.py run`` made alone (not by ``run.py
    --large``) on files written the same way as the stored large section's
    (same generator, seed, shape and chunks); then ``python
    benchmarks/run.py --render-only`` puts it on the page.
    """
    import datetime

    from run import store_result, load_results

    run_result = json.loads(Path(result_file).read_text())
    large = load_results().get("large")
    if large is None or large["write"]["dp_shape"] != run_result["dp_shape"]:
        raise SystemExit(f"{result_file}: not the scan of the stored large section; keep it as its own file")
    run_result["label"] = label
    run_result["command"] = command
    run_result["measured"] = datetime.datetime.fromtimestamp(Path(result_file).stat().st_mtime).isoformat(
        timespec="seconds")
    run_result.pop("timeline", None)
    store_result(["large", "runs", mode], run_result)
    print(f"stored large.runs[{mode!r}]")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    w = commands.add_parser("write", help="write the large synthetic scan as .zspy")
    w.add_argument("directory")
    w.add_argument("--size", default="large")
    w.add_argument("--scan-shape", type=int, nargs=2, default=None, help="rows cols (default: the size's)")
    r = commands.add_parser("run", help="load lazily, fuse, cluster; print the measurements")
    r.add_argument("directory")
    r.add_argument("--cluster", choices=("default", "full", "subsample", "cluster", "none"), default="subsample")
    r.add_argument("--n-fit", type=int, default=20_000)
    r.add_argument("--chunk-size", type=int, default=8_192)
    r.add_argument("--fuse-max-samples", type=int, default=None,
                   help="fuse(..., max_samples=N): positions its block statistics are computed on (default 50000)")
    r.add_argument("--json", help="also write the measurements to this file")
    r.add_argument("--labels", help="also save the label map (flat, int64) to this .npy file")
    r.add_argument("--fit-memory-budget", type=float, default=None, metavar="GIB",
                   help="set stemfuse_hs.clustering.memory.FIT_MEMORY_BUDGET (GiB) for the default call")
    r.add_argument("--trace", action="store_true",
                   help="also time the pipeline's main calls with their peak RSS (where the peak is reached)")
    m = commands.add_parser("merge", help="put a run's --json result into results/latest.json's large section")
    m.add_argument("result")
    m.add_argument("--mode", required=True, help="key of the run in the large section, e.g. default")
    m.add_argument("--label", required=True, help="what the page calls the run")
    m.add_argument("--command-line", required=True, help="the command that measured it (printed on the page)")
    d = commands.add_parser("delete", help="delete the written files")
    d.add_argument("directory")
    args = parser.parse_args(argv)
    if args.command == "write":
        usage = shutil.disk_usage(Path(args.directory).parent if not Path(args.directory).exists() else args.directory)
        if usage.free < 20e9:
            sys.exit(f"only {usage.free / 1e9:.1f} GB free; the large scan needs up to ~9 GB")
        write(args.directory, size=args.size, scan_shape=args.scan_shape)
    elif args.command == "run":
        if args.fit_memory_budget is not None:
            from stemfuse_hs.clustering import memory

            memory.FIT_MEMORY_BUDGET = int(args.fit_memory_budget * 2**30)
        result = run(args.directory, args.cluster, args.n_fit, args.chunk_size,
                     fuse_max_samples=args.fuse_max_samples, trace=args.trace)
        for call in result.get("calls", []):
            print(f"  {call['start_s']:8.1f} s  {call['name']:<40s} wall {call.get('wall_s', float('nan')):8.1f} s  "
                  f"RSS at entry {call['start_rss_bytes'] / 2**30:6.2f} GiB  peak {call['peak_rss_bytes'] / 2**30:6.2f} GiB")
        for stage in result["stages"]:
            print(
                f"{stage['name']:<40s} wall {stage['wall_s']:8.1f} s  cpu {stage['cpu_s']:8.1f} s  "
                f"peak RSS {stage['peak_rss_bytes'] / 2**30:6.2f} GiB"
            )
        print(f"peak RSS (sampled) {result['peak_rss_bytes'] / 2**30:.2f} GiB, "
              f"ru_maxrss {result['ru_maxrss_bytes'] / 2**30:.2f} GiB, ARI {result.get('ari', float('nan')):.3f}")
        labels = result.pop("labels", None)
        if args.fit_memory_budget is not None:
            result["fit_memory_budget_bytes"] = int(args.fit_memory_budget * 2**30)
        if args.labels and labels is not None:
            import numpy as np

            np.save(args.labels, labels)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
    elif args.command == "merge":
        merge(args.result, args.mode, args.label, args.command_line)
    else:
        if Path(args.directory).exists():
            shutil.rmtree(args.directory)
        print(f"deleted {args.directory}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
