"""Render ``docs/performance.md`` (Markdown, MyST) from ``benchmarks/results/latest.json``.

Called by ``benchmarks/run.py`` (also ``--render-only``). Every number on
the page comes from the results file; the prose around them is fixed here.
The page is generated: edit this file (or re-run the benchmarks), never the
page.
"""

import csv
import math
from pathlib import Path

STAGES = ["feature extraction", "fusion", "embedding", "clustering", "cluster means"]
GIB = 2**30
#: The out-of-core target: peak resident memory under 4 GB.
LARGE_TARGET_BYTES = 4e9
LARGE_TARGET_SHAPE = [256, 256, 256, 256]


# ---------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------
def _layout_sentence(layout):
    """How each side optimised the layout, for the speed-up paragraph."""
    if layout == "parallel":
        return (
            "Both seed UMAP densMAP with 0 on the same number of positions: the reference with umap-learn's "
            "layout, single-threaded when seeded; stemfuse_hs with its parallel layout "
            "(the default `layout=\"auto\"` runs it from 4,096 fitted positions; stemfuse_hs.clustering.layout: "
            "the same objective on every thread, the "
            "same result on any number of them); "
        )
    return (
        "Both run UMAP densMAP seeded (which makes umap-learn single-threaded) on the same number of positions; "
    )


def _epochs_sentence(epochs):
    """What the two sides' layout epochs are, for the speed-up paragraph."""
    if epochs is None:
        return (
            "both with umap-learn's default epochs, so the layout optimisation, the same work on both sides, bounds "
            "the end-to-end speed-up (Amdahl) unless it runs on more threads."
        )
    return (
        f"the reference with umap-learn's default layout epochs (700 with densMAP up to 10,000 positions), "
        f"stemfuse_hs with {epochs} (stemfuse_hs.clustering.embed.layout_epochs: from 5,000 positions up; "
        "chosen with benchmarks/epochs.py, the same ARI at this size; umap-learn's own default beyond 10,000 "
        "positions)."
    )


def _gib(value):
    return f"{value / GIB:.2f}"


def _gb(value):
    return f"{value / 1e9:.2f}"


def _s(value):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
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


def _speed(ratio):
    """'3.2x faster' / '2.0x slower' from a time ratio old / new."""
    if ratio is None or not math.isfinite(ratio) or ratio <= 0:
        return "--"
    return f"{_x(ratio)} faster" if ratio >= 1 else f"{_x(1 / ratio)} slower"


def _pct(part, whole):
    return f"{100 * part / whole:.0f} %" if whole else "--"


def _median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])


def _cell(value):
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if text else " "


def _table(header, rows):
    """A Markdown pipe table (MyST renders it; so do GitHub and most viewers)."""
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join(["---"] + ["--:"] * (len(header) - 1)) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    lines.append("")
    return "\n".join(lines)


def _heading(level, text):
    return f"{'#' * level} {text}\n"


def _measured(entry):
    """'Measured <date> with `<command>`' for a section."""
    return f"Measured {entry['date']} with `{entry['command'].strip()}`"


# ---------------------------------------------------------------------------
# Side by side
# ---------------------------------------------------------------------------
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
    rows = {stage: (ref.get(stage), new.get(stage)) for stage in STAGES}
    totals = {}
    for side, stages in (("reference", ref), ("stemfuse", new)):
        totals[side] = {
            "wall_s": sum(stages[s]["wall_s"] for s in STAGES if s in stages),
            "cpu_s": sum(stages[s]["cpu_s"] for s in STAGES if s in stages),
            "peak_rss_bytes": max(stages[s]["peak_rss_bytes"] for s in STAGES if s in stages),
        }
    return rows, totals, ref, new


def _read_once(entry):
    read_once = entry["stemfuse"]["read_once"]
    return (
        min(w for w, _ in read_once["sum"]),
        min(w for w, _ in read_once["copy"]),
        min(c for _, c in read_once["sum"]),
        min(c for _, c in read_once["copy"]),
    )


