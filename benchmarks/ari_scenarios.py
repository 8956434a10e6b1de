"""Adjusted Rand index of stemfuse_hs against the ground truth, per scenario.

Compares, on the built-in synthetic scans (thickness, bending, descan, low
counts): the phase map of :func:`stemfuse_hs.map_phases` (fused segments
joined into phases by composition and lattice), the fused default
``cluster()``, each modality alone (same defaults) and
the reference notebook's arithmetic (raw-intensity std, no normalisation,
EDS x exp(2.4), RobustScaler on the concatenation, min_cluster_size 100 of
7,500 positions, min_samples 10, HDBSCAN excess of mass, no merging).

Every map is scored against the PHASE map (``scan.truth``), the number the
pipeline should maximise, and against the GRAIN map (``scan.grains``): on the
polycrystal scenarios a map that follows orientations rather than phases
scores higher on the grains than on the phases. For the phase map the grain
column scores its segment map (``phases.segments``), the second level of
the result, and ``segment ceiling`` scores its segments each labelled with
its majority phase: the most any merge of those segments could reach
(ground truth enters only this benchmark). ``clusters`` is the number
of clusters each map found (noise excluded), to compare with the number of
phases.

Run::

    python benchmarks/ari_scenarios.py                     # all scenarios, tiny, seed 0
    python benchmarks/ari_scenarios.py --scenarios poly --seeds 0 1 --no-reference
    python benchmarks/ari_scenarios.py --size small --seeds 0 1 2
    python benchmarks/ari_scenarios.py --seeds 0 1 2 3 4 --csv docs/ari_tiny.csv --summary-csv docs/ari_summary.csv

``--scenarios`` takes scenario names, ``poly`` (the polycrystals) or
``sections`` (the fixed zone-axis scenarios). The CSV is what the
documentation's table shows: regenerate it, never type it.
"""

import argparse
import time

import numpy as np
from sklearn.metrics import adjusted_rand_score

MODES = ("phase_map", "fused", "diffraction", "eds", "reference")


def _n_clusters(labels):
    values = np.unique(np.asarray(labels.data))
    return int(np.count_nonzero(values >= 0))


def run(scenario, size, seed, reference=True):
    """Scores of one scan: ARI vs phases and grains, clusters, time, weights."""
    import stemfuse_hs
    from stemfuse_hs.data import synthetic_scan

    scan = synthetic_scan(scenario, size=size, seed=seed)
    truth = scan.truth.ravel()
    grains = scan.grains.ravel()
    row = {"phases": len(scan.phases), "grains": len(scan.grain_phases)}

    def score(name, labels):
        flat = np.asarray(labels.data).ravel()
        row[name] = adjusted_rand_score(truth, flat)
        row[name + "_grains"] = adjusted_rand_score(grains, flat)
        row[name + "_clusters"] = _n_clusters(labels)

    start = time.perf_counter()
    phases = stemfuse_hs.map_phases(scan.dp, scan.eds, random_state=seed)
    row["phase_map_seconds"] = time.perf_counter() - start
    score("phase_map", phases)
    segments = np.asarray(phases.segments.data).ravel()
    row["phase_map_grains"] = adjusted_rand_score(grains, segments)
    row["phase_map_segments"] = _n_clusters(phases.segments)
    row["segment_ceiling"] = adjusted_rand_score(truth, segment_ceiling(segments, truth))

    start = time.perf_counter()
    dp = stemfuse_hs.sdt_features(scan.dp)
    eds = stemfuse_hs.variance_features(scan.eds)
    fused = stemfuse_hs.fuse(dp, eds)
    score("fused", fused.cluster(random_state=seed))
    row["seconds"] = time.perf_counter() - start
    score("diffraction", dp.cluster(random_state=seed))
    score("eds", eds.cluster(random_state=seed))
    if reference:
        ref = stemfuse_hs.fuse(
            stemfuse_hs.sdt_features(scan.dp, std_scale="linear", normalize=None),
            stemfuse_hs.variance_features(scan.eds, normalize=None),
            weighting="reference",
        )
        score(
            "reference",
            ref.cluster(
                random_state=seed,
                min_cluster_size=100 / 7500,
                min_samples=10,
                merge_threshold=0,
                pca_components=None,
                cluster_selection_method="eom",
            ),
        )
    row["weights"] = dict(
        zip(fused.metadata.Fusion.block_names, (round(float(w), 2) for w in fused.metadata.Fusion.weights))
    )
    return row


def segment_ceiling(segments, truth):
    """Every segment labelled with the phase most of its positions belong to.

    The best phase map any merge of these segments can give (it still
    scores below 1 where a segment mixes phases): the ceiling that the
    segmentation sets on the physics merge.
    """
    out = np.full(segments.shape, -1)
    for segment in np.unique(segments[segments >= 0]):
        inside = segments == segment
        out[inside] = np.bincount(truth[inside]).argmax()
    return out


