"""The signal extractors take their options, defaults and prose from the array cores."""

import inspect

import pytest

import stemfuse_hs
from stemfuse_hs._docstrings import parameter_entries
from stemfuse_hs.features import annular, binarize, cepstrum, line_intensities, radial, sdt, variance_threshold
from stemfuse_hs.signals import extract

#: Every signal extractor, its array core and what the signal supplies instead of the caller.
EXTRACTORS = [
    (extract.sdt_features, sdt, ()),
    (extract.variance_features, variance_threshold, ("energies", "resolution_mnka")),
    (extract.radial_features, radial, ()),
    (extract.annular_features, annular, ()),
    (extract.cepstrum_features, cepstrum, ()),
    (extract.binary_features, binarize, ()),
    (extract.line_features, line_intensities, ("energies", "lines", "resolution_mnka")),
]


@pytest.mark.parametrize("wrapper, core, supplied", EXTRACTORS, ids=lambda x: getattr(x, "__name__", ""))
def test_signal_extractor_has_the_core_keywords_with_the_core_defaults(wrapper, core, supplied):
    public = inspect.signature(wrapper).parameters
    for name, parameter in inspect.signature(core).parameters.items():
        if name in supplied or name == "data":
            assert name not in public or name == "lines"
            continue
        assert public[name].default == parameter.default, name
        assert public[name].kind is inspect.Parameter.KEYWORD_ONLY
    assert list(public)[0] == "signal" and list(public)[-1] == "show_progressbar"


@pytest.mark.parametrize("wrapper, core, supplied", EXTRACTORS, ids=lambda x: getattr(x, "__name__", ""))
def test_signal_extractor_documents_every_parameter_once_in_signature_order(wrapper, core, supplied):
    documented = [name for names, _ in parameter_entries(wrapper.__doc__) for name in names]
    assert documented == list(inspect.signature(wrapper).parameters)
    assert "%(" not in wrapper.__doc__


def test_an_unknown_option_is_refused_as_python_refuses_it(four_phases):
    with pytest.raises(TypeError, match=r"^sdt_features\(\) got an unexpected keyword argument 'fractoin'$"):
        stemfuse_hs.sdt_features(four_phases.dp, fractoin=0.3)


def test_options_left_out_get_the_core_defaults(four_phases):
    features = stemfuse_hs.radial_features(four_phases.dp)
    parameters = features.metadata.Features.parameters
    assert parameters.binning == inspect.signature(radial).parameters["binning"].default
    assert parameters.variance is False
