"""Render ``docs/performance.rst`` from ``benchmarks/results/latest.json``.

Called by ``benchmarks/run.py`` (also ``--render-only``). Every number on
the page comes from the results file; the prose around them is fixed here.
"""

import math

STAGES = ["feature extraction", "fusion", "embedding", "clustering", "cluster means"]


def _gib(value):
    return f"{value / 2**30:.2f}"


def _s(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "--"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _x(value):
    if value is None or not math.isfinite(value):
        return "--"
    return f"{value:.1f}x" if value < 100 else f"{value:.0f}x"


def _median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])


def _table(header, rows, widths=None, title=None):
    lines = [f".. list-table::{(' ' + title) if title else ''}", "   :header-rows: 1"]
    if widths:
        lines.append(f"   :widths: {' '.join(str(w) for w in widths)}")
    lines.append("")
    for row in [header] + rows:
        first = True
        for cell in row:
            text = str(cell) if str(cell) else " "
            lines.append(f"   {'* -' if first else '  -'} {text}")
            first = False
    lines.append("")
    return "\n".join(lines)


def _stage_map(side):
    """Median per stage name (repeats pooled)."""
    out = {}
    for record in side["stages"]:
        out.setdefault(record["name"], []).append(record)
    summary = {}
    for name, records in out.items():
        summary[name] = {
            "wall_s": _median([r["wall_s"] for r in records]),
            "cpu_s": _median([r["cpu_s"] for r in records]),
            "walls": [r["wall_s"] for r in records],
            "cpus": [r["cpu_s"] for r in records],
            "peak_rss_bytes": max(r["peak_rss_bytes"] for r in records),
            "start_rss_bytes": min(r["start_rss_bytes"] for r in records),
            "repeats": len(records),
        }
    return summary


def side_by_side_numbers(entry):
    """Per-stage medians of both sides and the end-to-end totals."""
    ref = _stage_map(entry["reference"])
    new = _stage_map(entry["stemfuse"])
    rows = {}
    for stage in STAGES:
        rows[stage] = (ref.get(stage), new.get(stage))
    totals = {}
    for side, stages in (("reference", ref), ("stemfuse", new)):
        totals[side] = {
            "wall_s": sum(stages[s]["wall_s"] for s in STAGES if s in stages),
            "cpu_s": sum(stages[s]["cpu_s"] for s in STAGES if s in stages),
            "peak_rss_bytes": max(stages[s]["peak_rss_bytes"] for s in STAGES if s in stages),
        }
    return rows, totals, ref, new


def _repeats_text(stage):
    if stage["repeats"] <= 1:
        return ""
    walls = ", ".join(_s(w) for w in stage["walls"])
    return f" (runs: {walls})"


