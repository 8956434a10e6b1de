"""The clustering parameter spec is the one home of every clustering default and constraint."""

import dataclasses
import inspect
import re

import numpy as np
import pytest

import stemfuse_hs
from stemfuse_hs import cli
from stemfuse_hs.cluster_parameters import (
    CLUSTER_DEFAULTS,
    CLUSTER_PARAMETERS,
    ClusterParameters,
    cluster_parameters_doc,
    validate_cluster_parameters,
)
from stemfuse_hs.clustering.scan import cluster_scan
from stemfuse_hs.signals.features import FusedSTEMSignal


def test_signature_cli_and_subsample_defaults_are_the_spec():
    signature = inspect.signature(FusedSTEMSignal.cluster).parameters
    keywords = {n: p.default for n, p in signature.items() if p.kind is p.KEYWORD_ONLY and n != "show_progressbar"}
    cli_defaults = {o.name: o.default for o in cli.OPTIONS if o.section == "clustering"}
    assert list(keywords) == list(CLUSTER_PARAMETERS)
    assert keywords == dict(CLUSTER_DEFAULTS) == cli_defaults
    assert cli.default_parameters()["clustering"] == dict(CLUSTER_DEFAULTS)
    assert dict(ClusterParameters().__dict__) == dict(CLUSTER_DEFAULTS)
    from stemfuse_hs.clustering.subsample import DEFAULT_HDBSCAN, DEFAULT_UMAP, embed_and_cluster_subsample

    assert {**DEFAULT_UMAP, **DEFAULT_HDBSCAN}.items() <= CLUSTER_DEFAULTS.items()
    sub = inspect.signature(embed_and_cluster_subsample).parameters
    for name in ("merge_threshold", "min_membership", "pca_components", "random_state", "n_jobs"):
        assert sub[name].default == CLUSTER_DEFAULTS[name], name
    choices = {o.name: tuple(o.choices) for o in cli.OPTIONS if o.section == "clustering" and o.choices}
    assert choices == {n: p.choices for n, p in CLUSTER_PARAMETERS.items() if p.choices}


def test_the_spec_is_read_only():
    with pytest.raises(TypeError):
        CLUSTER_PARAMETERS["merge_threshold"] = None
    with pytest.raises(TypeError):
        CLUSTER_DEFAULTS["merge_threshold"] = 0.3
    with pytest.raises(dataclasses.FrozenInstanceError):
        CLUSTER_PARAMETERS["merge_threshold"].default = 0.3
    params = validate_cluster_parameters()
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.merge_threshold = 0.3


def test_validation_converts_and_names_what_is_wrong():
    params = validate_cluster_parameters(n_neighbors=np.int64(12), min_dist=0, min_cluster_size=np.int64(40))
    assert (params.n_neighbors, params.min_dist, params.min_cluster_size) == (12, 0.0, 40)
    assert type(params.n_neighbors) is int and type(params.min_dist) is float
    with pytest.raises(TypeError, match=re.escape(
        "unknown clustering parameter(s) ['n_neighbours']; see stemfuse_hs.cluster_parameters.CLUSTER_PARAMETERS."
    )):
        validate_cluster_parameters(n_neighbours=12)
    with pytest.raises(TypeError, match=re.escape(
        "cluster_selection_method must be one of ['leaf', 'eom'], got None."
    )):
        validate_cluster_parameters(cluster_selection_method=None)
    with pytest.raises(ValueError, match=re.escape("merge_threshold must be <= 1, got 2.")):
        validate_cluster_parameters(merge_threshold=2)


def test_cluster_scan_checks_the_parameters_before_reading_the_features():
    class Unreadable:
        shape, ndim = (30, 4), 2

        def __array__(self, *args, **kwargs):
            raise AssertionError("the features were read")

    with pytest.raises(ValueError, match=re.escape("n_neighbors must be >= 2, got 1.")):
        cluster_scan(Unreadable(), {"n_neighbors": 1}, scan_shape=(30,))
    with pytest.raises(ValueError, match=re.escape("n_neighbors=40 needs more positions than that; the scan has 30.")):
        cluster_scan(Unreadable(), {"n_neighbors": 40}, scan_shape=(30,))


def test_sensitivity_rejects_a_name_not_in_the_spec():
    fused = FusedSTEMSignal(np.zeros((4, 5, 3), np.float32))
    from stemfuse_hs.signals.stability import FUSION_PARAMETERS

    allowed = sorted(set(FUSION_PARAMETERS) | set(CLUSTER_PARAMETERS))
    message = (
        "param_grid: 'n_neighbours' is not a parameter of the feature extraction, the fusion weights or "
        f"cluster; allowed: {allowed}."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        stemfuse_hs.sensitivity(fused, {"n_neighbours": [5, 10]})


def test_docstrings_carry_the_spec_prose():
    entries = cluster_parameters_doc()
    assert "        " + entries.splitlines()[0] in FusedSTEMSignal.cluster.__doc__
    for name, p in CLUSTER_PARAMETERS.items():
        assert f"{name} : {p.type_text()}" in FusedSTEMSignal.cluster.__doc__
        for function in (stemfuse_hs.stability, stemfuse_hs.sensitivity, stemfuse_hs.map_phases):
            assert f"``{name}`` ({p.default!r}): {p.doc}" in function.__doc__, (function.__name__, name)
    assert "{cluster" not in cluster_scan.__doc__
