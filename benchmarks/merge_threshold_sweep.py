"""Adjusted Rand index of the fused map against the truth for several merge thresholds.

Clusters every scenario once per seed with merging off (HDBSCAN leaf
clusters, the package's defaults otherwise) and applies
:func:`stemfuse_hs.clustering.merge_indistinct` at each threshold to the
same clusters, so the thresholds are compared on identical embeddings.
This is how the default ``merge_threshold`` was chosen; the docs include
the CSV it writes::

    python benchmarks/merge_threshold_sweep.py --seeds 0 1 2 3 4 --csv docs/merge_sweep.csv
"""

import argparse
import csv
import warnings

import numpy as np
from sklearn.metrics import adjusted_rand_score

import stemfuse_hs
from stemfuse_hs.clustering.cluster import ClusterResult, merge_indistinct
from stemfuse_hs.clustering.embed_and_cluster import cluster_features
from stemfuse_hs.cluster_parameters import validate_cluster_parameters
from stemfuse_hs.data import SCENARIOS, synthetic_scan

THRESHOLDS = (0.45, 0.5, 0.55, 0.6, 0.65)


def sweep(scenario, size, seed, thresholds):
    scan = synthetic_scan(scenario, size=size, seed=seed)
    fused = stemfuse_hs.fuse(scan.dp, scan.eds, show_progressbar=False)
    matrix = np.asarray(fused.data).reshape(-1, fused.data.shape[-1])
    unmerged, _ = cluster_features(matrix, validate_cluster_parameters(merge_threshold=0, random_state=seed))
    scores = []
    for threshold in thresholds:
        copy = ClusterResult(unmerged.labels, unmerged.memberships, dict(unmerged.parameters))
        merged = merge_indistinct(copy, matrix, threshold=threshold)
        scores.append(adjusted_rand_score(scan.truth.ravel(), merged.labels))
    return scores


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--csv", help="write the per-scenario means and minima as CSV to this file")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    rows = []
    for scenario in SCENARIOS:
        scores = np.array([sweep(scenario, args.size, seed, THRESHOLDS) for seed in args.seeds])
        for label, values in (("mean", scores.mean(axis=0)), ("min", scores.min(axis=0))):
            rows.append([scenario, label] + [f"{v:.3f}" for v in values])
            print(scenario, label, " ".join(f"{v:.3f}" for v in values), flush=True)
        rows.append(None)
        rows[-1] = ("_all", scores)
    everything = np.vstack([r[1] for r in rows if r[0] == "_all"])
    table = [r for r in rows if r[0] != "_all"]
    table.append(["all scenarios", "mean"] + [f"{v:.3f}" for v in everything.mean(axis=0)])
    print("all mean", " ".join(f"{v:.3f}" for v in everything.mean(axis=0)))
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["scenario", f"over seeds {' '.join(map(str, args.seeds))}"] + [f"{t:g}" for t in THRESHOLDS])
            writer.writerows(table)


if __name__ == "__main__":
    main()