def render_side_by_side(entry):
    rows, totals, ref, new = side_by_side_numbers(entry)
    scan = entry["scan_shape"]
    det = entry["detector"]
    out = []
    title = (
        f"{entry['size']}: {scan[0]} x {scan[1]} scan, {det[0]} x {det[1]} detector, "
        f"{entry['channels']} channels"
    )
    out.append(title)
    out.append("~" * len(title))
    out.append("")
    out.append(
        f"Measured {entry['date']} with ``{entry['command'].strip()}``. Medians over repeated runs for "
        "feature extraction, fusion and cluster means (each run listed in the notes below the table); "
        "embedding and clustering run once (fixed seed). Speed-up = reference time / stemfuse_hs time; "
        "memory ratio = stemfuse_hs peak / reference peak (process RSS, data included)."
    )
    out.append("")
    table_rows = []
    for stage in STAGES:
        r, n = rows[stage]
        if r is None or n is None:
            continue
        table_rows.append(
            [
                stage,
                f"{_s(r['wall_s'])} / {_s(r['cpu_s'])}",
                f"{_s(n['wall_s'])} / {_s(n['cpu_s'])}",
                f"{_x(r['wall_s'] / n['wall_s'])} / {_x(r['cpu_s'] / n['cpu_s'])}",
                f"{_gib(r['peak_rss_bytes'])} / {_gib(n['peak_rss_bytes'])}",
                f"{n['peak_rss_bytes'] / r['peak_rss_bytes']:.2f}",
            ]
        )
    tr, tn = totals["reference"], totals["stemfuse"]
    table_rows.append(
        [
            "**end to end**",
            f"**{_s(tr['wall_s'])} / {_s(tr['cpu_s'])}**",
            f"**{_s(tn['wall_s'])} / {_s(tn['cpu_s'])}**",
            f"**{_x(tr['wall_s'] / tn['wall_s'])} / {_x(tr['cpu_s'] / tn['cpu_s'])}**",
            f"{_gib(tr['peak_rss_bytes'])} / {_gib(tn['peak_rss_bytes'])}",
            f"{tn['peak_rss_bytes'] / tr['peak_rss_bytes']:.2f}",
        ]
    )
    out.append(
        _table(
            [
                "stage",
                "reference wall / CPU (s)",
                "stemfuse_hs wall / CPU (s)",
                "speed-up wall / CPU",
                "peak RSS ref / stemfuse_hs (GiB)",
                "memory ratio",
            ],
            table_rows,
            widths=[22, 16, 16, 14, 16, 10],
        )
    )
    ari_rows = [
        [
            "adjusted Rand index vs truth",
            f"{entry['reference']['ari']:.3f}",
            f"{entry['stemfuse']['ari']:.3f}",
            f"{entry['stemfuse']['ari'] / entry['reference']['ari']:.2f}" if entry["reference"]["ari"] > 0 else "--",
        ],
        ["clusters found (truth: 4)", entry["reference"]["n_clusters"], entry["stemfuse"]["n_clusters"], ""],
        [
            "features (diffraction + EDS)",
            " + ".join(str(v) for v in entry["reference"]["n_features"]),
            " + ".join(str(v) for v in entry["stemfuse"]["n_features"]),
            "",
        ],
        [
            "process peak RSS, ru_maxrss (GiB)",
            _gib(entry["reference"]["ru_maxrss_bytes"]),
            _gib(entry["stemfuse"]["ru_maxrss_bytes"]),
            f"{entry['stemfuse']['ru_maxrss_bytes'] / entry['reference']['ru_maxrss_bytes']:.2f}",
        ],
    ]
    out.append(_table(["", "reference", "stemfuse_hs", "ratio"], ari_rows, widths=[40, 20, 20, 20]))
    out.append(
        f"Adjusted Rand index between the two label maps: {entry['ari_between']:.3f}. The reference's "
        f"EDS variance threshold on this scan: {entry['reference']['eds_threshold']:.4g} (keeps the notebook's "
        f"fraction of channels); its beam centre on the binned grid: (x, y) = "
        f"{tuple(entry['reference']['beam_centre_binned_xy'])}; positions with a membership of exactly 1 "
        f"(what its cluster means average): {entry['reference']['n_membership_exactly_one']}."
    )
    out.append("")
    notes = []
    for name in ("feature extraction", "fusion", "cluster means"):
        r, n = rows[name]
        if r and n and r["repeats"] > 1:
            notes.append(f"* {name}: reference{_repeats_text(r)}; stemfuse_hs{_repeats_text(n)} s wall.")
    if notes:
        out.append("Individual runs:")
        out.append("")
        out.extend(notes)
        out.append("")

    # Where the time goes.
    parts = [
        ("feature extraction", new.get("feature extraction")),
        ("fusion", new.get("fusion")),
        ("embedding (UMAP densMAP)", new.get("embedding")),
        ("HDBSCAN + soft memberships", new.get("clustering: HDBSCAN + memberships")),
        ("merging indistinct clusters", new.get("clustering: merging")),
        ("cluster means (diffraction + EDS)", new.get("cluster means")),
    ]
    total = tn["wall_s"]
    total_cpu = tn["cpu_s"]
    rows_time = [
        [name, _s(p["wall_s"]), f"{100 * p['wall_s'] / total:.0f} %", _s(p["cpu_s"]), f"{100 * p['cpu_s'] / total_cpu:.0f} %"]
        for name, p in parts
        if p is not None
    ]
    heading = f"Where the time goes in stemfuse_hs ({entry['size']})"
    out.append(heading)
    out.append("^" * len(heading))
    out.append("")
    out.append(_table(["part", "wall (s)", "share of wall", "CPU (s)", "share of CPU"], rows_time, widths=[40, 15, 15, 15, 15]))

    # Read once and the proposed kernels.
    read_once = entry["stemfuse"]["read_once"]
    sum_wall = min(w for w, _ in read_once["sum"])
    copy_wall = min(w for w, _ in read_once["copy"])
    sum_cpu = min(c for _, c in read_once["sum"])
    copy_cpu = min(c for _, c in read_once["copy"])
    features = new["feature extraction"]
    proposed = new.get("feature extraction (proposed kernels)")
    ref_features = ref["feature extraction"]
    heading = f"Feature extraction against reading the data once ({entry['size']})"
    out.append(heading)
    out.append("^" * len(heading))
    out.append("")
    out.append(
        f"The diffraction array holds {entry['stemfuse']['dp_bytes'] / 1e9:.2f} GB (uint16). "
        "\"Read once\" is the fastest of the runs of ``data.sum(dtype=np.uint64)`` (one read, one thread) "
        "and of ``np.copy(data)`` (one read and one write)."
    )
    out.append("")
    rows_read = [
        ["``data.sum()``", _s(sum_wall), _s(sum_cpu), "", ""],
        ["``np.copy(data)``", _s(copy_wall), _s(copy_cpu), "", ""],
        [
            "reference feature extraction",
            _s(ref_features["wall_s"]),
            _s(ref_features["cpu_s"]),
            _x(ref_features["wall_s"] / sum_wall),
            "1.0x",
        ],
        [
            "stemfuse_hs feature extraction (as released)",
            _s(features["wall_s"]),
            _s(features["cpu_s"]),
            _x(features["wall_s"] / sum_wall),
            _x(ref_features["wall_s"] / features["wall_s"]),
        ],
    ]
    if proposed:
        rows_read.append(
            [
                "proposed kernels (``benchmarks/proposed_sdt.py``)",
                _s(proposed["wall_s"]),
                _s(proposed["cpu_s"]),
                _x(proposed["wall_s"] / sum_wall),
                _x(ref_features["wall_s"] / proposed["wall_s"]),
            ]
        )
    out.append(
        _table(
            ["", "wall (s)", "CPU (s)", "wall / read once (sum)", "speed-up vs reference (wall)"],
            rows_read,
            widths=[40, 12, 12, 18, 18],
        )
    )
    check = entry["stemfuse"].get("proposed", {})
    if check and "error" not in check:
        out.append(
            "The proposed kernels select "
            + ("the same" if check["same_selected_pixels"] else "**different**")
            + " diffraction pixels and "
            + ("the same" if check["same_eds_channels"] else "**different**")
            + " EDS channels as the package; largest feature difference "
            f"{check['max_abs_feature_difference']:.3g} (diffraction) and "
            f"{check['max_abs_eds_feature_difference']:.3g} (EDS)."
        )
        out.append("")
    return "\n".join(out)


