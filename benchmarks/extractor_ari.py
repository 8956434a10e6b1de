"""ARI of every feature extractor alone on the synthetic scans (docs/extractors.rst).

Writes ``docs/extractors_ari.csv``: one row per extractor, one column per
case, the adjusted Rand index of ``features.cluster(random_state=0)`` against
the ground truth (binary features with ``metric="jaccard"``). Cases: the
``structure_only`` and ``four_phases`` scans, ``chemistry_only`` at ten
times the default dose (at the default dose no EDS extractor separates its
compositions position by position), and "textured": ``chemistry_only``'s
single-crystal patterns with domain 1 replaced by their rotational average
(same spacings, continuous instead of four-fold symmetry; see
tests/features/test_extractors.py). Diffraction extractors are not run on EDS and
vice versa ("-").

Every extractor is clustered with ``merge_threshold=0.6`` (MERGE_THRESHOLD
below): one modality's features alone keep thickness pieces of a phase
apart at the fused pipeline's default 0.55 (radial features on
structure_only: 4 clusters, ARI 0.55 at 0.55; 2 clusters, ARI 0.85 at 0.6),
see docs/merge_sweep.csv for how the fused default was chosen.

Run: ``python benchmarks/extractor_ari.py`` (tiny scans, a few minutes on 2 cores).
"""

import csv
import pathlib
import sys
import warnings

from sklearn.metrics import adjusted_rand_score

import stemfuse_hs
from stemfuse_hs.data import synthetic_scan

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE.parent / "docs" / "extractors_ari.csv"
sys.path.insert(0, str(HERE.parent / "tests"))

from test_extractors import MERGE_THRESHOLD, textured_dp  # noqa: E402  (one definition of each)

DIFFRACTION = [
    ("sdt_features", {}, {}),
    ("radial_features", {}, {}),
    ("radial_features(variance=True)", {"variance": True}, {}),
    ("annular_features", {}, {}),
    ("cepstrum_features(fraction=0.4)", {"fraction": 0.4}, {}),
    ("binary_features (jaccard)", {}, {"metric": "jaccard"}),
]
SPECTRAL = [
    ("variance_features", {}, {}),
    ("line_features", {}, {}),
]


def score(features, truth, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = features.cluster(random_state=0, merge_threshold=MERGE_THRESHOLD, show_progressbar=False, **kwargs)
    return adjusted_rand_score(truth.ravel(), labels.data.ravel())


def main():
    structure = synthetic_scan("structure_only", size="tiny")
    four = synthetic_scan("four_phases", size="tiny")
    chemistry = synthetic_scan("chemistry_only", size="tiny", dose=10.0)
    textured, textured_truth = textured_dp()
    cases = {
        "structure_only": (structure.dp, structure.eds, structure.truth),
        "textured": (textured, None, textured_truth),
        "chemistry_only (dose 10)": (chemistry.dp, chemistry.eds, chemistry.truth),
        "four_phases": (four.dp, four.eds, four.truth),
    }
    rows = []
    for kind, table in (("dp", DIFFRACTION), ("eds", SPECTRAL)):
        for label, kwargs, cluster_kwargs in table:
            function = getattr(stemfuse_hs, label.split("(")[0].split(" ")[0])
            row = {"extractor": label}
            for case, (dp, eds, truth) in cases.items():
                signal = dp if kind == "dp" else eds
                if signal is None:
                    row[case] = "-"
                    continue
                row[case] = f"{score(function(signal, **kwargs), truth, **cluster_kwargs):.2f}"
                print(label, case, row[case], flush=True)
            rows.append(row)
    with open(OUT, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["extractor", *cases])
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
