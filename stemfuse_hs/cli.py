"""The ``stemfuse`` command: phase maps from paired 4D-STEM and STEM-EDS files.

::

    stemfuse demo [--out DIR] [--scenario NAME] [--size SIZE]
    stemfuse run DP_FILE EDS_FILE [--out DIR] [--params FILE] [options]
    stemfuse report DIR

``demo`` and ``run`` extract features from both scans, fuse them, cluster
the fused features and write the results and a self-contained HTML report to
an output folder; ``report`` rebuilds the report from such a folder.

Only the standard library is imported at module level: HyperSpy, pyxem, UMAP
and HDBSCAN take seconds to import, and ``stemfuse --help`` should not wait
for them. Everything heavy is imported inside the command functions.
"""

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

__all__ = [
    "CLIError",
    "OPTIONS",
    "SECTIONS",
    "build_parser",
    "default_parameters",
    "load_params_file",
    "main",
    "resolve_parameters",
]

PROG = "stemfuse"

#: Synthetic scenarios and sizes the demo offers (sizes that fit in memory).
DEMO_SCENARIOS = (
    "chemistry_only",
    "structure_only",
    "four_phases",
    "precipitates",
    "poly_chemistry",
    "poly_structure",
    "poly_four_phases",
    "poly_hcp",
    "poly_minor_phase",
    "poly_precipitates",
)
DEMO_SIZES = ("tiny", "small", "published")

#: Parameter sections: the function each one configures.
SECTIONS = {
    "diffraction": "stemfuse_hs.sdt_features",
    "eds": "stemfuse_hs.variance_features",
    "fusion": "stemfuse_hs.fuse",
    "clustering": "FusedSTEMSignal.cluster",
    "statistics": "ClusterLabels.cluster_statistics",
    "phases": "stemfuse_hs.merge_phases",
    "phase_map": "stemfuse_hs.map_phases",
}
#: Sections of a parameter file that are not function parameters.
_RECORD_SECTIONS = {"inputs", "demo", "command", "stemfuse_version", "format"}
_PARAMS_FORMAT = 1


class CLIError(Exception):
    """A problem the user can fix (bad input, existing output, bad parameter)."""


# --------------------------------------------------------------------------
# Option specifications
# --------------------------------------------------------------------------
# One table drives the argparse options, parameter files and params.json,
# so the three cannot drift apart. The clustering options come from the
# clustering parameter spec (standard library only); the other defaults
# repeat the package's (the package cannot be imported for --help without a
# slow start); tests/test_cli.py checks them against the function signatures.


class _Option:
    """One pipeline parameter: its section, Python name, flag and kind."""

    def __init__(self, section, name, flag, default, help, kind, *, choices=None, metavar=None):
        self.section, self.name, self.flag = section, name, flag
        self.default, self.help, self.kind = default, help, kind
        self.choices, self.metavar = choices, metavar

    @property
    def dest(self):
        return f"{self.section}.{self.name}"


def _opt(*args, **kwargs):
    return _Option(*args, **kwargs)


def _clustering_options():
    """The ``[clustering]`` options, one per entry of the clustering parameter spec.

    :data:`stemfuse_hs.cluster_parameters.CLUSTER_PARAMETERS` holds their
    defaults, choices and help (standard library only, so ``--help`` stays
    fast); the flag is the name with dashes.
    """
    from .cluster_parameters import CLUSTER_PARAMETERS

    kinds = {"int": "int", "seed": "int", "n_jobs": "int", "real": "float", "fraction": "float"}
    options = []
    for p in CLUSTER_PARAMETERS.values():
        kind = kinds.get(p.kind, p.kind)
        if p.optional and kind in ("int", "float"):
            kind = "opt" + kind
        options.append(
            _opt("clustering", p.name, "--" + p.name.replace("_", "-"), p.default, p.doc, kind,
                 choices=p.choices or None, metavar=p.metavar)
        )
    return options


def _input_options(section, prefix, item, items):
    """``normalize`` and ``nan_policy``: the options both extractors take for their input.

    ``prefix`` starts the flags (``--dp-normalize``); ``item`` and ``items``
    name one position's data and several in the help ("pattern", "patterns").
    """
    return [
        _opt(section, "normalize", f"--{prefix}-normalize", "total",
             f"scale every {item} to the scan's mean total counts before feature extraction", "choice",
             choices=("total", "none")),
        _opt(section, "nan_policy", f"--{prefix}-nan-policy", "raise",
             f"{items} holding NaN or inf: refuse the data (raise) or leave those positions out, labelled -1 "
             "(exclude)", "choice", choices=("raise", "exclude")),
    ]