def render_large(large):
    out = []
    write = large["write"]
    out.append(
        f"Measured {large['date']} with ``{large['command'].strip()}``: "
        f"``synthetic_scan(\"{write['scenario']}\", size=\"{write['size']}\", lazy=True)`` written with "
        f"``dp.save(path, chunks={tuple(write['dp_chunks'])})``: {write['dp_bytes_uncompressed'] / 1e9:.1f} GB "
        f"of uint16 diffraction data, {write['bytes_on_disk'] / 1e9:.2f} GB on disk (zarr, Blosc zstd); writing "
        f"took {_s(write['write_wall_s'])} s ({_s(write['write_cpu_s'])} s CPU). Each run below is a fresh "
        "process: ``hs.load(path, lazy=True)`` for both files, ``stemfuse_hs.fuse(dp, eds)`` (default "
        "features and weights), then the clustering. Peak memory is the process's resident set size "
        "(sampled every 10 ms; ``ru_maxrss`` agrees)."
    )
    out.append("")
    rows = []
    for mode, run in large["runs"].items():
        for stage in run["stages"]:
            if stage["name"] == "import+warm-up":
                continue
            rows.append(
                [
                    f"``--cluster {mode}``",
                    stage["name"],
                    _s(stage["wall_s"]),
                    _s(stage["cpu_s"]),
                    _gib(stage["peak_rss_bytes"]) if not stage.get("part_of") else "(as above)",
                ]
            )
        rows.append(
            [
                f"``--cluster {mode}``",
                "**whole process**",
                "",
                "",
                f"**{_gib(max(run['peak_rss_bytes'], run['ru_maxrss_bytes']))}**",
            ]
        )
    out.append(_table(["run", "stage", "wall (s)", "CPU (s)", "peak RSS (GiB)"], rows, widths=[18, 40, 12, 12, 14]))
    for mode, run in large["runs"].items():
        if "ari" in run:
            extra = f", subsample of {run['n_fit']} positions, chunks of {run['chunk_size']}" if "n_fit" in run else ""
            out.append(
                f"* ``--cluster {mode}``: adjusted Rand index {run['ari']:.3f} against the truth, "
                f"{run['n_clusters']} clusters{extra}."
            )
    out.append("")
    return "\n".join(out)