def render_side_by_side(entry):
    rows, totals, ref, new = side_by_side_numbers(entry)
    scan = entry["scan_shape"]
    det = entry["detector"]
    out = [
        _heading(
            3,
            f"{entry['size']}: {scan[0]} x {scan[1]} scan, {det[0]} x {det[1]} detector, {entry['channels']} channels",
        )
    ]
    out.append(
        f"{_measured(entry)}. Feature extraction, fusion and cluster means are repeated "
        f"({ref['feature extraction']['repeats']} runs) and the median is shown; embedding and clustering "
        "run once (seed 0). Speed-up = reference time / stemfuse_hs time; memory ratio = stemfuse_hs peak / "
        "reference peak (process resident set size during the stage, the in-memory data included).\n"
    )
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
        )
    )
    ref_ari, new_ari = entry["reference"]["ari"], entry["stemfuse"]["ari"]
    ari_rows = [
        [
            "adjusted Rand index vs ground truth",
            f"{ref_ari:.3f}",
            f"{new_ari:.3f}",
            f"{new_ari / ref_ari:.2f}" if ref_ari > 0 else "--",
        ],
        ["clusters found (truth: 4)", entry["reference"]["n_clusters"], entry["stemfuse"]["n_clusters"], ""],
        [
            "features (diffraction + EDS)",
            " + ".join(str(v) for v in entry["reference"]["n_features"]),
            " + ".join(str(v) for v in entry["stemfuse"]["n_features"]),
            "",
        ],
        [
            "whole process peak RSS, `ru_maxrss` (GiB)",
            _gib(entry["reference"]["ru_maxrss_bytes"]),
            _gib(entry["stemfuse"]["ru_maxrss_bytes"]),
            f"{entry['stemfuse']['ru_maxrss_bytes'] / entry['reference']['ru_maxrss_bytes']:.2f}",
        ],
    ]
    out.append(_table(["", "reference", "stemfuse_hs", "ratio"], ari_rows))
    params = entry["stemfuse"].get("cluster_parameters")
    if params:
        out.append(
            "stemfuse_hs clustered with " + ", ".join(f"`{k}={v!r}`" for k, v in params.items() if v is not None)
            + " (read back from the label map's `metadata.Clustering.parameters`).\n"
        )
    out.append(
        f"Adjusted Rand index between the two label maps: {entry['ari_between']:.3f}. The reference's EDS "
        f"variance threshold on this scan: {entry['reference']['eds_threshold']:.4g} (keeps the notebook's fraction "
        f"of channels); its beam centre on the binned grid: (x, y) = "
        f"{tuple(entry['reference']['beam_centre_binned_xy'])}; positions with a membership of exactly 1 (what "
        f"its cluster means average): {entry['reference']['n_membership_exactly_one']}.\n"
    )
    notes = []
    for name in ("feature extraction", "fusion", "cluster means"):
        r, n = rows[name]
        if r and n and r["repeats"] > 1:
            notes.append(
                f"* {name}: reference {', '.join(_s(w) for w in r['walls'])} s; "
                f"stemfuse_hs {', '.join(_s(w) for w in n['walls'])} s (wall)."
            )
    if notes:
        out.append("Individual runs of the repeated stages:\n")
        out.extend(notes)
        out.append("")

    # Where the time goes.
    out.append(_heading(4, f"Where the time goes ({entry['size']})"))
    parts_new = [
        ("feature extraction", new.get("feature extraction")),
        ("fusion", new.get("fusion")),
        ("embedding (UMAP densMAP)", new.get("embedding")),
        ("... of which principal components (if asked for)", new.get("embedding: principal components")),
        ("HDBSCAN + soft memberships", new.get("clustering: HDBSCAN + memberships")),
        ("merging indistinct clusters", new.get("clustering: merging")),
        ("separation per block (metadata)", new.get("clustering: block separation")),
        ("cluster means (diffraction + EDS)", new.get("cluster means")),
    ]
    parts_ref = {
        "feature extraction": ref.get("feature extraction"),
        "fusion": ref.get("fusion"),
        "embedding (UMAP densMAP)": ref.get("embedding"),
        "HDBSCAN + soft memberships": ref.get("clustering"),
        "cluster means (diffraction + EDS)": ref.get("cluster means"),
    }
    rows_time = []
    for name, p in parts_new:
        if p is None:
            continue
        r = parts_ref.get(name)
        rows_time.append(
            [
                name,
                f"{_s(r['wall_s'])} ({_pct(r['wall_s'], tr['wall_s'])})" if r else "(not a separate step)",
                f"{_s(p['wall_s'])} ({_pct(p['wall_s'], tn['wall_s'])})",
                _s(p["cpu_s"]),
            ]
        )
    out.append(
        _table(["part", "reference wall (s, share)", "stemfuse_hs wall (s, share)", "stemfuse_hs CPU (s)"], rows_time)
    )
    ranked = sorted(
        ((p["wall_s"], name) for name, p in parts_new if p is not None and not name.startswith("...")), reverse=True
    )
    embed_new = new.get("embedding")
    embed_ref = ref.get("embedding")
    sentences = [
        f"In stemfuse_hs, {ranked[0][1]} takes {_pct(ranked[0][0], tn['wall_s'])} of the end-to-end wall time "
        f"and {ranked[1][1]} {_pct(ranked[1][0], tn['wall_s'])}."
    ]
    if embed_new and embed_ref:
        rest_ref = tr["wall_s"] - embed_ref["wall_s"]
        rest_new = tn["wall_s"] - embed_new["wall_s"]
        sentences.append(
            f"Without the embedding, the other stages together take {_s(rest_ref)} s in the reference and "
            f"{_s(rest_new)} s in stemfuse_hs ({_speed(rest_ref / rest_new)}); the embedding itself takes "
            f"{_s(embed_ref['wall_s'])} s and {_s(embed_new['wall_s'])} s. "
            + _layout_sentence(
                entry["stemfuse"].get("layout_used")
                or (entry["stemfuse"].get("cluster_parameters") or {}).get("layout")
            )
            + _epochs_sentence(entry["stemfuse"].get("layout_epochs"))
            + " The reference searches the neighbours approximately in all its features (UMAP's nearest-neighbour "
            "descent), stemfuse_hs exactly (float32 products for one half of the symmetric distance matrix, in "
            "strips; candidates ranked on float64 distances)."
        )
    slower = [
        f"{stage} ({_x(n['cpu_s'] / r['cpu_s'])} the reference's CPU time)"
        for stage in STAGES
        for r, n in [rows[stage]]
        if r and n and n["cpu_s"] > r["cpu_s"]
    ]
    if slower:
        sentences.append("stemfuse_hs spends more CPU time than the reference in: " + "; ".join(slower) + ".")
    out.append(" ".join(sentences) + "\n")

    # Read once.
    sum_wall, copy_wall, sum_cpu, copy_cpu = _read_once(entry)
    features = new["feature extraction"]
    ref_features = ref["feature extraction"]
    out.append(_heading(4, f"Feature extraction against reading the data once ({entry['size']})"))
    out.append(
        f"The diffraction array holds {entry['stemfuse']['dp_bytes'] / 1e9:.2f} GB (uint16). \"Read once\" is the "
        "fastest of the runs of `data.sum(dtype=np.uint64)` (one read, one thread) and of `np.copy(data)` (one "
        "read and one write).\n"
    )
    rows_read = [
        ["`data.sum()`", _s(sum_wall), _s(sum_cpu), "1.0x", ""],
        ["`np.copy(data)`", _s(copy_wall), _s(copy_cpu), _x(copy_wall / sum_wall), ""],
        [
            "reference feature extraction",
            _s(ref_features["wall_s"]),
            _s(ref_features["cpu_s"]),
            _x(ref_features["wall_s"] / sum_wall),
            "1.0x",
        ],
        [
            "stemfuse_hs feature extraction (`sdt_features` + `variance_features`)",
            _s(features["wall_s"]),
            _s(features["cpu_s"]),
            _x(features["wall_s"] / sum_wall),
            _x(ref_features["wall_s"] / features["wall_s"]),
        ],
    ]
    out.append(
        _table(["", "wall (s)", "CPU (s)", "wall / read once (sum)", "speed-up vs reference (wall)"], rows_read)
    )
    return "\n".join(out)


