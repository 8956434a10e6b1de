"""Adjusted Rand index of stemfuse_hs against the ground truth, per scenario.

Compares, on the built-in synthetic scans (thickness, bending, descan, low
counts): the fused default pipeline, each modality alone (same defaults) and
the reference notebook's arithmetic (raw-intensity std, no normalisation,
EDS x exp(2.4), RobustScaler on the concatenation, min_cluster_size 100 of
7,500 positions, min_samples 10, HDBSCAN excess of mass, no merging).

Run::

    python benchmarks/ari_scenarios.py --size small --seeds 0 1 2
    python benchmarks/ari_scenarios.py --size tiny --seeds 0 1 2 --csv docs/ari_tiny.csv

The CSV is what the documentation's table shows: regenerate it, never type it.
"""

import argparse
import time

import numpy as np
from sklearn.metrics import adjusted_rand_score


def run(scenario, size, seed):
    import stemfuse_hs
    from stemfuse_hs.data import synthetic_scan

    scan = synthetic_scan(scenario, size=size, seed=seed)
    truth = scan.truth.ravel()

    def score(labels):
        return adjusted_rand_score(truth, np.asarray(labels.data).ravel())

    start = time.perf_counter()
    dp = stemfuse_hs.sdt_features(scan.dp)
    eds = stemfuse_hs.variance_features(scan.eds)
    fused = stemfuse_hs.fuse(dp, eds)
    row = {"fused": score(fused.cluster(random_state=seed))}
    row["seconds"] = time.perf_counter() - start
    row["diffraction"] = score(dp.cluster(random_state=seed))
    row["eds"] = score(eds.cluster(random_state=seed))
    reference = stemfuse_hs.fuse(
        stemfuse_hs.sdt_features(scan.dp, std_scale="linear", normalize=None),
        stemfuse_hs.variance_features(scan.eds, normalize=None),
        weighting="reference",
    )
    row["reference"] = score(
        reference.cluster(random_state=seed, min_cluster_size=100 / 7500, min_samples=10, merge_threshold=0, pca_components=None,
                                cluster_selection_method="eom")
    )
    row["weights"] = dict(zip(fused.metadata.Fusion.block_names, np.round(fused.metadata.Fusion.weights, 2)))
    return row


def main():
    import hyperspy.api as hs

    hs.preferences.General.show_progressbar = False
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--scenarios", nargs="+", default=["four_phases", "chemistry_only", "structure_only", "precipitates"]
    )
    parser.add_argument("--csv", help="also write the table as CSV to this file")
    args = parser.parse_args()
    rows = []
    print("| scenario | size | seed | fused | diffraction | EDS | reference | fused time (s) | block weights |")
    print("|---|---|---|---|---|---|---|---|---|")
    for scenario in args.scenarios:
        for seed in args.seeds:
            r = run(scenario, args.size, seed)
            rows.append([scenario, args.size, seed] + [f"{r[k]:.3f}" for k in ("fused", "diffraction", "eds", "reference")])
            print(
                f"| {scenario} | {args.size} | {seed} | {r['fused']:.3f} | {r['diffraction']:.3f} | {r['eds']:.3f} "
                f"| {r['reference']:.3f} | {r['seconds']:.1f} | {r['weights']} |",
                flush=True,
            )
    if args.csv:
        import csv

        with open(args.csv, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["scenario", "size", "seed", "fused", "diffraction alone", "EDS alone", "reference"])
            writer.writerows(rows)


if __name__ == "__main__":
    main()