def render_subsample(entry):
    out = []
    shape = entry["scan_shape"]
    full = entry["full"]
    out.append(
        f"Measured {entry['date']} with ``{entry['command'].strip()}`` on ``synthetic_scan(\"four_phases\", "
        f"size=\"small\", scan_shape={tuple(shape)})``: {entry['n_positions']} positions, "
        f"{entry['n_features']} fused features (default ``fuse``). \"full\" is ``fused.cluster(random_state=0)``; "
        "the subsample rows are ``embed_and_cluster_subsample(matrix, n_fit, random_state=0)`` with the same "
        "UMAP, HDBSCAN and merging parameters."
    )
    out.append("")
    rows = [
        [
            "full (every position)",
            _s(full["stage"]["wall_s"]),
            _s(full["stage"]["cpu_s"]),
            "",
            f"{full['ari_truth']:.3f}",
            "1.000",
            full["n_clusters"],
        ]
    ]
    for run in entry["subsample"]:
        stage = run["stage"]
        rows.append(
            [
                f"subsample n_fit = {run['n_fit']}",
                _s(stage["wall_s"]),
                _s(stage["cpu_s"]),
                f"{_x(full['stage']['wall_s'] / stage['wall_s'])} / {_x(full['stage']['cpu_s'] / stage['cpu_s'])}",
                f"{run['ari_truth']:.3f}",
                f"{run['ari_full']:.3f}",
                run["n_clusters"],
            ]
        )
    out.append(
        _table(
            ["", "wall (s)", "CPU (s)", "speed-up wall / CPU", "ARI vs truth", "ARI vs full", "clusters"],
            rows,
            widths=[26, 10, 10, 16, 12, 12, 10],
        )
    )
    parts = ", ".join(
        f"n_fit = {run['n_fit']}: fit {_s(run['fit'][0])} s, assignment {_s(run['assign'][0])} s wall"
        for run in entry["subsample"]
    )
    out.append(f"Split of the subsample runs: {parts}.")
    out.append("")
    return "\n".join(out)