# ---------------------------------------------------------------------------
# Out of core
# ---------------------------------------------------------------------------
def _large_peak(run):
    return max(run["peak_rss_bytes"], run["ru_maxrss_bytes"])


def render_large(large):
    out = []
    write = large["write"]
    shape = write["dp_shape"]
    out.append(
        f"{_measured(large)}: `synthetic_scan(\"{write['scenario']}\", size=\"{write['size']}\", lazy=True"
        + (f", scan_shape={tuple(write['scan_shape'])}" if write.get("scan_shape") else "")
        + f")`, a {shape[0]} x {shape[1]} scan of {shape[2]} x {shape[3]} uint16 patterns, generated lazily "
        f"and written chunk by chunk with `dp.save(path, chunks={tuple(write['dp_chunks'])})` (never whole in "
        f"memory): {write['dp_bytes_uncompressed'] / 1e9:.1f} GB of diffraction data, "
        f"{write['bytes_on_disk'] / 1e9:.2f} GB on disk (`.zspy`, zarr, compressed); writing took "
        f"{_s(write['write_wall_s'])} s. Each run below is a fresh process: `hs.load(path, lazy=True)` for both "
        "files, `stemfuse_hs.fuse(dp, eds)` (default features and weights; `max_samples` where the run's label says "
        "so), then the clustering. Peak memory is "
        "the process's resident set size, sampled every 10 ms; the \"whole process\" row is the larger of that and "
        "the kernel's high-water mark `ru_maxrss`. The files were deleted afterwards.\n"
    )
    if any(run.get("command") and run["command"] != large["command"] for run in large["runs"].values()):
        out.append(
            "Runs measured by an earlier command (named in their notes below) read files written the same way "
            "(same generator, seed and chunks: the synthetic data are deterministic), deleted after that command.\n"
        )
    if large.get("size_note"):
        out.append(f"**Size run:** {large['size_note']}\n")
    rows = []
    for mode, run in large["runs"].items():
        for stage in run["stages"]:
            if stage["name"] == "import+warm-up":
                continue
            rows.append(
                [
                    f"`{run.get('label', mode)}`",
                    stage["name"],
                    _s(stage["wall_s"]),
                    _s(stage["cpu_s"]),
                    _gib(stage["peak_rss_bytes"]) if not stage.get("part_of") else "(as above)",
                ]
            )
        rows.append([f"`{run.get('label', mode)}`", "**whole process**", "", "", f"**{_gib(_large_peak(run))}**"])
    out.append(_table(["run", "stage", "wall (s)", "CPU (s)", "peak RSS (GiB)"], rows))
    for mode, run in large["runs"].items():
        stages = [st for st in run["stages"] if not st.get("part_of") and st["name"] != "import+warm-up"]
        if stages:
            top = max(stages, key=lambda st: st["peak_rss_bytes"])
            fuse_kwargs = run.get("fuse_kwargs") or {}
            out.append(
                f"* `{run.get('label', mode)}`: peak {_gib(_large_peak(run))} GiB for the whole process, reached in "
                f"\"{top['name']}\" ({_gib(top['peak_rss_bytes'])} GiB sampled); fuse arguments "
                f"{fuse_kwargs if fuse_kwargs else '(defaults)'}"
                + (f"; its process finished {run['resumed_from']} and was collected with `--large-resume`" if run.get("resumed_from") else "")
                + (
                    f"; measured {run['measured']} with `{run['command'].strip()}`"
                    if run.get("command") and run["command"] != large["command"]
                    else ""
                )
                + "."
            )
    for mode, run in large["runs"].items():
        if "ari" in run:
            extra = f", fitted on {run['n_fit']} positions" if "n_fit" in run else ""
            api = f" via `{run['api']}`" if run.get("api") else ""
            if "merge_threshold" in run:
                api += f" (`merge_threshold={run['merge_threshold']:g}`)"
            elif run.get("api", "").startswith("embed_and_cluster_subsample("):
                # Runs of the benchmark before it recorded the threshold passed 0.6 explicitly.
                api += " (`merge_threshold=0.6`, passed explicitly by that version of the benchmark)"
            weights = (
                f", block weights {', '.join(f'{w:.3g}' for w in run['fusion_weights'])}" if run.get("fusion_weights") else ""
            )
            out.append(
                f"* `{run.get('label', mode)}`{api}: adjusted Rand index {run['ari']:.3f} against the ground truth, "
                f"{run['n_clusters']} clusters{extra}{weights}."
            )
        else:
            out.append(f"* `{run.get('label', mode)}`: feature extraction and fusion computed, no clustering.")
    over = [
        (mode, run) for mode, run in large["runs"].items()
        if mode in ("cluster", "full") and _large_peak(run) >= LARGE_TARGET_BYTES and run.get("n_features")
    ]
    for mode, run in over:
        n = shape[0] * shape[1]
        f32 = n * run["n_features"] * 4 / 1e9
        if mode == "full":
            out.append(
                f"\nWhere the memory goes in `fused.cluster()` fitting every position: UMAP embeds every position at "
                f"once, so the fused features are computed into memory ({n} x {run['n_features']} float32 = "
                f"{f32:.2f} GB, block by block), and umap-learn's `fit` copies them more than once (it indexes "
                "its input with `X[list(range(n))]` for the neighbour search, the fuzzy graph and the layout) "
                "besides its nearest-neighbour descent's search index: measured separately on 30,000 x 6,745 "
                "float32 features (0.81 GB), `umap.UMAP(densmap=True).fit` peaked 1.99 GB above the features "
                "(1.03 GB of it in the neighbour search), while pynndescent's `NNDescent` called directly on the "
                "same array took 0.22 GB. The block separation, the finiteness check and the merge's "
                "principal-component scores do not copy the matrix. With `max_fit_positions` below the number of "
                "positions (the `cluster` run) the features of a lazy signal are never held whole.\n"
            )
        else:
            out.append(
                f"\nWhere the memory goes in `{run.get('label', mode)}`: the lazy features are never held whole "
                f"({n} x {run['n_features']} float32 would be {f32:.2f} GB); the subsample UMAP and HDBSCAN are "
                "fitted on, UMAP's search index on it, and the chunks being assigned make the peak.\n"
            )
    default = large["runs"].get("subsample")
    if default and _large_peak(default) >= LARGE_TARGET_BYTES:
        fusion = next((st for st in default["stages"] if st["name"] == "features+fusion"), None)
        if fusion and fusion["peak_rss_bytes"] >= LARGE_TARGET_BYTES:
            rows_per_sample = 50_000 // shape[1]
            sample = rows_per_sample * shape[1]
            gb = sample * default["n_features"] * 8 / 1e9
            out.append(
                f"\nWhere the memory goes with the defaults: `fuse` computes its block statistics (robust "
                f"scaling, leading principal component, discreteness) on a sample of whole scan rows of up to "
                f"`max_samples=50000` positions, here {rows_per_sample} rows = {sample} positions x "
                f"{default['n_features']} features, scaled and centred in float64 ({gb:.1f} GB per copy, several "
                "copies alive at once inside `fusion.fuse_blocks` and scikit-learn's `randomized_svd`). The feature "
                "extraction itself streams through the data chunk by chunk. With `max_samples=8192` (the runs so labelled) "
                "the same sample statistics use about a sixth of that; the adjusted Rand indices above show what "
                "it costs in the map."
            )
    out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# Subsample