OPTIONS = [
    # -- sdt_features --
    _opt("diffraction", "binning", "--binning", 2, "detector binning: sums N x N pixels", "int", metavar="N"),
    _opt("diffraction", "fraction", "--fraction", 0.4,
         "fraction of the detector pixels outside the direct beam kept as features, in (0, 1]; "
         "0.2-0.4 is the method's stable range", "float", metavar="F"),
    _opt("diffraction", "std_scale", "--std-scale", "log",
         "rank pixels by the standard deviation of log-scaled or raw intensities", "choice",
         choices=("log", "linear")),
    _opt("diffraction", "beam_centre", "--beam-centre", None,
         "direct-beam (row, column) in unbinned detector pixels (default: found from the mean pattern)",
         "pair", metavar=("ROW", "COL")),
    _opt("diffraction", "beam_radius", "--beam-radius", None,
         "radius of the excluded direct-beam disk in unbinned pixels, 0 excludes nothing "
         "(default: found from the mean pattern)", "optfloat", metavar="R"),
    *_input_options("diffraction", "dp", "pattern", "patterns"),
    # -- variance_features --
    _opt("eds", "threshold", "--eds-threshold", None,
         "keep EDS channels whose variance over the scan exceeds this "
         "(default: four standard errors above Poisson noise)", "optfloat", metavar="V"),
    _opt("eds", "quantile", "--eds-quantile", None,
         "instead of a threshold, keep channels above this quantile of the channel variances, in (0, 1) "
         "(default: none, use the threshold)",
         "optfloat", metavar="Q"),
    _opt("eds", "exclude_windows", "--exclude-window", (),
         "energy window (keV) never kept; repeat the option for several windows", "windows",
         metavar=("LOW", "HIGH")),
    _opt("eds", "exclude_lines", "--exclude-lines", (),
         "X-ray lines never kept, e.g. Cu_Ka Cu_La for grid signal", "strings", metavar="LINE"),
    *_input_options("eds", "eds", "spectrum", "spectra"),
    # -- fuse --
    _opt("fusion", "weighting", "--weighting", "auto",
         "block weighting: 'auto' weights each modality by how clearly it separates phases, "
         "'equal' gives both the same weight, 'reference' reproduces the reference notebook", "choice",
         choices=("auto", "equal", "reference")),
    _opt("fusion", "weights", "--weights", None,
         "weights of the diffraction and EDS blocks, replacing the automatic ones (default: automatic)",
         "pair", metavar=("W_DP", "W_EDS")),
    _opt("fusion", "reference_factor", "--reference-factor", 2.4,
         "EDS multiplier exponent for --weighting reference", "float", metavar="X"),
    _opt("fusion", "max_samples", "--max-samples", 10_000,
         "positions used for the scaling statistics", "int", metavar="N"),
    _opt("fusion", "nan_policy", "--fusion-nan-policy", "raise",
         "feature signals holding NaN or inf: refuse them (raise) or leave those positions out (exclude)",
         "choice", choices=("raise", "exclude")),
    # -- cluster: every option from the one parameter spec --
    *_clustering_options(),
    # -- merge_phases / map_phases --
    _opt("phase_map", "method", "--phase-merge", "physics",
         "how clusters become phases: by composition and lattice from the raw signals (physics: the map "
         "nests its segment map; --merge-threshold does not apply) or by density valleys in feature space "
         "(feature, with --merge-threshold)", "choice", choices=("physics", "feature")),
    _opt("phase_map", "segment_size", "--segment-size", None,
         "smallest segment of the physics merge (its HDBSCAN min cluster size, in place of --min-cluster-size): "
         "a count or a fraction (default: 2 % of the scan, at most 40 positions)", "optcount_or_fraction",
         metavar="N|F"),
    _opt("phase_map", "minor_cluster_size", "--minor-cluster-size", 8,
         "smallest cluster of the finer map searched for minor phases: a count or a fraction; "
         "none skips the search", "optcount_or_fraction", metavar="N|F"),
    _opt("phase_map", "grain_threshold", "--grain-threshold", 5.0,
         "when the scan indexes two lattices, split segments into grains where joining two parts costs this "
         "many median distances of neighbouring patterns, and move a grain whose interior shows the other "
         "lattice than its phase to the phase of its composition with that lattice (a grain no lattice explains "
         "is split again at half the threshold); none skips it",
         "optshare", metavar="T"),
    _opt("phase_map", "min_grain_log_ratio", "--min-grain-log-ratio", 10.0,
         "in the grain step (also with one lattice indexed), move a grain whose pooled counts are this natural log "
         "of a likelihood ratio likelier under a phase of another composition, then such a patch of positions "
         "whose 3 x 3 neighbourhoods count like it; none skips both",
         "optshare", metavar="L"),
    _opt("phase_map", "min_position_log_ratio", "--min-position-log-ratio", 20.0,
         "last, move a position whose own counts are this natural log of a likelihood ratio likelier under "
         "a phase of another composition (a large value such as 1e9 moves none)", "float", metavar="L"),
    _opt("phase_map", "max_unmixed_share", "--max-unmixed-share", 0.2,
         "very last, unmix phases covering at most this share of the scan from their host position by position "
         "when they hold elements the host lacks (a precipitate's halo goes back to the matrix; where the phase "
         "pooled its particles' halos, each small particle's positions are judged together by a fitted disk); "
         "none skips it",
         "optshare", metavar="F"),
    _opt("phase_map", "boundary_margin", "--boundary-margin", 2.0,
         "finally, move a position at a boundary between two phases whose sides diffract differently to the "
         "side its pattern is mostly made of, when its share there is past one half by this many standard "
         "errors; none skips it", "optshare", metavar="Z"),
    _opt("phases", "exclude_lines", "--phase-exclude-lines", ("Cu_Ka", "Cu_Kb", "Cu_La"),
         "X-ray lines left out of the composition test (a grid signal, which does not follow the thickness)",
         "strings", metavar="LINE"),
    _opt("phases", "alpha", "--phase-alpha", 1e-3,
         "significance of the composition test (G-test of the pooled counts)", "float", metavar="A"),
    _opt("phases", "min_composition_difference", "--min-composition-difference", 0.03,
         "smallest total-variation distance of two normalised spectra, above the noise, that is another composition",
         "float", metavar="D"),
    _opt("phases", "min_lattice_overlap", "--min-lattice-overlap", 0.6,
         "share of Bragg-spot spacings two segments must share to be one lattice", "float", metavar="F"),
    _opt("phases", "min_spacings", "--min-spacings", 3,
         "segments with fewer Bragg-spot spacings never keep two groups apart by their lattice; raise it "
         "when the phases share one lattice and differ in composition", "int", metavar="N"),
    _opt("phases", "lattice_linkage", "--lattice-linkage", "average",
         "two groups of segments stay apart by their lattices when their member pairs' spacing overlaps "
         "average below --min-lattice-overlap (average) or when any one pair's does (complete)",
         "choice", choices=("average", "complete")),
    _opt("phases", "lattice_witnesses", "--lattice-witnesses", True,
         "let a segment of another composition that shows most spacings of two groups of one composition "
         "witness that they are one lattice", "bool"),
    _opt("phases", "spacing_tolerance", "--spacing-tolerance", None,
         "spot spacings closer than this (detector pixels) are the same (default: from the beam size)",
         "optfloat", metavar="PX"),
    _opt("phases", "min_judged_fraction", "--min-judged-fraction", 0.02,
         "segments smaller than this share of the scan never keep two groups apart by their lattice",
         "float", metavar="F"),
    _opt("phases", "index_lattice", "--index-lattice", True,
         "index the Bragg-spot spacings two segments show as one cubic lattice (F or I); when they index, "
         "segments of that lattice are never kept apart by their lattice", "bool"),
    _opt("phases", "reassign", "--reassign", True,
         "move positions whose counts are far likelier under another phase's composition", "bool"),
    _opt("phases", "min_log_ratio", "--min-log-ratio", 3.0,
         "natural log of the likelihood ratio that moves a position", "float", metavar="L"),
    _opt("phases", "pool_width", "--pool-width", 3,
         "side of the square of scan positions whose pooled counts decide a move (odd; 1: the position alone)",
         "int", metavar="N"),
    # -- cluster_statistics --
    _opt("statistics", "mode", "--stats-mode", "membership",
         "cluster means weighted by membership, or over the positions sure of their cluster ('hard')",
         "choice", choices=("membership", "hard")),
    _opt("statistics", "min_membership", "--stats-min-membership", 0.5,
         "largest membership a position needs to count for --stats-mode hard", "float", metavar="M"),
]
_BY_DEST = {o.dest: o for o in OPTIONS}
_BY_SECTION = {s: {o.name: o for o in OPTIONS if o.section == s} for s in SECTIONS}

#: Where the demo's defaults differ from the package's: a fixed seed so that
#: the demo's map (and its adjusted Rand index) is the same on every machine.
_DEMO_DEFAULTS = {"clustering.random_state": 0}

_DEMO_OPTIONS = {
    "scenario": ("four_phases", "synthetic scenario: " + ", ".join(DEMO_SCENARIOS)),
    "size": ("tiny", "synthetic data size: " + ", ".join(DEMO_SIZES)),
    "seed": (0, "seed of the synthetic data"),
}


def default_parameters(command="run"):
    """Every pipeline parameter's default, by section.

    Parameters
    ----------
    command : {"run", "demo"}, default "run"
        The demo fixes ``clustering.random_state`` to 0.

    Returns
    -------
    dict
        ``{section: {name: value}}`` for the sections in :data:`SECTIONS`
        (and ``"demo"`` for the demo).
    """
    params = {s: {} for s in SECTIONS}
    for o in OPTIONS:
        value = o.default
        if command == "demo":
            value = _DEMO_DEFAULTS.get(o.dest, value)
        params[o.section][o.name] = _plain(value)
    if command == "demo":
        params["demo"] = {k: v[0] for k, v in _DEMO_OPTIONS.items()}
    return params