def render_distributed(entry):
    out = []
    stages = {s["name"]: s for s in entry["stages"]}
    out.append(
        f"Measured {entry['date']} with ``{entry['command'].strip()}``: a lazy "
        f"``synthetic_scan(\"four_phases\", size=\"{entry['size']}\", lazy=True)``, fused and clustered "
        "(``random_state=0``) once with dask's threaded scheduler and once under a ``Client`` of a "
        "``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``."
    )
    out.append("")
    rows = [[name, _s(s["wall_s"]), _s(s["cpu_s"])] for name, s in stages.items()]
    out.append(_table(["stage", "wall (s)", "CPU (s) of this process", ], rows, widths=[50, 20, 30]))
    out.append(
        f"* Fused features equal: **{'yes' if entry['features_equal'] else 'no'}** "
        f"(largest difference {entry['max_abs_difference']:.3g})."
    )
    out.append(f"* Labels equal: **{'yes' if entry['labels_equal'] else 'no'}**; ARI vs truth {entry['ari_truth']:.3f}.")
    out.append(
        "* CPU time under the ``Client`` is the main process's only: the work runs in the worker processes."
    )
    out.append("")
    return "\n".join(out)


def targets(results):
    """Each target of the performance issue with the measured value and a verdict."""
    rows = []
    entry = results.get("side_by_side", {}).get("published")
    if entry:
        _, totals, ref, new = side_by_side_numbers(entry)
        read_once = entry["stemfuse"]["read_once"]
        sum_wall = min(w for w, _ in read_once["sum"])
        copy_wall = min(w for w, _ in read_once["copy"])
        f_ref, f_new = ref["feature extraction"], new["feature extraction"]
        wall = f_ref["wall_s"] / f_new["wall_s"]
        cpu = f_ref["cpu_s"] / f_new["cpu_s"]
        rows.append(
            [
                "feature extraction >= 10x faster than the reference (published, in memory)",
                f"{_x(wall)} wall, {_x(cpu)} CPU",
                _verdict(wall >= 10, cpu >= 10),
            ]
        )
        ratio = f_new["wall_s"] / sum_wall
        rows.append(
            [
                "feature extraction within 3x of reading the array once",
                f"{_x(ratio)} of ``data.sum()``, {_x(f_new['wall_s'] / copy_wall)} of ``np.copy``",
                _verdict(ratio <= 3, f_new["wall_s"] / copy_wall <= 3),
            ]
        )
        proposed = new.get("feature extraction (proposed kernels)")
        if proposed:
            wall_p = f_ref["wall_s"] / proposed["wall_s"]
            cpu_p = f_ref["cpu_s"] / proposed["cpu_s"]
            rows.append(
                [
                    "... with the proposed kernels (``benchmarks/proposed_sdt.py``, not yet in the package)",
                    f"{_x(wall_p)} / {_x(cpu_p)} faster than the reference (wall / CPU); "
                    f"{_x(proposed['wall_s'] / sum_wall)} of ``data.sum()``, "
                    f"{_x(proposed['wall_s'] / copy_wall)} of ``np.copy``",
                    _verdict(wall_p >= 10 and proposed["wall_s"] / copy_wall <= 3, cpu_p >= 10),
                ]
            )
        tr, tn = totals["reference"], totals["stemfuse"]
        wall_e = tr["wall_s"] / tn["wall_s"]
        cpu_e = tr["cpu_s"] / tn["cpu_s"]
        ari_ok = entry["stemfuse"]["ari"] >= entry["reference"]["ari"]
        rows.append(
            [
                "end to end >= 3x faster at equal or better ARI (published)",
                f"{_x(wall_e)} wall, {_x(cpu_e)} CPU; ARI {entry['stemfuse']['ari']:.3f} vs "
                f"{entry['reference']['ari']:.3f}",
                _verdict(wall_e >= 3 and ari_ok, cpu_e >= 3 and ari_ok),
            ]
        )
    large = results.get("large")
    if large:
        peaks = {
            mode: max(run["peak_rss_bytes"], run["ru_maxrss_bytes"]) for mode, run in large["runs"].items()
        }
        text = "; ".join(f"``--cluster {m}``: {_gib(p)} GiB" for m, p in peaks.items())
        ok = all(p < 4 * 2**30 for p in peaks.values())
        rows.append(["out of core (256 x 256 x 256 x 256 .zspy) under 4 GB peak RSS", text, "met" if ok else "not met"])
    dist = results.get("distributed")
    if dist:
        ok = dist["features_equal"] and dist["labels_equal"]
        rows.append(
            [
                "LocalCluster (2 processes) gives the threaded result",
                f"features equal: {dist['features_equal']}, labels equal: {dist['labels_equal']} ({dist['size']})",
                "met" if ok else "not met",
            ]
        )
    for key, entry in sorted(results.get("subsample", {}).items()):
        best = max(entry["subsample"], key=lambda r: r["n_fit"])
        speed = entry["full"]["stage"]["wall_s"] / best["stage"]["wall_s"]
        rows.append(
            [
                f"subsample and assign ({entry['n_positions']} positions, n_fit = {best['n_fit']})",
                f"ARI vs full fit {best['ari_full']:.3f}, vs truth {best['ari_truth']:.3f} "
                f"(full: {entry['full']['ari_truth']:.3f}); {_x(speed)} faster (wall)",
                "measured",
            ]
        )
    return rows