# ---------------------------------------------------------------------------
def render_subsample(entry):
    out = []
    shape = entry["scan_shape"]
    full = entry["full"]
    api = entry.get("api", "embed_and_cluster_subsample(matrix, n_fit, random_state=0)")
    out.append(_heading(3, f"{shape[0]} x {shape[1]} scan ({entry['n_positions']} positions)"))
    out.append(
        f"{_measured(entry)} on `synthetic_scan(\"four_phases\", size=\"{entry['size']}\", "
        f"scan_shape={tuple(shape)})`: {entry['n_positions']} positions, {entry['n_features']} fused features "
        f"(default `fuse`). \"full\" is `fused.cluster(random_state=0)` on every position; the subsample rows are "
        f"`{api}` with the same UMAP, HDBSCAN and merging parameters. Agreement is the adjusted Rand index "
        "(ARI) between label maps.\n"
    )
    rows = [
        [
            "full (every position)",
            _s(full["stage"]["wall_s"]),
            _s(full["stage"]["cpu_s"]),
            "1.0x",
            f"{full['ari_truth']:.3f}",
            "1.000",
            full["n_clusters"],
        ]
    ]
    for run in entry["subsample"]:
        stage = run["stage"]
        rows.append(
            [
                f"subsample, fitted on {run['n_fit']}",
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
            ["", "wall (s)", "CPU (s)", "speed-up wall / CPU", "ARI vs truth", "ARI vs full fit", "clusters"], rows
        )
    )
    parts = "; ".join(
        f"fitted on {run['n_fit']}: fit {_s(run['fit'][0])} s, assignment of the other "
        f"{entry['n_positions'] - run['n_fit']} positions {_s(run['assign'][0])} s (wall)"
        for run in entry["subsample"]
        if run.get("fit")
    )
    if parts:
        out.append(f"Split of the subsample runs: {parts}.\n")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# Distributed
# ---------------------------------------------------------------------------
def render_distributed(entry):
    out = []
    out.append(
        f"{_measured(entry)}: a lazy `synthetic_scan(\"four_phases\", size=\"{entry['size']}\", lazy=True)` "
        f"({' x '.join(str(v) for v in entry.get('scan_shape', []))} scan), fused and clustered "
        "(`random_state=0`) once with dask's threaded scheduler and once under a `Client` of a "
        "`LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`.\n"
    )
    rows = [[s["name"], _s(s["wall_s"]), _s(s["cpu_s"])] for s in entry["stages"]]
    out.append(_table(["stage", "wall (s)", "CPU (s) of the client process"], rows))
    out.append(
        f"* Fused features equal: **{'yes' if entry['features_equal'] else 'no'}** "
        f"(largest difference {entry['max_abs_difference']:.3g})."
    )
    out.append(
        f"* Labels equal: **{'yes' if entry['labels_equal'] else 'no'}**; ARI vs ground truth {entry['ari_truth']:.3f}."
    )
    if "n_tasks_on_workers" in entry:
        out.append(f"* Tasks run on the workers: {entry['n_tasks_on_workers']}.")
    out.append(
        "* CPU time under the `Client` is the client process's only: the feature work runs in the worker "
        "processes. UMAP and HDBSCAN run in the client process in both modes.\n"
    )
    return "\n".join(out)