def _plain(value):
    """JSON-friendly copy: tuples become lists."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------
# Value conversion (command line and parameter files)
# --------------------------------------------------------------------------
_NONE_WORDS = {"none", "null", "auto", ""}


def _parse_optional(convert):
    def parse(text):
        if text.strip().lower() in _NONE_WORDS:
            return None
        return convert(text)

    parse.__name__ = convert.__name__
    return parse


def _count_or_fraction(text):
    """``"50"`` -> 50 (a count), ``"0.02"`` -> 0.02 (a fraction)."""
    text = str(text).strip()
    try:
        return int(text)
    except ValueError:
        return float(text)


_count_or_fraction.__name__ = "count or fraction"


def _argparse_type(option):
    return {
        "int": int,
        "float": float,
        "optfloat": _parse_optional(float),
        "optint": _parse_optional(int),
        "count_or_fraction": _count_or_fraction,
        "optcount_or_fraction": _parse_optional(_count_or_fraction),
        "optshare": _parse_optional(float),
        "pair": float,
        "windows": float,
        "strings": str,
        "choice": str,
    }.get(option.kind)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _convert_file_value(option, value, source):
    """A parameter file's value as the pipeline wants it, or a clear CLIError."""
    where = f"{source}: [{option.section}] {option.name}"

    def fail(expected):
        raise CLIError(f"{where}: expected {expected}, got {value!r}.")

    if isinstance(value, str) and option.kind not in ("choice", "strings"):
        if value.strip().lower() in _NONE_WORDS and (
            option.default is None or option.kind in ("optcount_or_fraction", "optshare")
        ):
            return None
        if option.kind in ("int", "optint", "float", "optfloat", "optshare", "count_or_fraction", "optcount_or_fraction"):
            try:
                value = _count_or_fraction(value)
            except ValueError:
                fail("an integer" if option.kind in ("int", "optint") else "a number")
    kind = option.kind
    if value is None:
        if kind in ("optcount_or_fraction", "optshare"):
            return None  # minor_cluster_size, max_unmixed_share, boundary_margin: null skips the step
        if kind == "choice" and "none" in option.choices:
            return None  # e.g. normalize: null means no normalisation
        return _plain(option.default)
    if kind in ("int", "optint"):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            fail("an integer")
        return value
    if kind in ("float", "optfloat", "optshare"):
        if not _is_number(value):
            fail("a number")
        return float(value)
    if kind in ("count_or_fraction", "optcount_or_fraction"):
        if not _is_number(value):
            fail("an integer count or a decimal fraction")
        return value
    if kind == "bool":
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "false", "no", "off"):
            return value.lower() in ("true", "yes", "on")
        if not isinstance(value, bool):
            fail("true or false")
        return value
    if kind == "choice":
        text = str(value).lower() if value is not None else "none"
        if text not in option.choices:
            fail("one of " + ", ".join(option.choices))
        return None if text == "none" else text
    if kind == "pair":
        if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(map(_is_number, value)):
            fail("two numbers")
        return [float(v) for v in value]
    if kind == "windows":
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_is_number, value)):
            value = [value]  # one window given flat: [low, high]
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(w, (list, tuple)) and len(w) == 2 and all(map(_is_number, w)) for w in value
        ):
            fail("a list of [low, high] energy windows")
        return [[float(a), float(b)] for a, b in value]
    if kind == "strings":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            fail("a list of X-ray line names")
        return list(value)
    raise AssertionError(kind)


def _convert_cli_value(option, value):
    if option.kind == "choice":
        return None if value == "none" else value
    if option.kind == "windows":
        return [[float(a), float(b)] for a, b in value]
    if option.kind in ("pair", "strings"):
        return list(value)
    return value


# --------------------------------------------------------------------------
# Parameter files
# --------------------------------------------------------------------------
def load_params_file(path):
    """Read a TOML, YAML or JSON parameter file and check its contents.

    The file holds one table (mapping) per section of :data:`SECTIONS`, e.g.
    ``[diffraction]`` with ``fraction = 0.3``; parameters left out keep their
    defaults. ``params.json`` written by a run is such a file, with the
    extra ``inputs`` (or ``demo``) record.

    Parameters
    ----------
    path : str or pathlib.Path
        ``.toml``, ``.yaml``/``.yml`` or ``.json``.

    Returns
    -------
    dict
        ``{section: {name: value}}`` with values converted and checked,
        plus ``inputs`` (paths resolved against the file's folder) and
        ``demo`` when present.

    Raises
    ------
    CLIError
        Unreadable file, unknown section or parameter, or a value of the
        wrong kind.
    """
    path = Path(path)
    if not path.is_file():
        raise CLIError(f"parameter file '{path}' does not exist.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                try:
                    import tomli as tomllib
                except ModuleNotFoundError:
                    raise CLIError("reading TOML needs Python 3.11 or the 'tomli' package.") from None
            with open(path, "rb") as f:
                data = tomllib.load(f)
        elif suffix in (".yaml", ".yml"):
            import yaml

            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f) or {}
        elif suffix == ".json":
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        else:
            raise CLIError(f"parameter file '{path}': unknown type '{suffix}' (use .toml, .yaml or .json).")
    except CLIError:
        raise
    except Exception as exc:
        raise CLIError(f"cannot parse parameter file '{path}': {_one_line(exc)}") from exc
    if not isinstance(data, dict):
        raise CLIError(f"parameter file '{path}' must hold sections of parameters, not {type(data).__name__}.")
    result = {}
    for key, content in data.items():
        if key in _RECORD_SECTIONS:
            if key == "inputs" and isinstance(content, dict):
                result["inputs"] = {
                    role: str((path.parent / str(p)).resolve()) if p else None
                    for role, p in content.items()
                    if role in ("dp", "eds")
                }
            elif key == "demo" and isinstance(content, dict):
                unknown = set(content) - set(_DEMO_OPTIONS)
                if unknown:
                    raise CLIError(f"{path.name}: [demo] has unknown keys {sorted(unknown)}; allowed: {sorted(_DEMO_OPTIONS)}.")
                result["demo"] = dict(content)
            continue
        if key not in SECTIONS:
            owner = [s for s, opts in _BY_SECTION.items() if key in opts]
            if owner:
                raise CLIError(f"{path.name}: '{key}' must be inside a section, e.g. [{owner[0]}].")
            raise CLIError(
                f"{path.name}: unknown section '{key}'; sections are {', '.join(SECTIONS)} "
                "(each a table of parameters)."
            )
        if not isinstance(content, dict):
            raise CLIError(f"{path.name}: section '{key}' must be a table of parameters.")
        options = _BY_SECTION[key]
        section = {}
        for name, value in content.items():
            if name not in options:
                import difflib

                close = difflib.get_close_matches(str(name), list(options), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else f"; known: {', '.join(options)}"
                raise CLIError(f"{path.name}: [{key}] has no parameter '{name}'{hint}.")
            section[name] = _convert_file_value(options[name], value, path.name)
        result[key] = section
    return result


def resolve_parameters(args, command):
    """Defaults, then the parameter file, then the command line.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed command line; pipeline options not given are absent.
    command : {"run", "demo"}

    Returns
    -------
    dict
        ``{section: {name: value}}``, plus ``inputs`` (run) or ``demo``.
    """
    params = default_parameters(command)
    from_file = load_params_file(args.params) if getattr(args, "params", None) else {}
    for section in SECTIONS:
        params[section].update(from_file.get(section, {}))
    given = vars(args)
    for dest, value in given.items():
        if dest in _BY_DEST:
            option = _BY_DEST[dest]
            params[option.section][option.name] = _convert_cli_value(option, value)
    if command == "demo":
        params["demo"].update(from_file.get("demo", {}))
        for key in _DEMO_OPTIONS:
            if given.get(key) is not None:
                params["demo"][key] = given[key]
    else:
        inputs = dict(from_file.get("inputs", {}))
        for role in ("dp", "eds"):
            if given.get(role):
                inputs[role] = given[role]
        params["inputs"] = inputs
    return params


# --------------------------------------------------------------------------
# Argument parser
# --------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (with a pointer to --help)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=34)


def _default_text(option, command):
    value = _DEMO_DEFAULTS.get(option.dest, option.default) if command == "demo" else option.default
    if option.kind == "bool":
        return "on" if value else "off"
    if value is None:
        return None  # the help text says what happens by default
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value)) if value else "none"
    return str(value)


