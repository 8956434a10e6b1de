"""How well can the polycrystals be mapped at all? Two ceilings from the true grains.

For each polycrystal scenario (tiny, the given seeds) this scores, against
the phase truth:

* ``merge of true grains``: :meth:`ClusterLabels.merge_phases
  <stemfuse_hs.signals.labels.ClusterLabels.merge_phases>` (the package's
  composition and lattice tests, defaults) given the TRUE grain map as its
  segments, one segment per grain. A perfect segmentation, then today's
  merge: what the merge alone can do.
* ``ideal by spacings (X %)``: an observer that knows every grain, the
  reflections the renderer lights in it (``structures[grain]["g"]``, each at
  least once in the grain) and every phase's composition. A grain is
  decided when its composition differs from every other phase's, or when
  one of its reflections has a spacing that no other phase of its
  composition shows anywhere in the scan (farther than X % from all of
  them); the undecided grains of one composition all go to one phase. Any
  method that tells phases by their lattice spacings (as the package's
  lattice test does) can do no better; angles between reflections and
  intensities are not used, so methods using them could.
* ``undecidable share``: the share of positions in undecided grains.

Run::

    python benchmarks/information_ceiling.py --seeds 0 1 2 3 4 --csv docs/information_ceiling.csv

About 5 s per scan on 2 cores (one fused ``cluster()`` makes the label
signal that carries the true grains).
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.metrics import adjusted_rand_score

POLY = ("poly_chemistry", "poly_structure", "poly_four_phases", "poly_hcp", "poly_minor_phase", "poly_precipitates")


def ideal_by_spacings(scan, rtol):
    """The spacing-only ideal observer's phase map (see the module docstring) and its undecided share."""
    gen = scan._gen  # the renderer: every grain's phase and lit reflections
    truth, grains = scan.truth.ravel(), scan.grains.ravel()
    compositions = [tuple(sorted(definition[2].items())) for definition in gen.phase_defs]
    radii = [np.unique(np.hypot(*gen.structures[g]["g"].T)) for g in range(len(gen.grain_phase))]
    by_phase = {}
    for g, phase in enumerate(gen.grain_phase):
        by_phase.setdefault(int(phase), []).append(radii[g])
    ideal, undecided = truth.copy(), 0
    for g, phase in enumerate(gen.grain_phase):
        phase = int(phase)
        rivals = [q for q in range(len(compositions)) if q != phase and compositions[q] == compositions[phase]]
        if not rivals:
            continue
        other = np.concatenate([r for q in rivals for r in by_phase.get(q, [])] or [np.zeros(0)])
        unique = [x for x in radii[g] if other.size == 0 or np.min(np.abs(other - x)) > rtol * x]
        if not unique:
            ideal[grains == g] = min([phase] + rivals)
            undecided += int(np.count_nonzero(grains == g))
    return ideal, undecided / grains.size


def merge_of_true_grains(scan):
    """The package's phase merge with the true grain map as its segments."""
    import stemfuse_hs
    from stemfuse_hs.signals.label_factory import relabel_cluster_labels

    grains = scan.grains.ravel()
    carrier = stemfuse_hs.fuse(scan.dp, scan.eds, show_progressbar=False).cluster(
        random_state=0, merge_threshold=0, show_progressbar=False
    )
    k = int(grains.max()) + 1
    one_hot = np.zeros((grains.size, k), np.float32)
    one_hot[np.arange(grains.size), grains] = 1
    segments = relabel_cluster_labels(carrier, grains, one_hot)
    return np.asarray(segments.merge_phases(scan.dp, scan.eds, show_progressbar=False).data).ravel()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--scenarios", nargs="+", default=list(POLY))
    parser.add_argument("--tolerances", type=float, nargs="+", default=[0.015, 0.025], help="relative spacing resolutions")
    parser.add_argument("--csv", help="write the per-scenario means (minimum over seeds in brackets) here")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    import hyperspy.api as hs

    from stemfuse_hs.data import synthetic_scan

    hs.preferences.General.show_progressbar = False
    columns = ["merge of true grains"] + [f"ideal by spacings ({100 * t:g} %)" for t in args.tolerances]
    columns += [f"undecidable share ({100 * t:g} %)" for t in args.tolerances]
    rows = []
    for scenario in args.scenarios:
        values = []
        for seed in args.seeds:
            start = time.perf_counter()
            scan = synthetic_scan(scenario, size="tiny", seed=seed)
            truth = scan.truth.ravel()
            scores = [adjusted_rand_score(truth, merge_of_true_grains(scan))]
            shares = []
            for tolerance in args.tolerances:
                ideal, share = ideal_by_spacings(scan, tolerance)
                scores.append(adjusted_rand_score(truth, ideal))
                shares.append(share)
            values.append(scores + shares)
            print(scenario, seed, " ".join(f"{c}={v:.2f}" for c, v in zip(columns, scores + shares)),
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
        values = np.array(values)
        rows.append([scenario, len(args.seeds)] + [f"{m:.2f} ({lo:.2f})" for m, lo in zip(values.mean(0), values.min(0))])
    header = ["scenario", "seeds"] + columns
    print("\n" + " | ".join(header))
    for row in rows:
        print(" | ".join(str(v) for v in row))
    if args.csv:
        import csv

        with open(args.csv, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)


if __name__ == "__main__":
    main()