# ---------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------
def _verdict(on_wall, on_cpu):
    if on_wall and on_cpu:
        return "met"
    if on_cpu:
        return "met on CPU time only"
    if on_wall:
        return "met on wall time only"
    return "**not met**"


def targets(results):
    """Each target of the performance issue with the measured value and a verdict."""
    rows = []
    entry = results.get("side_by_side", {}).get("published")
    if entry:
        _, totals, ref, new = side_by_side_numbers(entry)
        sum_wall, copy_wall, _, _ = _read_once(entry)
        f_ref, f_new = ref["feature extraction"], new["feature extraction"]
        wall = f_ref["wall_s"] / f_new["wall_s"]
        cpu = f_ref["cpu_s"] / f_new["cpu_s"]
        rows.append(
            [
                "feature extraction >= 10x faster than the reference (published size, in memory)",
                f"{_x(wall)} wall, {_x(cpu)} CPU",
                _verdict(wall >= 10, cpu >= 10),
            ]
        )
        ratio = f_new["wall_s"] / sum_wall
        rows.append(
            [
                "feature extraction within 3x of the time to read the array once",
                f"{_x(ratio)} of `data.sum()`, {_x(f_new['wall_s'] / copy_wall)} of `np.copy`",
                "met" if ratio <= 3 else ("met against `np.copy` only" if f_new["wall_s"] / copy_wall <= 3 else "**not met**"),
            ]
        )
        tr, tn = totals["reference"], totals["stemfuse"]
        wall_e = tr["wall_s"] / tn["wall_s"]
        cpu_e = tr["cpu_s"] / tn["cpu_s"]
        ari_ok = entry["stemfuse"]["ari"] >= entry["reference"]["ari"]
        rows.append(
            [
                "end to end >= 3x faster at equal or better ARI (published size)",
                f"{_x(wall_e)} wall, {_x(cpu_e)} CPU; ARI {entry['stemfuse']['ari']:.3f} (stemfuse_hs) vs "
                f"{entry['reference']['ari']:.3f} (reference)",
                _verdict(wall_e >= 3 and ari_ok, cpu_e >= 3 and ari_ok),
            ]
        )
    else:
        rows.append(["side by side on the published size", "not measured yet", "--"])
    large = results.get("large")
    if large:
        peaks = {run.get("label", mode): _large_peak(run) for mode, run in large["runs"].items()}
        text = "; ".join(f"`{m}`: {_gib(p)} GiB ({_gb(p)} GB)" for m, p in peaks.items())
        under = [m for m, p in peaks.items() if p < LARGE_TARGET_BYTES]
        over = [m for m, p in peaks.items() if p >= LARGE_TARGET_BYTES]
        shape = large["write"]["dp_shape"]
        at_size = list(shape) == LARGE_TARGET_SHAPE
        size_text = " x ".join(str(v) for v in shape)
        if not over:
            verdict = "met" if at_size else f"met at {size_text} only"
        elif under:
            verdict = "met by " + ", ".join(f"`{m}`" for m in under) + "; **not met** by " + ", ".join(
                f"`{m}`" for m in over
            )
        else:
            verdict = "**not met**"
        rows.append(
            [
                "out of core: lazy 256 x 256 scan, 256 x 256 uint16 detector, `.zspy`, end to end under 4 GB peak RSS",
                f"run on {size_text}: {text}",
                verdict,
            ]
        )
    else:
        rows.append(["out of core (256 x 256 x 256 x 256 `.zspy`) under 4 GB", "not measured yet", "--"])
    dist = results.get("distributed")
    if dist:
        ok = dist["features_equal"] and dist["labels_equal"]
        rows.append(
            [
                "LocalCluster (processes) gives the single-process labels",
                f"features equal: {'yes' if dist['features_equal'] else 'no'}, labels equal: "
                f"{'yes' if dist['labels_equal'] else 'no'} ({dist['size']} size)",
                "met" if ok else "**not met**",
            ]
        )
    for key, entry in sorted(results.get("subsample", {}).items()):
        best = max(entry["subsample"], key=lambda r: r["n_fit"])
        speed = entry["full"]["stage"]["wall_s"] / best["stage"]["wall_s"]
        rows.append(
            [
                f"subsample and assign, agreement and speed-up ({entry['n_positions']} positions, fitted on {best['n_fit']})",
                f"ARI vs full fit {best['ari_full']:.3f}; vs truth {best['ari_truth']:.3f} (full fit: "
                f"{entry['full']['ari_truth']:.3f}); {_speed(speed)} (wall)",
                "measured (no numeric target)",
            ]
        )
    stamp = _any_stamp(results)
    keywords = (stamp or {}).get("cluster_keywords") or []
    rows.append(
        [
            "optional GPU backend (`backend=\"cuml\"`)",
            ("`backend` keyword present in `FusedSTEMSignal.cluster`" if "backend" in keywords else
             "`backend` keyword not in `FusedSTEMSignal.cluster` at measurement time")
            + "; no GPU on this machine",
            "not measured",
        ]
    )
    return rows


def _any_stamp(results):
    for entry in [results.get("distributed"), results.get("large")] + list(results.get("subsample", {}).values()) + list(
        results.get("side_by_side", {}).values()
    ):
        if entry and "machine" in entry:
            return entry
    return None