def _add_pipeline_options(parser, command):
    sections = {
        "diffraction": "diffraction features (stemfuse_hs.sdt_features)",
        "eds": "EDS features (stemfuse_hs.variance_features)",
        "fusion": "fusion (stemfuse_hs.fuse)",
        "clustering": "clustering: UMAP and HDBSCAN (FusedSTEMSignal.cluster)",
        "statistics": "cluster means and standard deviations (ClusterLabels.cluster_statistics)",
        "phase_map": "phase map (stemfuse_hs.map_phases)",
        "phases": "segments joined into phases by composition and lattice (stemfuse_hs.merge_phases)",
    }
    for section, title in sections.items():
        group = parser.add_argument_group(title)
        for o in (o for o in OPTIONS if o.section == section):
            default = _default_text(o, command)
            help_text = o.help
            if default is not None and "(default:" not in help_text:
                help_text += f" (default: {default})"
            kwargs = {"dest": o.dest, "default": argparse.SUPPRESS, "help": help_text.replace("%", "%%")}
            if o.kind == "bool":
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["type"] = _argparse_type(o)
                if o.metavar:
                    kwargs["metavar"] = o.metavar
                if o.choices:
                    kwargs["choices"] = o.choices
                if o.kind == "pair":
                    kwargs["nargs"] = 2
                elif o.kind == "windows":
                    kwargs.update(nargs=2, action="append")
                elif o.kind == "strings":
                    # "*": an empty list is a choice too (--phase-exclude-lines with no line)
                    kwargs["nargs"] = "*" if o.default else "+"
            group.add_argument(o.flag, **kwargs)


def _add_common_options(parser, *, out_default=None):
    group = parser.add_argument_group("output and behaviour")
    if out_default is not None:
        group.add_argument(
            "-o", "--out", default=out_default, metavar="DIR",
            help=f"output folder; must not exist or be empty unless --overwrite (default: ./{out_default})",
        )
        group.add_argument(
            "--params", metavar="FILE",
            help="parameter file (.toml, .yaml or .json, e.g. a previous run's params.json) with one "
            "table per section: diffraction, eds, fusion, clustering, statistics; options given on "
            "the command line override it (default: none)",
        )
        group.add_argument(
            "--overwrite", action="store_true",
            help="replace the results of an earlier run in the output folder (default: off)",
        )
        group.add_argument(
            "--dry-run", action="store_true",
            help="check the inputs and parameters, print the resolved parameters as JSON and stop "
            "(default: off)",
        )
    group.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
        help="no progress bars or stage messages; the summary is still printed (default: off)",
    )
    group.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS,
        help="show tracebacks and all warnings on failure (default: off)",
    )
    return group


_DESCRIPTION = """\
Phase mapping by fusing 4D-STEM and STEM-EDS scans of the same area.

Diffraction features (standard-deviation thresholding) and EDS features
(variance thresholding) are fused and clustered (UMAP + HDBSCAN with soft
memberships). Results, figures and a self-contained report.html are
written to an output folder.
"""

_EPILOG = """\
examples:
  stemfuse demo                          synthetic data, whole pipeline, report
  stemfuse run dp.hspy eds.hspy --out results --fraction 0.3 --random-state 0
  stemfuse run dp.zspy eds.zspy --params params.toml --exclude-lines Cu_Ka Cu_La
  stemfuse run --params results/params.json --out rerun
  stemfuse report results                rebuild results/report.html

Run 'stemfuse COMMAND --help' for the options of a command.
"""

_PARAMS_EPILOG = """\
parameter files (--params) hold one table per section, for example params.toml:

  [diffraction]
  fraction = 0.3
  [eds]
  exclude_lines = ["Cu_Ka", "Cu_La"]
  exclude_windows = [[7.9, 8.1]]
  [clustering]
  random_state = 0

Leave a parameter out for its default. Command-line options override the file.
"""


def _wrap(text):
    import textwrap

    return textwrap.fill(text, width=min(100, max(40, _terminal_width() - 2)))


def _terminal_width():
    import shutil

    return shutil.get_terminal_size().columns


def _add_command(commands, name, func, *, help, description, **kwargs):
    """The parser of subcommand ``name``, which runs ``func(args)``; ``description`` is wrapped."""
    parser = commands.add_parser(name, help=help, description=_wrap(description), formatter_class=_Formatter, **kwargs)
    parser.set_defaults(func=func)
    return parser