def _verdict(on_wall, on_cpu):
    if on_wall and on_cpu:
        return "met"
    if on_cpu:
        return "met on CPU time only"
    if on_wall:
        return "met on wall time only"
    return "**not met**"


def _machine(stamp):
    m = stamp["machine"]
    v = stamp["versions"]
    load = m.get("load_average")
    load_text = f"; load average at the start {load[0]:.1f}" if load else ""
    return (
        f"{m['cpu']}, {m['usable_cpus']} usable cores, {m['ram_bytes'] / 2**30:.0f} GiB RAM, {m['os']}, "
        f"Python {m['python']}{load_text}. numpy {v['numpy']}, dask {v['dask']}, distributed "
        f"{v['distributed']}, umap-learn {v['umap-learn']}, pynndescent {v['pynndescent']}, hdbscan "
        f"{v['hdbscan']}, scikit-learn {v['scikit-learn']}, numba {v['numba']}, hyperspy {v['hyperspy']}, "
        f"stemfuse_hs {v['stemfuse_hs']}."
    )


HEADER = """\
.. This file is generated by benchmarks/run.py from benchmarks/results/latest.json.
   Do not edit it by hand: run the benchmarks again (see the note below).

Performance
===========

.. note::

   This page is **generated**, never typed: ``python benchmarks/run.py``
   measures and rewrites it (``--quick`` for the "small" size in a couple of
   minutes, ``--sizes small published`` for both, ``--large`` to add the
   out-of-core run; ``--render-only`` re-renders the stored results in
   ``benchmarks/results/latest.json``). Each section says when, with which
   command and on which machine its numbers were measured. Wall times on a
   shared machine are noisy: CPU times (all threads of the process) are
   given alongside, and cheap stages are repeated.

What is compared
----------------

* **reference**: ``benchmarks/reference_workflow.py``, a faithful
  re-implementation of the reference notebook's computation (numpy loops,
  ``np.isin`` thresholding, whole arrays in memory, ``change_dtype("float32")``,
  HyperSpy ``rebin``), with the notebook's parameters: top 40 % of the 128 x 128
  binned standard-deviation map with a central disk of radius 9 masked (beam
  centre from the synthetic scan's ``beam_center``, since the notebook
  hard-coded ``(62, 60)`` for its own detector); EDS channels above the
  variance quantile that keeps the notebook's fraction of channels (its
  ``0.012`` kept 758 of 2,048, so the 63rd percentile); EDS x ``exp(2.4)``,
  ``RobustScaler``; UMAP densMAP ``n_neighbors=10``, ``min_dist=0``,
  ``n_components=3``, ``metric="chebyshev"`` (the notebook's "replicate the
  paper" cell); HDBSCAN ``min_cluster_size=100``, ``min_samples=10``; labels =
  argmax of ``all_points_membership_vectors``; cluster means and standard
  deviations over positions with membership exactly 1. One deliberate change:
  the notebook's ``np.log(x, where=x != 0)`` without ``out=`` returns
  uninitialised memory at zero counts; here ``out=np.zeros_like(x)`` makes it
  deterministic (the same arithmetic elsewhere, 0 at zero counts).
* **stemfuse_hs**: the defaults, ``stemfuse_hs.fuse(dp, eds).cluster(random_state=0)``
  (timed as ``sdt_features`` + ``variance_features``, then ``fuse`` of the two,
  which is what ``fuse(dp, eds)`` runs), cluster means and standard deviations
  by ``labels.cluster_statistics(dp)`` and ``(eds)``.
* Both on the same in-memory synthetic scan (``four_phases``, seed 0; four
  phases that neither modality separates alone, thickness, bending, descan,
  low EDS counts), each side in its own process after a warm-up that compiles
  UMAP's and HDBSCAN's numba code. Both use seed 0 for UMAP (which makes UMAP
  single-threaded on both sides). Peak memory is the process's resident set
  size sampled every 10 ms by a background thread (tracemalloc misses what
  numpy, BLAS, numba and dask threads allocate); the in-memory data (1 GB of
  uint16 for the published size) is included.
"""