def _machine(stamp):
    m = stamp["machine"]
    v = stamp["versions"]
    load = m.get("load_average")
    load_text = f"; load average (1 min) when the section started: {load[0]:.1f}" if load else ""
    return (
        f"{m['cpu']}, {m['usable_cpus']} usable cores, {m['ram_bytes'] / GIB:.0f} GiB RAM, {m['os']}, "
        f"Python {m['python']}{load_text}. stemfuse_hs {v['stemfuse_hs']}, numpy {v['numpy']}, dask {v['dask']}, "
        f"distributed {v['distributed']}, umap-learn {v['umap-learn']}, pynndescent {v['pynndescent']}, hdbscan "
        f"{v['hdbscan']}, scikit-learn {v['scikit-learn']}, numba {v['numba']}, hyperspy {v['hyperspy']}, "
        f"pyxem {v['pyxem']}, exspy {v['exspy']}, zarr {v['zarr']}."
    )


def _sizes(results):
    rows = []
    for size, entry in results.get("side_by_side", {}).items():
        scan, det = entry["scan_shape"], entry["detector"]
        rows.append(
            [
                "side by side",
                f"`{size}`",
                f"{scan[0]} x {scan[1]}",
                f"{det[0]} x {det[1]}",
                entry["channels"],
                _gb(scan[0] * scan[1] * det[0] * det[1] * 2),
            ]
        )
    for entry in results.get("subsample", {}).values():
        r, c = entry["scan_shape"]
        rows.append(["subsample", f"`{entry['size']}`", f"{r} x {c}", "64 x 64", 1024, _gb(r * c * 64 * 64 * 2)])
    dist = results.get("distributed")
    if dist and dist.get("scan_shape"):
        det = dist.get("detector", ["?", "?"])
        r, c = dist["scan_shape"]
        rows.append(["distributed", f"`{dist['size']}`", f"{r} x {c}", f"{det[0]} x {det[1]}",
                     dist.get("channels", "--"), _gb(r * c * det[0] * det[1] * 2)])
    large = results.get("large")
    if large:
        s = large["write"]["dp_shape"]
        rows.append(["out of core", f"`{large['write']['size']}`", f"{s[0]} x {s[1]}", f"{s[2]} x {s[3]}",
                     large["write"]["eds_shape"][-1], _gb(large["write"]["dp_bytes_uncompressed"])])
    return rows


# ---------------------------------------------------------------------------
# Fixed text
# ---------------------------------------------------------------------------
HEADER = """\
<!--
This file is GENERATED by benchmarks/run.py (rendered by benchmarks/render.py)
from benchmarks/results/latest.json. Do not edit it by hand:
    python benchmarks/run.py --large
-->

# Performance

```{note}
This page is **generated, never typed**. One command measures everything and
rewrites it:

    python benchmarks/run.py --large

(`python benchmarks/run.py` without `--large` skips the out-of-core run;
`--quick` runs the "small" size in a few minutes; `--render-only`
re-renders the stored results in `benchmarks/results/latest.json`). Each
section says when, with which command and on which machine its numbers
were measured.
```

"""

SHARED_NOTE = """\
```{important}
The timings on this page were taken on a **shared 2-core machine**: other
work (test suites, builds of other engineers) ran at the same time, and the
load average when each section started is listed under "Machine and
versions". Wall times are therefore noisy and pessimistic; CPU times (all
threads of the measuring process) are given alongside and are less
affected. Ratios between the two sides were measured minutes apart, each
side in its own process.
```

"""

COMPARED = """\
## What is compared

* **reference**: `benchmarks/reference_workflow.py`, a faithful
  re-implementation of the reference notebook's computation, kept outside the
  package: numpy loops over positions, `np.isin` thresholding, whole arrays
  in memory, `change_dtype("float32")`, HyperSpy `rebin`, with the notebook's
  parameters: top 40 % of the 128 x 128 binned standard-deviation map with a
  central disk of radius 9 masked (beam centre from the synthetic scan's
  `beam_center`, since the notebook hard-coded `(62, 60)` for its own
  detector); EDS channels above the variance quantile that keeps the
  notebook's fraction of channels (its `0.012` kept 758 of 2,048, so the 63rd
  percentile); EDS x `exp(2.4)`, `RobustScaler`; UMAP densMAP
  `n_neighbors=10`, `min_dist=0`, `n_components=3`, `metric="chebyshev"` (the
  notebook's "replicate the paper" cell); HDBSCAN `min_cluster_size=100`,
  `min_samples=10`; labels = argmax of `all_points_membership_vectors`;
  cluster means and standard deviations over positions with membership
  exactly 1. One deliberate change: the notebook's `np.log(x, where=x != 0)`
  without `out=` returns uninitialised memory at zero counts; here
  `out=np.zeros_like(x)` makes it deterministic.
* **stemfuse_hs**: the defaults, `stemfuse_hs.fuse(dp, eds).cluster(random_state=0)`
  (timed as `sdt_features` + `variance_features`, then `fuse` of the two,
  which is what `fuse(dp, eds)` runs; in-memory data take the compiled
  kernels of `stemfuse_hs._kernels`), the clustering with its defaults (UMAP
  densMAP given exact neighbours, HDBSCAN, merge),
  cluster means and standard deviations by `labels.cluster_statistics(dp)`
  and `(eds)`. The two cluster means
  differ in work: the reference averages only the positions whose
  membership is exactly 1 (a few hundred, counted below each table);
  `cluster_statistics` (default `mode="membership"`) weights every position
  of the scan by its membership, a pass over the whole 4D array.
* Both on the same in-memory synthetic scan (`four_phases`, seed 0; four
  phases that neither modality separates alone, with thickness, bending,
  descan and low EDS counts), generated once per run and loaded by both,
  each side in its own process after a warm-up that compiles UMAP's and
  HDBSCAN's numba code. Both seed UMAP with 0 (which makes umap-learn
  single-threaded; stemfuse_hs's parallel layout, its default from 4,096
  fitted positions, runs on every thread, with the same result on any
  number of them). Peak memory is the process's resident set
  size sampled every 10 ms by a background thread (tracemalloc misses what
  numpy, BLAS, numba and dask threads allocate); the in-memory data is
  included.

"""