def build_parser():
    """The ``stemfuse`` argument parser (subcommands ``demo``, ``run``, ``report``).

    Returns
    -------
    argparse.ArgumentParser
    """
    from . import __version__

    parser = _Parser(prog=PROG, description=_DESCRIPTION, epilog=_EPILOG, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s (stemfuse_hs) {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or stage messages (default: off)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and all warnings (default: off)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    demo = _add_command(
        commands, "demo", _cmd_demo,
        help="run the whole pipeline on built-in synthetic data with known phases",
        description="Generate a synthetic paired 4D-STEM / STEM-EDS scan with known phases, run the "
        "whole pipeline on it and write the results and report.html; the adjusted Rand index of the "
        "map against the ground truth is printed and reported. Pipeline options as for 'run'; the "
        "demo's --random-state defaults to 0 so that its map is repeatable.",
        epilog=_PARAMS_EPILOG,
    )
    group = demo.add_argument_group("synthetic data")
    demo_kwargs = {"scenario": dict(choices=DEMO_SCENARIOS), "size": dict(choices=DEMO_SIZES),
                   "seed": dict(type=int, metavar="N")}
    for name, (default, help_text) in _DEMO_OPTIONS.items():
        group.add_argument(f"--{name}", default=argparse.SUPPRESS, help=f"{help_text} (default: {default})",
                           **demo_kwargs[name])
    _add_common_options(demo, out_default="stemfuse-demo")
    _add_pipeline_options(demo, "demo")

    run = _add_command(
        commands, "run", _cmd_run,
        help="map the phases of a 4D-STEM file and an EDS file of the same scan",
        description="Map the phases of a 4D-STEM file and a STEM-EDS file of the same scan: any "
        "format HyperSpy/RosettaSciIO reads (.hspy, .zspy, ...), opened lazily, so files larger "
        "than memory work.",
        epilog=_PARAMS_EPILOG,
    )
    run.add_argument("dp", nargs="?", metavar="DP_FILE",
                     help="4D-STEM data (signal dimension 2); optional when --params names it")
    run.add_argument("eds", nargs="?", metavar="EDS_FILE",
                     help="STEM-EDS spectrum image (signal dimension 1); optional when --params names it")
    _add_common_options(run, out_default="stemfuse-results").add_argument(
        "--scheduler", metavar="ADDRESS",
        help="run the dask computations on this dask.distributed scheduler, e.g. tcp://host:8786 "
        "(needs the 'distributed' package; default: local threads)",
    )
    _add_pipeline_options(run, "run")

    report = _add_command(
        commands, "report", _cmd_report,
        help="rebuild report.html (and the figures) from a results folder",
        description="Rebuild the figures and report.html from the results a 'demo' or 'run' wrote "
        "to DIR (the report and figures are replaced, the results are not touched).",
    )
    report.add_argument("dir", metavar="DIR", help="results folder of an earlier demo or run")
    _add_common_options(report)
    return parser


# --------------------------------------------------------------------------
# Console output
# --------------------------------------------------------------------------
def _one_line(exc):
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class _Console:
    """Stage messages and timings; silent with --quiet."""

    def __init__(self, quiet):
        self.quiet = quiet
        self.timings = {}

    def note(self, message):
        if not self.quiet:
            print(f"{PROG}: {message}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def stage(self, name, message=None):
        self.note(f"{message or name} ...")
        start = time.perf_counter()
        # dask's progress bar writes to stdout; stdout is kept for the summary.
        with contextlib.redirect_stdout(sys.stderr):
            yield
        self.timings[name] = round(time.perf_counter() - start, 3)


def _configure_warnings(debug):
    import logging
    import warnings

    if debug:
        return
    # Library deprecation notices mean nothing to a command-line user.
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", message=r".*[Dd]eprecat.*")

    def show(message, category, filename, lineno, file=None, line=None):
        if "Deprecation" in category.__name__:
            return  # e.g. HyperSpy's VisibleDeprecationWarning, a UserWarning
        print(f"{PROG}: warning: {' '.join(str(message).split())}", file=sys.stderr)

    warnings.showwarning = show
    for name in ("hyperspy", "rsciio", "exspy", "pyxem"):
        logging.getLogger(name).setLevel(logging.ERROR)


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------
def main(argv=None):
    """Run the ``stemfuse`` command.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 1 on an error (a one-line message on
        stderr; the traceback too with ``--debug``), 2 on a usage error,
        130 when interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.quiet = bool(getattr(args, "quiet", False))
    args.debug = bool(getattr(args, "debug", False))
    if args.command is None:
        parser.print_help()
        return 2
    _configure_warnings(args.debug)
    previous = _terminate_as_interrupt()
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # Output piped into e.g. `head`, which stopped reading: not an error of ours.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")
        return 1
    except KeyboardInterrupt as exc:
        if args.debug:
            raise
        terminated = isinstance(exc, _Terminated)
        print(f"{PROG}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    except Exception as exc:
        if args.debug:
            raise
        message = _one_line(exc)
        if not isinstance(exc, (CLIError, ValueError, TypeError, OSError)):
            message = f"{type(exc).__name__}: {message} (run with --debug for the traceback)"
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that a run cleans up as on Ctrl-C."""


def _terminate_as_interrupt():
    """Make SIGTERM raise :class:`_Terminated`; returns the previous handler (None if not set).

    By default SIGTERM ends Python without unwinding: no ``finally`` runs,
    and a run's staging folder would be left behind.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None  # signal handlers can only be set from the main thread

    def handler(signum, frame):
        raise _Terminated()

    return signal.signal(signal.SIGTERM, handler)


def _cmd_demo(args):
    params = resolve_parameters(args, "demo")
    demo = params["demo"]
    if demo["scenario"] not in DEMO_SCENARIOS:
        raise CLIError(f"demo scenario {demo['scenario']!r} is not one of {', '.join(DEMO_SCENARIOS)}.")
    if demo["size"] not in DEMO_SIZES:
        raise CLIError(f"demo size {demo['size']!r} is not one of {', '.join(DEMO_SIZES)}.")
    if isinstance(demo["seed"], bool) or not isinstance(demo["seed"], int) or demo["seed"] < 0:
        raise CLIError(f"demo seed must be a non-negative integer, got {demo['seed']!r}.")
    if args.dry_run:
        _print_params(params, "demo")
        return 0
    console = _Console(args.quiet)
    out = Path(args.out)
    staging = _prepare_output(out, args.overwrite)
    try:
        with _numba_warm_up() as warm_up:
            labels, scan, record = _demo_pipeline(demo, params, staging, console, args, warm_up)
        from sklearn.metrics import adjusted_rand_score

        ari = float(adjusted_rand_score(scan.truth.ravel(), labels.data.ravel()))
        record["adjusted_rand_index"] = ari
        from . import report as report_module

        scan.truth_signal().save(staging / report_module.TRUTH_FILE, overwrite=True)
        _finish(staging, params, record, console, "demo", args, name=out.resolve().name)
        _publish(staging, out, args.overwrite)
    except BaseException:
        _cleanup(staging)
        raise
    _print_summary(out)
    return 0


#: The signal type of pyxem's Diffraction2D: the demo's patterns are a plain
#: Signal2D (no pyxem import), but their cluster means are saved as before,
#: so that ``hs.load`` gives Diffraction2D.
_DEMO_SAVED_SIGNAL_TYPES = {"dp": "diffraction"}


def _demo_pipeline(demo, params, out, console, args, warm_up=None):
    """Generate the synthetic scan and run the pipeline on it."""
    message = f"generating the synthetic '{demo['scenario']}' scan ({demo['size']})"
    with console.stage("synthetic data", message):
        from .data import synthetic_scan

        # HyperSpy's Signal2D, not pyxem's Diffraction2D: the pipeline uses no pyxem method,
        # and importing pyxem costs 5 s (minutes while numba compiles it on a fresh install).
        scan = synthetic_scan(
            demo["scenario"], size=demo["size"], seed=int(demo["seed"]), lazy=False, diffraction_class="hyperspy"
        )
    record = {
        "demo": {
            "scenario": scan.scenario,
            "size": scan.size,
            "seed": scan.seed,
            "phases": list(scan.phases),
            "description": scan.description,
            "scan_shape": list(scan.truth.shape),
        },
        "inputs": [],
    }
    labels = _pipeline(
        scan.dp, scan.eds, params, out, console, record, show_progressbar=not args.quiet,
        saved_signal_types=_DEMO_SAVED_SIGNAL_TYPES, warm_up=warm_up,
    )
    return labels, scan, record


def _cmd_run(args):
    params = resolve_parameters(args, "run")
    inputs = params["inputs"]
    for role, what in (("dp", "DP_FILE"), ("eds", "EDS_FILE")):
        if not inputs.get(role):
            raise CLIError(f"no {what} given (on the command line or in the [inputs] of --params).")
        if not Path(inputs[role]).exists():
            raise CLIError(f"{what} '{inputs[role]}' does not exist.")
    params["inputs"] = {role: str(Path(inputs[role]).resolve()) for role in ("dp", "eds")}
    console = _Console(args.quiet or args.dry_run)
    with contextlib.nullcontext() if args.dry_run else _numba_warm_up() as warm_up:
        return _run_files(args, params, console, warm_up)


def _run_files(args, params, console, warm_up=None):
    """The body of ``stemfuse run`` once the inputs are known to exist."""
    client = _connect(args.scheduler, console) if args.scheduler else None
    try:
        with console.stage("opening the inputs"):
            dp = _load(params["inputs"]["dp"], "DP_FILE", args.debug)
            eds = _load(params["inputs"]["eds"], "EDS_FILE", args.debug)
            _check_inputs(dp, eds)
        if args.dry_run:
            _print_params(params, "run")
            return 0
        out = Path(args.out)
        staging = _prepare_output(out, args.overwrite, inputs=params["inputs"].values())
        try:
            from . import report as report_module

            record = {"inputs": [], "scheduler": args.scheduler}
            with console.stage("checksums", "SHA-256 checksums of the inputs"):
                for role, signal in (("dp", dp), ("eds", eds)):
                    record["inputs"].append(report_module.describe_input(role, params["inputs"][role], signal))
            _pipeline(dp, eds, params, staging, console, record, show_progressbar=not args.quiet, warm_up=warm_up)
            _finish(staging, params, record, console, "run", args, name=out.resolve().name)
            _publish(staging, out, args.overwrite, inputs=params["inputs"].values())
        except BaseException:
            _cleanup(staging)
            raise
    finally:
        if client is not None:
            client.close()
    _print_summary(out)
    return 0


def _cmd_report(args):
    from . import report as report_module

    directory = Path(args.dir)
    console = _Console(args.quiet)
    with console.stage("report", f"rebuilding the report in '{directory}'"):
        path = report_module.write_report(directory)
    print(f"Report: {path.resolve()}")
    return 0


# --------------------------------------------------------------------------
# Pipeline pieces
# --------------------------------------------------------------------------
# Run in a second process while the first reads or generates data: on a
# fresh install, a small densMAP fit through stemfuse_hs compiles (and
# caches on disk) umap-learn's numba functions, about 13 s of one core on
# an AMD EPYC (stemfuse_hs._kernels.cache_umap_compilation; pynndescent,
# which would add 22 s, is not imported: _kernels.import_umap); compiled alongside, the
# main process finds them cached when it reaches the clustering. It then
# writes a warm record (stemfuse_hs._warm_cache), and later commands that
# find the record valid start no second process: with the cache warm, the
# warm-up would only take 5 s of the core the main process's threads use.
_WARM_UP = (
    "import warnings; warnings.simplefilter('ignore'); import numpy as np; "
    "from stemfuse_hs.clustering.embed import fit_umap; "
    "x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32); "
    "fit_umap(x, random_state=0, n_components=3, n_neighbors=10, min_dist=0.0, densmap=True, n_epochs=20); "
    "from stemfuse_hs._kernels import cached_umap_dispatchers; "
    "from stemfuse_hs._warm_cache import write_warm_record; "
    "write_warm_record(cached_umap_dispatchers())"
)


@contextlib.contextmanager
def _numba_warm_up():
    """Compile umap-learn's numba functions in a second process, unless a warm record says they are cached.

    Yields the warm-up process, or None when none was started. After the
    command succeeded, records the cached functions it used (when no valid
    record exists), so that the next command starts no warm-up.
    """
    import subprocess

    from ._warm_cache import warm_record_valid

    process = None
    if not warm_record_valid():
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", _WARM_UP],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        except OSError:  # no second process: everything still works, only slower
            process = None
    try:
        yield process
        if "stemfuse_hs._kernels" in sys.modules and not warm_record_valid():
            # This process compiled or loaded them too: record them if they are cached.
            from ._kernels import cached_umap_dispatchers
            from ._warm_cache import write_warm_record

            write_warm_record(cached_umap_dispatchers())
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


def _connect(address, console):
    try:
        from distributed import Client
    except ModuleNotFoundError:
        raise CLIError(
            "--scheduler needs the 'distributed' package: pip install 'stemfuse_hs[distributed]'."
        ) from None
    console.note(f"connecting to the dask scheduler at {address}")
    try:
        return Client(address)
    except Exception as exc:
        raise CLIError(f"cannot connect to the dask scheduler at {address}: {_one_line(exc)}") from exc


def _load(path, what, debug):
    """Open ``path`` lazily with HyperSpy; one clear error for anything unreadable."""
    import logging

    import hyperspy.api as hs

    logger = logging.getLogger("hyperspy")
    level = logger.level
    if not debug:
        # HyperSpy logs its own (multi-line, coloured) error before raising.
        logger.setLevel(logging.CRITICAL)
    try:
        signal = hs.load(Path(path), lazy=True)
    except Exception as exc:
        suffix = Path(path).suffix.lower()
        if suffix and suffix.lstrip(".") not in _known_extensions():
            # HyperSpy then tried an image reader, whose error says nothing useful.
            raise CLIError(f"cannot read {what} '{path}': '{suffix}' is not a file type RosettaSciIO reads.") from exc
        raise CLIError(f"cannot read {what} '{path}': {_one_line(exc)}") from exc
    finally:
        logger.setLevel(level)
    if isinstance(signal, list):
        if len(signal) != 1:
            raise CLIError(
                f"{what} '{path}' holds {len(signal)} signals; save the one to use in a file of its own."
            )
        signal = signal[0]
    return signal


def _known_extensions():
    try:
        from rsciio import IO_PLUGINS
    except Exception:  # an old RosettaSciIO: do not guess
        return set()
    return {ext.lower() for plugin in IO_PLUGINS for ext in plugin.get("file_extensions", ())}


def _shape_text(signal):
    am = signal.axes_manager
    return f"({', '.join(map(str, am.navigation_shape))}|{', '.join(map(str, am.signal_shape))})"


def _check_inputs(dp, eds):
    """Both files of one scan, each of the right kind, before any long computation."""
    dp_dim = dp.axes_manager.signal_dimension
    eds_dim = eds.axes_manager.signal_dimension
    if dp_dim == 1 and eds_dim == 2:
        raise CLIError(
            f"DP_FILE holds a spectrum image {_shape_text(dp)} and EDS_FILE 4D-STEM data "
            f"{_shape_text(eds)}: the files are swapped (give the 4D-STEM file first)."
        )
    if dp_dim != 2:
        raise CLIError(f"DP_FILE must hold 4D-STEM data (signal dimension 2), not {_shape_text(dp)}.")
    if eds_dim != 1:
        raise CLIError(f"EDS_FILE must hold a spectrum image (signal dimension 1), not {_shape_text(eds)}.")
    dp_scan, eds_scan = dp.axes_manager.navigation_shape, eds.axes_manager.navigation_shape
    if dp_scan != eds_scan:
        hint = " (transposed?)" if tuple(reversed(eds_scan)) == dp_scan else ""
        raise CLIError(
            f"the scans do not match: DP_FILE has navigation shape {dp_scan}, EDS_FILE {eds_scan}{hint}."
        )
    if not dp_scan:
        raise CLIError("the inputs have no navigation axes: a scan is needed, not a single pattern.")


def _pipeline(dp, eds, params, out, console, record, show_progressbar, saved_signal_types=None, warm_up=None):
    """Features, fusion, clustering, statistics; saves the signals to ``out``.

    ``saved_signal_types`` (``{"dp": "diffraction"}``) names the signal type
    the saved cluster means and standard deviations of that input record in
    their metadata, so that they load as that type's class. ``warm_up`` is
    the numba warm-up process (:func:`_numba_warm_up`), awaited before the
    clustering: compiling the same functions alongside it would only halve
    the speed of both.
    """
    import stemfuse_hs

    from . import report as report_module
    from ._arrays import is_lazy_array

    progress = bool(show_progressbar)
    with console.stage("diffraction features"):
        dpf = stemfuse_hs.sdt_features(dp, **params["diffraction"], show_progressbar=progress)
    with console.stage("EDS features"):
        eds_params = dict(params["eds"])
        eds_params["exclude_windows"] = [tuple(w) for w in eds_params["exclude_windows"]]
        edf = stemfuse_hs.variance_features(eds, **eds_params, show_progressbar=progress)
    with console.stage("fusion"):
        fused = stemfuse_hs.fuse(dpf, edf, **params["fusion"], show_progressbar=progress)
        if is_lazy_array(fused.data):
            # Read the raw data once here rather than once per later step.
            fused.compute(show_progressbar=progress)
        record["block_shares"] = fused.block_shares()
    with console.stage("clustering"):
        _await_warm_up(warm_up)
        if params["phase_map"]["method"] == "physics":
            # The segments keep every HDBSCAN leaf; the physics decides what joins.
            cluster_params = dict(params["clustering"], merge_threshold=0.0)
            cluster_params.pop("min_cluster_size")  # the segments' size is --segment-size
            labels = stemfuse_hs.map_phases(
                dp,
                eds,
                fused=fused,
                random_state=cluster_params.pop("random_state"),
                segment_size=params["phase_map"]["segment_size"],
                minor_cluster_size=params["phase_map"]["minor_cluster_size"],
                grain_threshold=params["phase_map"]["grain_threshold"],
                min_grain_log_ratio=params["phase_map"]["min_grain_log_ratio"],
                min_position_log_ratio=params["phase_map"]["min_position_log_ratio"],
                max_unmixed_share=params["phase_map"]["max_unmixed_share"],
                boundary_margin=params["phase_map"]["boundary_margin"],
                cluster_kwargs=cluster_params,
                show_progressbar=progress,
                **params["phases"],
            )
            record["phase_merge"] = phase_merge_summary(labels)
        else:
            labels = fused.cluster(**params["clustering"], show_progressbar=progress)
        separation = labels.parameters.get("block_separation", {})
        record["block_separation"] = {k: (None if v < 0 else float(v)) for k, v in separation.items()}
    stats = {}
    if labels.n_clusters == 0:
        import warnings

        warnings.warn(
            "no clusters found, so no cluster means are written; a smaller --min-cluster-size or "
            "--min-samples, or no --min-membership, may find some.",
            UserWarning,
            stacklevel=2,
        )
    else:
        with console.stage("cluster statistics"):
            for role, signal in (("dp", dp), ("eds", eds)):
                stats[role] = labels.cluster_statistics(signal, **params["statistics"], show_progressbar=progress)
    with console.stage("saving"):
        save_zspy(labels, out / report_module.LABELS_FILE)
        for role, (mean, std) in stats.items():
            if role in (saved_signal_types or {}):
                for signal in (mean, std):
                    signal.metadata.Signal.signal_type = saved_signal_types[role]
            save_zspy(mean, out / report_module.MEAN_FILES[role])
            save_zspy(std, out / report_module.STD_FILES[role])
    sizes = labels.metadata.Clustering.cluster_sizes
    record["n_clusters"] = labels.n_clusters
    record["cluster_sizes"] = [int(n) for n in sizes]
    record["n_noise"] = int(labels.metadata.Clustering.n_noise)
    return labels


#: Longest wait (s) for the warm-up before the clustering compiles by itself.
WARM_UP_WAIT = 300


def _await_warm_up(process):
    """Let a running warm-up finish compiling what the clustering needs (at most ``WARM_UP_WAIT`` s)."""
    import subprocess

    if process is None:
        return
    try:
        process.wait(timeout=WARM_UP_WAIT)
    except subprocess.TimeoutExpired:
        pass



def _lattice_summary(lattice):
    """An indexed lattice of the phase merge's record for the JSON report (None when none)."""
    if not lattice:
        return None
    summary = {
        "centring": str(lattice["centring"]),
        "n": [int(v) for v in lattice["n"]],
        "lines_px": [float(v) for v in lattice["lines"]],
        "max_error": float(lattice["max_error"]),
    }
    if summary["centring"] == "hcp":
        summary.update(
            n=[float(v) for v in lattice["n"]], hkl=[str(v) for v in lattice["hkl"]], c_over_a=float(lattice["c_over_a"])
        )
    return summary


def _refit_summary(lattice):
    """A lattice as the grain step judged grains by, for the JSON report: refitted on its grains or as indexed."""
    summary = {"centring": str(lattice["centring"]), "scale_px": float(lattice["scale"])}
    if summary["centring"] == "hcp":
        summary["c_over_a"] = float(lattice["c_over_a"])
    summary["refined_on"] = int(lattice.get("refined_on", 0))
    summary["spread"] = float(lattice["spread"]) if "spread" in lattice else None
    summary["indexed_on"] = str(lattice.get("indexed_on", "segments"))
    return summary


def phase_merge_summary(phases):
    """What the physics merge did, as plain data for run.json and the report."""
    import numpy as np

    record = phases.phase_merge
    tests = record["tests"]
    merges = [
        {
            "segments": tests["a"][i],
            "joined": tests["b"][i],
            "p_value": None if np.isnan(tests["p_value"][i]) else float(tests["p_value"][i]),
            "composition_difference": None
            if np.isnan(tests["composition_difference"][i])
            else float(tests["composition_difference"][i]),
            "lattice_overlap": None if np.isnan(tests["lattice_overlap"][i]) else float(tests["lattice_overlap"][i]),
            "indexed": bool(np.asarray(tests["indexed"])[i]) if "indexed" in tests else False,
        }
        for i in np.flatnonzero(np.asarray(tests["merged"]))
    ]
    lattices = [record.get(key, {}) for key in ("scan_lattice", "second_lattice")]
    minor = record.get("minor_phases", {})
    grown = record.get("grown", {})
    pieces = record.get("pieces", {})
    returned = record.get("carved_pieces_returned", {})
    moved = record.get("positions_moved", {})
    unmixed = record.get("unmixed", {})
    boundaries = record.get("boundaries", {})
    grains = record.get("grains", {})
    grains_by_composition = record.get("grains_by_composition", {})
    same_crystal = record.get("same_crystal", {})
    weak_rejudged = record.get("weak_grains_rejudged", {})
    joined = record.get("joined_phases", {})
    return {
        "n_segments": int(phases.segments.n_clusters),
        "n_phases": int(phases.n_clusters),
        "groups": [[int(v) for v in g] for g in record["groups"]],
        "merges": merges,
        "n_tests": int(len(tests["a"])),
        "scan_lattice": _lattice_summary(lattices[0]),
        "second_lattice": _lattice_summary(lattices[1]),
        "reassigned_positions": int(np.asarray(record["reassigned"]).sum()),
        "minor_phases": [
            {"host": int(h), "positions": int(n), "p_value": float(p), "composition_difference": float(d)}
            for h, n, p, d in zip(
                minor.get("host", []), minor.get("positions", []), minor.get("p_value", []),
                minor.get("composition_difference", []),
            )
        ],
        "grown": [
            {"from_phase": int(a), "into_phase": int(b), "positions": int(n), "p_value": float(p),
             "composition_difference": float(d)}
            for a, b, n, p, d in zip(
                grown.get("from_phase", []), grown.get("into_phase", []), grown.get("positions", []),
                grown.get("p_value", []), grown.get("composition_difference", []),
            )
        ],
        "carved_pieces_returned": [
            {"from_phase": int(a), "into_phase": int(b), "positions": int(n)}
            for a, b, n in zip(returned.get("from_phase", []), returned.get("into_phase", []), returned.get("positions", []))
        ],
        "pieces": [
            {"segment": int(k), "from_phase": int(a), "into_phase": int(b), "positions": int(n)}
            for k, a, b, n in zip(
                pieces.get("segment", []), pieces.get("from_phase", []), pieces.get("into_phase", []),
                pieces.get("positions", []),
            )
        ],
        "grains_by_composition": [
            {"from_phase": int(a), "into_phase": int(b), "positions": int(n)}
            for a, b, n in zip(
                grains_by_composition.get("from_phase", []), grains_by_composition.get("into_phase", []),
                grains_by_composition.get("positions", []),
            )
        ],
        "grains": [
            {"from_phase": int(a), "into_phase": int(b), "positions": int(n)}
            for a, b, n in zip(grains.get("from_phase", []), grains.get("into_phase", []), grains.get("positions", []))
        ],
        "same_crystal": [
            {"positions": int(n), "lattice": int(j), "similarity": float(c)}
            for n, j, c in zip(
                same_crystal.get("positions", []), same_crystal.get("lattice", []), same_crystal.get("similarity", [])
            )
        ],
        "weak_grains_rejudged": [
            {"positions": int(n), "lattice": int(j), "similarity": float(c)}
            for n, j, c in zip(
                weak_rejudged.get("positions", []), weak_rejudged.get("lattice", []),
                weak_rejudged.get("similarity", []),
            )
        ],
        "joined_phases": [
            {"phase": int(a), "into_phase": int(b)} for a, b in zip(joined.get("phase", []), joined.get("into", []))
        ],
        "loose_positions": int(record.get("loose_positions", 0)),
        "loose_positions_joined": int(record.get("loose_positions_joined", 0)),
        "weakly_judged_grains": int(record.get("weakly_judged_grains", 0)),
        "grain_lattices": [_refit_summary(lattice) for lattice in record.get("grain_lattices", [])],
        "phase_lattice": [int(v) for v in np.asarray(record.get("phase_lattice", []))],
        "positions_moved": [
            {"from_phase": int(a), "into_phase": int(b), "positions": int(n)}
            for a, b, n in zip(moved.get("from_phase", []), moved.get("into_phase", []), moved.get("positions", []))
        ],
        "unmixed": [
            {"phase": int(q), "host": int(h), "moved_out": int(o), "moved_in": int(i), "host_share": float(hs),
             "own_share": float(own), "halo": float(halo), "particles": int(particles)}
            for q, h, o, i, hs, own, halo, particles in zip(
                unmixed.get("phase", []), unmixed.get("host", []), unmixed.get("moved_out", []),
                unmixed.get("moved_in", []), unmixed.get("host_share", []), unmixed.get("own_share", []),
                unmixed.get("halo", []), unmixed.get("particles", []),
            )
        ],
        "boundaries": [
            {"from_phase": int(a), "into_phase": int(b), "positions": int(n)}
            for a, b, n in zip(
                boundaries.get("from_phase", []), boundaries.get("into_phase", []), boundaries.get("positions", [])
            )
        ],
    }


#: What a backslash in a title is saved as in .zspy results: U+29F5 REVERSE
#: SOLIDUS OPERATOR, which looks the same.
ZSPY_BACKSLASH = "\u29f5"


def save_zspy(signal, path):
    """Save one of the run's results (never an input) to ``.zspy``, with a title the format can hold.

    RosettaSciIO names the file's group after ``metadata.General.title`` and
    zarr reads a backslash in that name as a path separator: a title such as
    ``"Cluster mean of Fe$_3$O$_4$ \\frac"`` is written, but the file does
    not load again ("This is not a valid zspy file"). Backslashes in the
    title are saved as :data:`ZSPY_BACKSLASH`.
    """
    title = signal.metadata.get_item("General.title", "") or ""
    if "\\" in title:
        signal.metadata.General.title = title.replace("\\", ZSPY_BACKSLASH)
    signal.save(path, overwrite=True)


def _finish(out, params, record, console, command, args, name=None):
    from . import __version__
    from . import report as report_module

    params = {"format": _PARAMS_FORMAT, "command": command, "stemfuse_version": __version__, **params}
    report_module.write_json(out / report_module.PARAMS_FILE, params)
    record.update(
        command=command,
        argv=[PROG] + list(args.argv),
        cwd=os.getcwd(),
        timings=dict(console.timings),
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        environment=report_module.environment(),
    )
    report_module.write_json(out / report_module.RUN_FILE, record)
    with console.stage("report", "writing the report"):
        report_module.write_report(out, name=name)


def _print_summary(out):
    from . import report as report_module

    summary = report_module.summary_lines(out)
    for line in summary:
        print(line)
    print(f"Report: {(out / report_module.REPORT_FILE).resolve()}", flush=True)


def _print_params(params, command):
    from . import __version__

    print(json.dumps({"format": _PARAMS_FORMAT, "command": command, "stemfuse_version": __version__, **params}, indent=2))


def _check_output(out, overwrite, inputs=()):
    """Refuse an ``out`` that is not a folder, or one holding files without ``--overwrite``."""
    from . import report as report_module

    if out.exists() and not out.is_dir():
        raise CLIError(f"output '{out}' exists and is not a folder.")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise CLIError(
                f"output folder '{out}' exists and is not empty; use --overwrite to replace its "
                "results or choose another --out."
            )
        resolved_inputs = {Path(p).resolve() for p in inputs}
        for name in report_module.OUTPUT_NAMES:
            if (out / name).resolve() in resolved_inputs:
                raise CLIError(f"--overwrite would delete the input '{out / name}'; choose another --out.")


#: Prefix of the staging folder a run writes into, next to ``--out``.
STAGING_PREFIX = ".stemfuse-partial-"


def _prepare_output(out, overwrite, inputs=()):
    """Check ``out`` and make the staging folder the run writes into.

    Nothing in ``out`` is touched yet: the results are written into a
    hidden sibling folder (``.stemfuse-partial-<name>-XXXX``), moved into
    ``out`` by :func:`_publish` only when every file, the report included,
    is written. An interrupted or failed run (Ctrl-C, SIGTERM, an error)
    removes the staging folder and leaves ``out`` as it was; even a killed
    one (SIGKILL, power loss) leaves only the hidden staging folder, never
    an ``out`` that looks complete.
    """
    import tempfile

    _check_output(out, overwrite, inputs)
    target = out.absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{target.name}-", dir=target.parent))


def _publish(staging, out, overwrite, inputs=()):
    """Move the finished results from ``staging`` into ``out``.

    A new or empty ``out`` is replaced by the staging folder in one rename.
    Into a folder holding files (``--overwrite``), the previous run's
    ``run.json``, the completion record the report needs, is removed first
    and the new one moved in last, so that the folder never looks complete
    with a mix of two runs; files this package does not write are kept.
    """
    from . import report as report_module

    _check_output(out, overwrite, inputs)  # the folder may have changed while the run computed
    out = out.absolute()
    if out.exists() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.replace(staging, out)
        return
    _remove(out / report_module.RUN_FILE)
    for name in report_module.OUTPUT_NAMES:
        _remove(out / name)
    names = sorted(p.name for p in staging.iterdir() if p.name != report_module.RUN_FILE)
    for name in names + [report_module.RUN_FILE]:
        if (staging / name).exists():
            os.replace(staging / name, out / name)
    staging.rmdir()


def _remove(path):
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _cleanup(staging):
    """After a failure or an interruption, remove the staging folder (``out`` is untouched)."""
    import shutil

    shutil.rmtree(staging, ignore_errors=True)