DISTRIBUTED_HOWTO = """\
On a real cluster
^^^^^^^^^^^^^^^^^

Every dask computation of stemfuse_hs (feature extraction, fusion, cluster
statistics) runs on whatever dask scheduler is active; with a
``dask.distributed`` ``Client`` it is the cluster. UMAP and HDBSCAN run in
the client process on the fused features (``n_positions x n_features``,
e.g. 1.8 GB for a 256 x 256 scan), so give that process the memory.

An existing scheduler:

.. code-block:: python

   from distributed import Client
   import hyperspy.api as hs
   import stemfuse_hs

   client = Client("tcp://scheduler-host:8786")
   dp = hs.load("scan_4dstem.zspy", lazy=True)   # files the workers can read
   eds = hs.load("scan_eds.zspy", lazy=True)
   labels = stemfuse_hs.fuse(dp, eds).cluster(random_state=0)

A batch system through dask-jobqueue (SLURM here; PBS, SGE, LSF alike):

.. code-block:: python

   from dask_jobqueue import SLURMCluster
   from distributed import Client

   cluster = SLURMCluster(cores=8, processes=2, memory="32GB", walltime="02:00:00")
   cluster.scale(jobs=4)          # 8 worker processes
   client = Client(cluster)
   # ... the same code as above

From a terminal, ``stemfuse run DP_FILE EDS_FILE --scheduler tcp://scheduler-host:8786``
does the same (``stemfuse run --help``). The data must be stored in chunks
the workers can read independently (``.zspy``/zarr, or HDF5 on a shared file
system), chunked over scan positions with whole patterns in a chunk, e.g.
``dp.save("scan.zspy", chunks=(4, 64, 256, 256))``.
"""

SUBSAMPLE_TEXT = """\
For scans past about 200,000 positions (a 512 x 512 scan has 262,144),
:func:`stemfuse_hs.clustering.subsample.embed_and_cluster_subsample` fits
UMAP and HDBSCAN on a random subsample of ``n_fit`` positions and assigns
every other position chunk by chunk: UMAP's ``transform`` places it in the
fitted embedding and ``hdbscan.membership_vector`` (``hdbscan.prediction``)
gives its soft memberships; labels are their argmax, merging of indistinct
clusters is decided on the subsample and applied to all. A dask matrix is
read chunk by chunk. umap-learn refuses ``transform`` on a densMAP model;
new positions are placed by UMAP's standard transform (neighbour-weighted
start in the densMAP embedding, then UMAP's layout refinement without the
density term) on a copy of the fitted model with ``densmap=False``. The
fitted positions keep their densMAP coordinates. The numbers below compare
it with the full fit on a scan where both run.
"""