DISTRIBUTED_HOWTO = """\
### On a real cluster

Every dask computation of stemfuse_hs (feature extraction, fusion, cluster
statistics) runs on whatever dask scheduler is active; with a
`dask.distributed` `Client` that is the cluster. UMAP and HDBSCAN run in the
client process on the fused features (`n_positions x n_features` float32,
e.g. 1.8 GB for a 256 x 256 scan with the default features), so give that
process the memory, or cluster with `max_fit_positions` (below).

An existing scheduler:

```python
from distributed import Client
import hyperspy.api as hs
import stemfuse_hs

client = Client("tcp://scheduler:8786")
dp = hs.load("scan_4dstem.zspy", lazy=True)   # files every worker can read
eds = hs.load("scan_eds.zspy", lazy=True)
labels = stemfuse_hs.fuse(dp, eds).cluster(random_state=0)
```

A batch system through [dask-jobqueue](https://jobqueue.dask.org) (SLURM
here; PBS, SGE, LSF alike):

```python
from dask_jobqueue import SLURMCluster
from distributed import Client

cluster = SLURMCluster(cores=8, processes=2, memory="32GB", walltime="02:00:00")
cluster.scale(jobs=4)          # 4 jobs of 2 worker processes each
client = Client(cluster)
# ... the same code as above
```

From a terminal, `stemfuse run` takes `--scheduler ADDRESS` and runs its dask
computations on that scheduler:

```bash
stemfuse run scan_4dstem.zspy scan_eds.zspy --scheduler tcp://scheduler:8786
```

(see `stemfuse run --help`). The data must be stored in chunks the workers
can read independently (`.zspy`/zarr, or HDF5 on a shared file system),
chunked over scan positions with whole patterns in a chunk, e.g.
`dp.save("scan.zspy", chunks=(4, 64, 256, 256))`.

"""

SUBSAMPLE_TEXT = """\
For scans past about 200,000 positions (a 512 x 512 scan has 262,144), UMAP
and HDBSCAN are fitted on a random subsample and every position is assigned
(`FusedSTEMSignal.cluster(max_fit_positions=...)`, built on
{func}`stemfuse_hs.clustering.subsample.embed_and_cluster_subsample`): UMAP's
`transform` places each remaining position in the fitted embedding and
`hdbscan.membership_vector` (`hdbscan.prediction`) gives its soft
memberships, chunk by chunk (a dask matrix is read chunk by chunk, never
whole); labels are the argmax of the memberships; merging of indistinct
clusters is decided on the subsample and applied to all. umap-learn refuses
`transform` on a densMAP model, so new positions are placed by UMAP's
standard transform (neighbour-weighted start in the densMAP embedding, then
UMAP's layout refinement without the density term) on a copy of the fitted
model with `densmap=False`; the fitted positions keep their densMAP
coordinates. The numbers below compare it with the full fit on a scan small
enough for both to run.

"""

GPU_TEXT = """\
Nothing of the GPU path is measured on this page, and CI does not test it:
neither this machine nor CI has a GPU. The CPU path is the default
(`backend="cpu"`) and is what CI tests.

* `FusedSTEMSignal.cluster(backend="cuml")` (and `stemfuse run --backend
  cuml`) uses RAPIDS cuML when it is installed: `cuml.manifold.UMAP` for the
  embedding and `cuml.cluster.hdbscan.HDBSCAN(prediction_data=True)` with
  `cuml.cluster.hdbscan.all_points_membership_vectors` for the soft
  memberships; labels are their argmax and the merging of indistinct
  clusters runs on the CPU, as on the CPU path. Without cuML,
  `backend="cuml"` warns (with where to get RAPIDS) and clusters on the CPU;
  the backend that ran is recorded in `metadata.Clustering` (`backend`).
* **Supported**: `n_components`, `n_neighbors`, `min_dist`, `metric` (those
  cuML's UMAP knows), `random_state`; HDBSCAN's `min_cluster_size`,
  `min_samples`, `cluster_selection_epsilon`, `cluster_selection_method`
  ("eom" and "leaf"); soft memberships (cuML implements
  `all_points_membership_vectors`), so `min_membership` and the merging work
  as on the CPU.
* **Not supported: densMAP.** cuML's UMAP has no `densmap` parameter; with
  `densmap=True` (the default) the GPU backend warns and runs plain UMAP,
  recorded as `densmap=False`. Plain UMAP keeps each position's neighbours
  but not the local density: dense and diffuse phases come out about equally
  compact, so HDBSCAN's density-based clusters, its noise and the soft
  memberships can differ from the CPU's densMAP result (the method as
  published uses densMAP). The GPU map is a different embedding, not a
  faster copy of the CPU one.
* **Not supported: subsample-and-assign on the GPU.** The GPU backend fits
  every position (`max_fit_positions` is not used there). The principal
  components (`pca_components`) are computed on the CPU first, so only
  `n_positions x 50` float32 goes to the device.
* Results differ from the CPU's even without densMAP (different
  nearest-neighbour search and optimiser): a seed fixes a map only within one
  backend.

"""


#: What benchmarks/epochs.py wrote, one CSV per run.
EPOCHS_RESULTS = Path(__file__).with_name("results")


