"""Phase-map quality, run-to-run stability and time against UMAP's layout epochs.

The layout optimisation is most of the pipeline's time (docs/performance.md),
so fewer epochs is the largest speed lever; this measures what it costs.
For every scenario, seed and number of epochs (``None``: umap-learn's
default, 700 with densMAP up to 10,000 positions) it records, for the fused
default ``cluster()`` and for :func:`stemfuse_hs.map_phases`:

- ``ari``: adjusted Rand index against the phase truth;
- ``agreement``: ARI against the same call with the default epochs (how
  much the map moves);
- ``stability``: ARI between ``random_state=seed`` and ``random_state=seed + 100``
  (run-to-run agreement at that number of epochs);
- ``seconds``: wall time of the call.

Run::

    python benchmarks/epochs.py --epochs 0 400 250 150 --seeds 0 1 --csv benchmarks/results/epochs_tiny.csv
    python benchmarks/epochs.py --size small --scenarios four_phases poly_chemistry --epochs 0 250

(``0`` stands for umap-learn's default.)
"""

import argparse
import csv
import time

import numpy as np
from sklearn.metrics import adjusted_rand_score


def _flat(labels):
    return np.asarray(labels.data).ravel()


def measure(scenario, size, seed, epochs_grid):
    """Rows of one scan: one per epochs value and call."""
    import importlib

    import stemfuse_hs

    embed = importlib.import_module("stemfuse_hs.clustering.embed")
    from stemfuse_hs.data import synthetic_scan

    scan = synthetic_scan(scenario, size=size, seed=seed)
    truth = scan.truth.ravel()
    fused = stemfuse_hs.fuse(stemfuse_hs.sdt_features(scan.dp), stemfuse_hs.variance_features(scan.eds))
    calls = {
        "cluster": lambda state: fused.cluster(random_state=state, show_progressbar=False),
        "map_phases": lambda state: stemfuse_hs.map_phases(scan.dp, scan.eds, random_state=state, show_progressbar=False),
    }
    rows, default = [], {}
    saved = embed.LAYOUT_EPOCHS, embed.LAYOUT_EPOCHS_MIN_POSITIONS
    embed.LAYOUT_EPOCHS_MIN_POSITIONS = 0  # the epochs asked for, at every size
    try:
        for epochs in epochs_grid:
            embed.LAYOUT_EPOCHS = epochs or None
            for call, run in calls.items():
                start = time.perf_counter()
                labels = _flat(run(seed))
                seconds = time.perf_counter() - start
                other = _flat(run(seed + 100))
                default.setdefault(call, labels)
                rows.append(
                    {
                        "scenario": scenario,
                        "size": size,
                        "seed": seed,
                        "epochs": epochs or "default",
                        "call": call,
                        "ari": round(adjusted_rand_score(truth, labels), 4),
                        "agreement": round(adjusted_rand_score(default[call], labels), 4),
                        "stability": round(adjusted_rand_score(labels, other), 4),
                        "seconds": round(seconds, 2),
                    }
                )
                print(rows[-1], flush=True)
    finally:
        embed.LAYOUT_EPOCHS, embed.LAYOUT_EPOCHS_MIN_POSITIONS = saved
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    from stemfuse_hs.data import SCENARIOS

    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", nargs="+", type=int, default=[0, 400, 250, 150])
    parser.add_argument("--csv", default=None)
    args = parser.parse_args(argv)
    rows = []
    for scenario in args.scenarios:
        for seed in args.seeds:
            rows.extend(measure(scenario, args.size, seed, args.epochs))
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    for epochs in dict.fromkeys(row["epochs"] for row in rows):
        for call in ("cluster", "map_phases"):
            chosen = [row for row in rows if row["epochs"] == epochs and row["call"] == call]
            means = {key: np.mean([row[key] for row in chosen]) for key in ("ari", "agreement", "stability", "seconds")}
            print(f"epochs={epochs!s:>7} {call:>10}: " + ", ".join(f"{k} {v:.3f}" for k, v in means.items()))


if __name__ == "__main__":
    main()