GPU_TEXT = """\
Design only: there is no GPU on the benchmark machine, so nothing of this is
implemented or measured.

* A ``backend="cpu" | "cuml" | "auto"`` parameter of
  ``FusedSTEMSignal.cluster`` (and of ``embed_and_cluster_subsample``) would
  choose the UMAP and HDBSCAN implementations; ``"auto"`` takes cuML when
  ``import cuml`` succeeds and a device is visible, else the CPU.
* **UMAP**: ``cuml.manifold.UMAP`` takes ``n_neighbors``, ``n_components``,
  ``min_dist``, ``metric`` (euclidean and a few others; not every
  umap-learn metric), ``random_state`` and supports ``transform``, but has
  **no densMAP** (``densmap`` is not a cuML parameter). With
  ``densmap=True`` the cuML backend would either fall back to the CPU for
  the embedding (the default, with a message) or run plain UMAP when the
  user accepts it (``densmap=False``), which changes the method.
* **HDBSCAN**: ``cuml.cluster.hdbscan.HDBSCAN(prediction_data=True)`` with
  ``cuml.cluster.hdbscan.all_points_membership_vectors``,
  ``membership_vector`` and ``approximate_predict`` -- the soft memberships
  the method needs exist in cuML (since 22.x), with ``min_cluster_size``,
  ``min_samples``, ``cluster_selection_epsilon`` and
  ``cluster_selection_method`` ("eom" and "leaf").
* **Data path**: the fused matrix is copied to the device once
  (``cupy.asarray``; 65,536 x 6,700 float32 is 1.8 GB), embedding and
  memberships come back with ``.get()``; the merging of clusters
  (``merge_indistinct``, a PCA and histograms) stays on the CPU. The
  subsample path would fit on the device and stream the assignment chunks.
* **Fallback**: any ``ImportError``, missing device, unsupported metric or
  out-of-device-memory error falls back to the CPU path with a warning and
  records ``backend_used`` in ``metadata.Clustering.parameters``, so a saved
  map says how it was made. Results differ from the CPU's (different
  nearest-neighbour search and optimiser): a seed fixes a map only within
  one backend.
* Testing: the dispatch (which backend, which fallback) can be tested
  without a GPU by faking the ``cuml`` module; the numbers need a GPU runner.
"""


def render_page(results):
    parts = [HEADER]
    summary = targets(results)
    parts.append("Targets\n-------\n")
    if summary:
        parts.append(_table(["target", "measured", "verdict"], summary, widths=[40, 45, 15]))
        parts.append(
            "\"met on CPU time only\": the CPU-time ratio meets the target, the wall-time ratio does not "
            "(on a machine shared with other jobs the wall time of the faster, shorter run suffers most).\n"
        )
    else:
        parts.append("No results yet: run ``python benchmarks/run.py``.\n")
    side = results.get("side_by_side", {})
    if side:
        parts.append("Side by side\n------------\n")
        for size in ("published", "small", "tiny", "large"):
            if size in side:
                parts.append(render_side_by_side(side[size]))
        for size, entry in side.items():
            if size not in ("published", "small", "tiny", "large"):
                parts.append(render_side_by_side(entry))
    parts.append("Out of core\n-----------\n")
    if results.get("large"):
        parts.append(render_large(results["large"]))
    else:
        parts.append("Not measured yet: ``python benchmarks/run.py --large``.\n")
    parts.append("Distributed\n-----------\n")
    if results.get("distributed"):
        parts.append(render_distributed(results["distributed"]))
    parts.append(DISTRIBUTED_HOWTO)
    parts.append("Subsample and assign\n--------------------\n")
    parts.append(SUBSAMPLE_TEXT)
    for key, entry in sorted(results.get("subsample", {}).items()):
        parts.append(render_subsample(entry))
    parts.append("GPU backend (design)\n--------------------\n")
    parts.append(GPU_TEXT)
    parts.append("Machines\n--------\n")
    seen = []
    for entry in list(side.values()) + list(results.get("subsample", {}).values()) + [
        results.get("distributed"),
        results.get("large"),
    ]:
        if entry:
            text = _machine(entry)
            if text not in seen:
                seen.append(text)
                parts.append(f"* {entry['date']}: {text}")
    parts.append("")
    return "\n".join(parts) + "\n"