def render_epochs(folder):
    """Mean ARI, agreement, stability and seconds per size, call and epochs, from ``epochs_*.csv``."""
    rows = []
    for path in sorted(Path(folder).glob("epochs_*.csv")):
        with open(path, newline="") as handle:
            rows.extend(dict(row, run=path.name) for row in csv.DictReader(handle))
    if not rows:
        return "Not measured yet: `python benchmarks/epochs.py --csv benchmarks/results/epochs_tiny.csv`.\n"
    groups = {}
    for row in rows:
        groups.setdefault((row["run"], row["size"], row["call"], row["epochs"]), []).append(row)

    def order(key):
        run, size, call, epochs = key
        rank = ["tiny", "small", "published"].index(size) if size in ("tiny", "small", "published") else 9
        return rank, run, call, -(10**6) if epochs == "default" else -int(epochs)

    table = []
    for key in sorted(groups, key=order):
        chosen = groups[key]
        mean = {name: sum(float(r[name]) for r in chosen) / len(chosen) for name in ("ari", "agreement", "stability", "seconds")}
        scenarios = sorted({r["scenario"] for r in chosen})
        seeds = sorted({r["seed"] for r in chosen})
        table.append([
            key[0], key[1], key[2], "700 (umap-learn)" if key[3] == "default" else key[3],
            f"{len(scenarios)} ({', '.join(scenarios)})" if len(scenarios) <= 4 else str(len(scenarios)),
            ", ".join(seeds), f"{mean['ari']:.3f}", f"{mean['agreement']:.3f}", f"{mean['stability']:.3f}",
            f"{mean['seconds']:.1f}",
        ])
    text = (
        "UMAP's layout optimisation is most of the pipeline's time; `benchmarks/epochs.py` measures what fewer "
        "epochs cost. Means over the scenarios and seeds run: ARI against the phase truth, agreement (ARI) with "
        "the same call at umap-learn's default epochs, and stability (ARI between `random_state=seed` and "
        "`seed + 100`); each file is one run, so compare rows within a file. Seconds are wall time of the call and were measured on a shared machine: compare them "
        "within a row group only. `epochs_published_parallel.csv` was measured with the parallel layout, the "
        "others with umap-learn's. The default is 400 epochs for fits of 5,000 positions and more "
        "(`stemfuse_hs.clustering.embed.LAYOUT_EPOCHS = 400`; umap-learn's own choice beyond 10,000 "
        "positions): the means and the published-size scans hold at 400, while at 300 single scans lose "
        "(structure_only's `cluster()` at the published size); smaller fits keep umap-learn's 700 -- see the "
        "CSV files for every row.\n"
    )
    header = ["file", "size", "call", "epochs", "scenarios", "seeds", "ARI", "agreement", "stability", "seconds"]
    return text + "\n" + _table(header, table)


def render_page(results):
    parts = [HEADER, SHARED_NOTE if _shared(results) else ""]
    parts.append(_heading(2, "Targets and what was reached"))
    parts.append(
        "Targets from the performance issue (2-core machine); each verdict is computed from the measured numbers "
        "below. \"met on CPU time only\": the CPU-time ratio meets the target, the wall-time ratio does not.\n"
    )
    parts.append(_table(["target", "measured", "verdict"], targets(results)))
    sizes = _sizes(results)
    if sizes:
        parts.append(_heading(2, "Sizes"))
        parts.append(_table(["section", "size", "scan", "detector", "EDS channels", "diffraction data (GB)"], sizes))
    parts.append(COMPARED)
    side = results.get("side_by_side", {})
    parts.append(_heading(2, "Side by side with the reference"))
    if side:
        order = [s for s in ("published", "small", "tiny") if s in side] + [
            s for s in side if s not in ("published", "small", "tiny")
        ]
        for size in order:
            parts.append(render_side_by_side(side[size]))
    else:
        parts.append("Not measured yet: `python benchmarks/run.py`.\n")
    parts.append(_heading(2, "Layout epochs: quality against time"))
    parts.append(render_epochs(EPOCHS_RESULTS))
    parts.append(_heading(2, "Out of core"))
    if results.get("large"):
        parts.append(render_large(results["large"]))
    else:
        parts.append("Not measured yet: `python benchmarks/run.py --large`.\n")
    parts.append(_heading(2, "Distributed"))
    if results.get("distributed"):
        parts.append(render_distributed(results["distributed"]))
    else:
        parts.append("Not measured yet: `python benchmarks/run.py`.\n")
    parts.append(DISTRIBUTED_HOWTO)
    parts.append(_heading(2, "Beyond one embedding: subsample and assign"))
    parts.append(SUBSAMPLE_TEXT)
    for _, entry in sorted(results.get("subsample", {}).items()):
        parts.append(render_subsample(entry))
    parts.append(_heading(2, "GPU backend (RAPIDS cuML)"))
    parts.append(GPU_TEXT)
    parts.append(_heading(2, "Machine and versions"))
    seen = []
    named = [("side by side " + k, v) for k, v in side.items()]
    named += [("subsample " + k, v) for k, v in results.get("subsample", {}).items()]
    named += [("distributed", results.get("distributed")), ("out of core", results.get("large"))]
    for name, entry in named:
        if entry:
            parts.append(f"* {name}, {entry['date']}: {_machine(entry)}")
            seen.append(name)
    parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def _shared(results):
    """Whether any section started with other work on the machine (load average >= 0.5)."""
    for entry in [results.get("distributed"), results.get("large")] + list(results.get("subsample", {}).values()) + list(
        results.get("side_by_side", {}).values()
    ):
        if entry and entry.get("machine", {}).get("load_average"):
            if entry["machine"]["load_average"][0] >= 0.5:
                return True
    return False
