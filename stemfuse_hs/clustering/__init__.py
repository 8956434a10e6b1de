"""Embedding, clustering and cluster statistics on numpy/dask arrays.

One stage a module: :mod:`.scan` (a scan's feature matrix to its label
map's arrays: :func:`cluster_scan`, what ``FusedSTEMSignal.cluster`` runs),
:mod:`.embed_and_cluster` (UMAP, HDBSCAN and the merge on one matrix),
:mod:`.embed` (with :mod:`.layout`, UMAP's layout on every thread),
:mod:`.cluster`, :mod:`.subsample`, :mod:`.separability`
(density valleys and the per-block separation of clusters), :mod:`.means`,
:mod:`.stability`, :mod:`.phases`, :mod:`.grains` (segments split into grains judged by
their lattice) and :mod:`.indexing` (ring-ratio indexing
of spot spacings). The parameters, their defaults and
their constraints are :mod:`stemfuse_hs.cluster_parameters`.
"""

from ..cluster_parameters import CLUSTER_DEFAULTS, CLUSTER_PARAMETERS, METRICS, validate_cluster_parameters
from .cluster import ClusterResult, merge_indistinct, resolve_min_cluster_size, soft_cluster
from .embed import embed
from .means import MEAN_MODES, cluster_statistics, cluster_weights, interior_weights
from .scan import cluster_scan
from .separability import block_separation, separation, valley_depth
from .stability import LabelAgreement, adjusted_rand_index, align_labels, align_runs, consensus_labels
from .stability import contingency_table, label_agreement, pairwise_ari, rescale_blocks

__all__ = [
    "CLUSTER_DEFAULTS",
    "CLUSTER_PARAMETERS",
    "METRICS",
    "MEAN_MODES",
    "ClusterResult",
    "LabelAgreement",
    "adjusted_rand_index",
    "align_labels",
    "align_runs",
    "block_separation",
    "cluster_scan",
    "cluster_statistics",
    "cluster_weights",
    "consensus_labels",
    "contingency_table",
    "embed",
    "interior_weights",
    "label_agreement",
    "merge_indistinct",
    "pairwise_ari",
    "rescale_blocks",
    "resolve_min_cluster_size",
    "separation",
    "soft_cluster",
    "validate_cluster_parameters",
    "valley_depth",
]