def _scenarios(names):
    from stemfuse_hs.data import POLY_SCENARIOS, SCENARIOS

    out = []
    for name in names:
        if name == "poly":
            out += list(POLY_SCENARIOS)
        elif name == "sections":
            out += [s for s in SCENARIOS if s not in POLY_SCENARIOS]
        elif name == "all":
            out += list(SCENARIOS)
        elif name in SCENARIOS:
            out.append(name)
        else:
            raise SystemExit(f"unknown scenario {name!r}; known: poly, sections, all, {', '.join(SCENARIOS)}")
    return list(dict.fromkeys(out))


def _cell(row, mode):
    if mode not in row:
        return "-"
    return f"{row[mode]:.3f} / {row[mode + '_grains']:.3f} ({row[mode + '_clusters']})"


def main():
    import hyperspy.api as hs

    hs.preferences.General.show_progressbar = False
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--scenarios", nargs="+", default=["all"],
                        help="scenario names, 'poly', 'sections' or 'all' (default)")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the reference-notebook pipeline (saves a quarter of the time)")
    parser.add_argument("--csv", help="also write the table as CSV to this file")
    parser.add_argument("--summary-csv", help="also write the mean and minimum over seeds per scenario here")
    parser.add_argument("--summarize", metavar="CSV",
                        help="only write --summary-csv from a CSV this script wrote (no clustering)")
    args = parser.parse_args()
    if args.summarize:
        summarize(args.summarize, args.summary_csv)
        return
    modes = MODES[:-1] if args.no_reference else MODES
    rows = []
    print("Cells: ARI vs phases / ARI vs grains (clusters found).")
    print("| scenario | size | seed | phases | grains | " + " | ".join(modes)
          + " | phase map time (s) | fused time (s) | block weights |")
    print("|---" * (8 + len(modes)) + "|")
    for scenario in _scenarios(args.scenarios):
        for seed in args.seeds:
            r = run(scenario, args.size, seed, reference=not args.no_reference)
            rows.append(
                [scenario, seed, r["phases"]]
                + [f"{r[m]:.2f}" if m in r else "" for m in modes]
                + [r["phase_map_clusters"], r["phase_map_segments"], r["grains"], f"{r['phase_map_grains']:.2f}",
                   f"{r['segment_ceiling']:.2f}", f"{r['phase_map_seconds']:.1f}", f"{r['seconds']:.1f}"]
            )
            print(
                f"| {scenario} | {args.size} | {seed} | {r['phases']} | {r['grains']} | "
                + " | ".join(_cell(r, m) for m in modes)
                + f" | {r['phase_map_seconds']:.1f} | {r['seconds']:.1f} | {r['weights']} | ceiling {r['segment_ceiling']:.2f} |",
                flush=True,
            )
    if args.csv:
        import csv

        names = {"phase_map": "phase map", "fused": "fused cluster()", "diffraction": "diffraction alone",
                 "eds": "EDS alone", "reference": "reference"}
        with open(args.csv, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                ["scenario", "seed", "phases"]
                + [names[m] for m in modes]
                + ["phases found", "segments", "grains", "segments vs grains", "segment ceiling", "phase map (s)",
                   "fused cluster() (s)"]
            )
            writer.writerows(rows)
        if args.summary_csv:
            summarize(args.csv, args.summary_csv)


def summarize(per_seed_csv, summary_csv):
    """Mean (minimum) over seeds of every ARI column, per scenario; the last row over all scenarios."""
    import csv

    with open(per_seed_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    modes = [m for m in ("phase map", "fused cluster()", "diffraction alone", "EDS alone", "reference") if m in rows[0]]
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    better = "better single modality"
    out = []
    for scenario in scenarios:
        mine = [r for r in rows if r["scenario"] == scenario]
        cells = {"scenario": scenario, "seeds": len(mine)}
        for mode in modes:
            values = np.array([float(r[mode]) for r in mine])
            cells[mode] = f"{values.mean():.2f} ({values.min():.2f})"
        single = np.array([max(float(r["diffraction alone"]), float(r["EDS alone"])) for r in mine])
        cells[better] = f"{single.mean():.2f} ({single.min():.2f})"
        cells["segments vs grains"] = f"{np.mean([float(r['segments vs grains']) for r in mine]):.2f}"
        if "segment ceiling" in mine[0]:
            ceiling = np.array([float(r["segment ceiling"]) for r in mine])
            cells["segment ceiling"] = f"{ceiling.mean():.2f} ({ceiling.min():.2f})"
        cells["phase map (s)"] = f"{np.mean([float(r['phase map (s)']) for r in mine]):.1f}"
        cells["fused cluster() (s)"] = f"{np.mean([float(r['fused cluster() (s)']) for r in mine]):.1f}"
        out.append(cells)
    header = ["scenario", "seeds"] + modes + [better, "segments vs grains"]
    header += ["segment ceiling"] * ("segment ceiling" in rows[0]) + ["phase map (s)", "fused cluster() (s)"]
    with open(summary_csv, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(out)


if __name__ == "__main__":
    main()
