"""Embedding, clustering and cluster statistics on numpy/dask arrays.

Modules, one stage each: :mod:`.parameters` (every clustering parameter
once), :mod:`.scan` (a scan's feature matrix to labels: the array-level
:func:`cluster_scan`), :mod:`.embed_and_cluster` (UMAP then HDBSCAN and the
merge on a matrix), :mod:`.embed`, :mod:`.cluster`, :mod:`.subsample`,
:mod:`.separation` (valley and block statistics), :mod:`.means`,
:mod:`.stability` and :mod:`.phases`.

Names are loaded on first use (as the package's own), so that
``stemfuse_hs.clustering.parameters`` can be read by the ``stemfuse``
command without importing numpy.
"""

import importlib

_LAZY = {
    "ClusterResult": "cluster",
    "merge_indistinct": "cluster",
    "resolve_min_cluster_size": "cluster",
    "soft_cluster": "cluster",
    "separation": "separation",
    "valley_depth": "separation",
    "block_separation": "separation",
    "METRICS": "parameters",
    "CLUSTER_PARAMETERS": "parameters",
    "CLUSTER_DEFAULTS": "parameters",
    "ClusterParameters": "parameters",
    "validate_cluster_parameters": "parameters",
    "cluster_scan": "scan",
    "embed": "embed",
    "MEAN_MODES": "means",
    "cluster_statistics": "means",
    "cluster_weights": "means",
    "LabelAgreement": "stability",
    "adjusted_rand_index": "stability",
    "align_labels": "stability",
    "align_runs": "stability",
    "consensus_labels": "stability",
    "contingency_table": "stability",
    "label_agreement": "stability",
    "pairwise_ari": "stability",
    "rescale_blocks": "stability",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
