"""The results folder of a ``stemfuse`` run and its self-contained HTML report.

A run writes its results (signals, ``params.json``, ``run.json``) to a
folder; :func:`write_report` reads them back and draws the figures and
``report.html`` from them alone, so ``stemfuse report DIR`` rebuilds exactly
what the run wrote.

The figures are drawn by small private helpers on the package palette; they
stand in for :mod:`stemfuse_hs.plot` figures and are meant to be replaced by
them.
"""

import base64
import datetime
import hashlib
import html
import io
import json
import math
import platform
import sys
from pathlib import Path

__all__ = [
    "FIGURE_FILES",
    "LABELS_FILE",
    "MEAN_FILES",
    "OUTPUT_NAMES",
    "PARAMS_FILE",
    "REPORT_FILE",
    "RUN_FILE",
    "STD_FILES",
    "TRUTH_FILE",
    "describe_input",
    "environment",
    "sha256sum",
    "summary_lines",
    "write_json",
    "write_report",
]

LABELS_FILE = "labels.zspy"
MEAN_FILES = {"dp": "cluster_mean_dp.zspy", "eds": "cluster_mean_eds.zspy"}
STD_FILES = {"dp": "cluster_std_dp.zspy", "eds": "cluster_std_eds.zspy"}
TRUTH_FILE = "truth.zspy"
PARAMS_FILE = "params.json"
RUN_FILE = "run.json"
REPORT_FILE = "report.html"
FIGURE_FILES = {
    "label_map": "label_map.png",
    "max_membership": "max_membership.png",
    "mean_patterns": "cluster_mean_patterns.png",
    "mean_spectra": "cluster_mean_spectra.png",
    "embedding": "embedding.png",
}
#: Everything a run may write: what ``--overwrite`` replaces, nothing else.
OUTPUT_NAMES = (
    [LABELS_FILE, TRUTH_FILE, PARAMS_FILE, RUN_FILE, REPORT_FILE]
    + list(MEAN_FILES.values())
    + list(STD_FILES.values())
    + list(FIGURE_FILES.values())
)

#: Block size for hashing: large inputs are never read whole into memory.
HASH_BLOCK = 16 * 2**20


# --------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------
def sha256sum(path, block_size=HASH_BLOCK):
    """SHA-256 of a file, or of a folder (a ``.zspy`` store) of files.

    Parameters
    ----------
    path : str or pathlib.Path
    block_size : int, default 16 MiB
        Bytes read at a time.

    Returns
    -------
    str
        Hexadecimal digest. For a folder: the digest of the lines
        ``"<relative/path>\\0<sha256 of the file>\\n"`` of all its files in
        sorted order, so a copy of the folder anywhere has the same checksum.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> _ = p.write_bytes(b"abc")
    >>> sha256sum(p)[:16]
    'ba7816bf8f01cfea'
    """
    path = Path(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            relative = child.relative_to(path).as_posix()
            digest.update(f"{relative}\0{sha256sum(child, block_size)}\n".encode())
        return digest.hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(block_size), b""):
            digest.update(block)
    return digest.hexdigest()


def _size_on_disk(path):
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def describe_input(role, path, signal):
    """What the report says about one input file.

    Parameters
    ----------
    role : {"dp", "eds"}
    path : str or pathlib.Path
    signal : hyperspy signal
        The signal loaded from ``path``.

    Returns
    -------
    dict
        Name, absolute path, bytes, SHA-256, signal class, shape, dtype, title.
    """
    path = Path(path).resolve()
    am = signal.axes_manager
    return {
        "role": role,
        "name": path.name,
        "path": str(path),
        "bytes": int(_size_on_disk(path)),
        "sha256": sha256sum(path),
        "signal": type(signal).__name__,
        "shape": f"({', '.join(map(str, am.navigation_shape))}|{', '.join(map(str, am.signal_shape))})",
        "dtype": str(signal.data.dtype),
        "title": str(signal.metadata.get_item("General.title", "")),
    }


def environment():
    """Python, platform and the versions of the packages a result depends on.

    Returns
    -------
    dict
    """
    from .signals.label_factory import software_versions

    versions = software_versions(extra=("rosettasciio", "zarr", "matplotlib", "scipy", "distributed"))
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
    }


def _jsonable(value):
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path, obj):
    """Write ``obj`` as indented JSON.

    Parameters
    ----------
    path : str or pathlib.Path
    obj : dict
        May hold numpy arrays and scalars (written as lists and numbers)
        and non-finite floats (written as ``null``).
    """
    Path(path).write_text(json.dumps(_jsonable(obj), indent=2) + "\n", encoding="utf-8")


def _read_json(path):
    path = Path(path)
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------
# Reading a results folder
# --------------------------------------------------------------------------
class _Results:
    """The saved results of one run, loaded from its folder."""

    def __init__(self, directory):
        import warnings

        import hyperspy.api as hs

        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"results folder '{directory}' does not exist.")
        if not (directory / LABELS_FILE).exists():
            raise FileNotFoundError(
                f"'{directory}' holds no {LABELS_FILE}: not the output folder of 'stemfuse run' or 'stemfuse demo'."
            )
        if not (directory / RUN_FILE).is_file():
            raise FileNotFoundError(
                f"'{directory}' holds no {RUN_FILE}, which a run writes last: the run that wrote this folder "
                "did not finish (interrupted?). Run it again."
            )
        self.directory = directory
        self.params = _read_json(directory / PARAMS_FILE)
        self.run = _read_json(directory / RUN_FILE)

        def load(name, signal_type=None):
            path = directory / name
            if not path.exists():
                return None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return hs.load(path, signal_type=signal_type)

        self.labels = load(LABELS_FILE)
        if not hasattr(self.labels, "n_clusters"):
            raise ValueError(
                f"{directory / LABELS_FILE} did not load as ClusterLabels "
                f"(got {type(self.labels).__name__}); is stemfuse_hs installed as a HyperSpy extension?"
            )
        # The report only plots the patterns: read as plain signals (signal
        # type ""), they need no pyxem, which takes seconds to import.
        plain = {"dp": ""}
        self.means = {role: load(name, plain.get(role)) for role, name in MEAN_FILES.items()}
        self.stds = {role: load(name, plain.get(role)) for role, name in STD_FILES.items()}
        self.truth = load(TRUTH_FILE)

    @property
    def n_clusters(self):
        return self.labels.n_clusters

    def cluster_table(self):
        """Rows ``(label, positions, fraction, mean largest membership)``, noise last."""
        import numpy as np

        labels = np.asarray(self.labels.data).ravel()
        memberships = np.asarray(self.labels.memberships.data).reshape(self.n_clusters, labels.size)
        largest = memberships.max(axis=0) if self.n_clusters else np.zeros(labels.size)
        rows = []
        for label in list(range(self.n_clusters)) + [-1]:
            where = labels == label
            count = int(where.sum())
            if label == -1 and count == 0:
                continue
            confidence = float(largest[where].mean()) if count else float("nan")
            rows.append((label, count, count / labels.size, confidence))
        return rows


def summary_lines(directory):
    """The lines ``stemfuse`` prints after a run: clusters and, for the demo, the ARI.

    Parameters
    ----------
    directory : str or pathlib.Path

    Returns
    -------
    list of str
    """
    run = _read_json(Path(directory) / RUN_FILE)
    lines = []
    sizes = run.get("cluster_sizes")
    if sizes is not None:
        text = f"Clusters: {len(sizes)} ({', '.join(str(s) for s in sizes)} positions)" if sizes else "Clusters: none found"
        if run.get("n_noise"):
            text += f", noise: {run['n_noise']} positions"
        lines.append(text)
    if run.get("adjusted_rand_index") is not None:
        lines.append(f"Adjusted Rand index vs the ground truth: {run['adjusted_rand_index']:.3f}")
    if run.get("timings"):
        lines.append(f"Time: {sum(run['timings'].values()):.1f} s")
    return lines


# --------------------------------------------------------------------------
# Figures: drawn by stemfuse_hs.plot on bare figures
# --------------------------------------------------------------------------
def _figure(width, height):
    from matplotlib.figure import Figure

    # A bare Figure needs no pyplot and no GUI backend: safe on servers.
    # The plot functions draw on its axes.
    return Figure(figsize=(width, height), layout="constrained")


def _png(fig, dpi=110):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _map_height(shape, width=4.0):
    """Figure height for a map drawn ``width`` inches wide, plus its title."""
    rows, cols = (1, shape[0]) if len(shape) == 1 else shape[:2]
    return min(8.0, max(1.5, width * rows / max(cols, 1))) + 0.6


def _fig_label_map(results):
    import numpy as np

    from .plot import plot_label_map

    labels = results.labels
    k = results.n_clusters
    data = np.asarray(labels.data).astype(int)
    panels = 1 if results.truth is None else 2
    fig = _figure(5.6 * panels, _map_height(data.shape))
    axes = fig.subplots(1, panels, squeeze=False)[0]
    sizes = [int((data == i).sum()) for i in range(k)]
    plot_label_map(labels, ax=axes[0], title="Phase map", names=[f"cluster {i} ({sizes[i]})" for i in range(k)])
    if results.truth is not None:
        truth = np.asarray(results.truth.data).astype(int)
        n_phases = int(truth.max()) + 1 if truth.size else 0
        names = list(results.truth.metadata.get_item("Sample.phases", []) or [])
        if len(names) != n_phases:
            names = [f"phase {i}" for i in range(n_phases)]
        plot_label_map(results.truth, ax=axes[1], title="Ground truth", n_clusters=n_phases, names=names)
    return fig


def _fig_max_membership(results):
    from .plot import plot_membership_map

    fig = _figure(5.6, _map_height(results.labels.data.shape))
    return plot_membership_map(results.labels, ax=fig.subplots())


def _no_clusters(fig, what):
    ax = fig.subplots()
    ax.text(0.5, 0.5, f"No clusters: no {what}.", ha="center", va="center")
    ax.set_axis_off()
    return fig


def _fig_mean_patterns(results):
    from .plot import plot_mean_patterns

    mean = results.means.get("dp")
    k = 0 if mean is None else mean.data.shape[0]
    columns = max(1, min(k, 5))
    fig = _figure(2.4 * columns + 0.6, 2.5 * max(1, math.ceil(k / columns)) + 0.4)
    if k == 0:
        return _no_clusters(fig, "mean patterns")
    return plot_mean_patterns(mean, fig, max_columns=columns)


def _fig_mean_spectra(results):
    from .plot import plot_mean_spectra

    mean = results.means.get("eds")
    fig = _figure(8.0, 4.0)
    if mean is None or mean.data.shape[0] == 0:
        return _no_clusters(fig, "mean spectra")
    return plot_mean_spectra(mean, ax=fig.subplots())


def _fig_embedding(results):
    from .plot import plot_embedding

    n_components = results.labels.embedding.data.shape[-1]
    # Two views of a 3-D embedding: from the front and from the side.
    views = [(0, 1), (2, 1)] if n_components >= 3 else [(0, min(1, n_components - 1))]
    fig = _figure(4.3 * len(views), 4.0)
    for ax, view in zip(fig.subplots(1, len(views), squeeze=False)[0], views):
        plot_embedding(results.labels, dims=2, ax=ax, components=view, point_size=2.0, legend=False)
    fig.suptitle("UMAP embedding, coloured by cluster")
    return fig


_FIGURES = {
    "label_map": (_fig_label_map, "Phase map: clusters in the package palette (noise grey)."),
    "max_membership": (_fig_max_membership, "Largest soft membership at every position: low values mark interfaces and uncertain positions."),
    "mean_patterns": (_fig_mean_patterns, "Mean diffraction pattern of every cluster (membership-weighted unless the statistics mode is 'hard')."),
    "mean_spectra": (_fig_mean_spectra, "Mean spectrum of every cluster."),
    "embedding": (_fig_embedding, "The fused features embedded by UMAP; HDBSCAN found the clusters in this space."),
}


# --------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------
_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, .mono { font-family: ui-monospace, monospace; font-size: .9em; word-break: break-all; }
.swatch { display: inline-block; width: 1em; height: 1em; border: 1px solid #999; vertical-align: middle; }
figure { margin: 1em 0; } figure img { max-width: 100%; } figcaption { color: #555; font-size: .9em; }
.key { font-size: 1.15em; background: #f6f8fa; padding: .6em 1em; border-left: 4px solid #4a90d9; }
"""


def _e(value):
    return html.escape(str(value))


def _format(value):
    if isinstance(value, float):
        return "none" if not math.isfinite(value) else f"{value:.6g}"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format(v) for v in value) + "]" if value else "[]"
    return str(value)



def _moves_table(moves, caption):
    """A caption and a table of positions moved between phases (``from_phase``, ``into_phase``, ``positions``); none without moves."""
    if not moves:
        return []
    rows = [(m["from_phase"], m["into_phase"], m["positions"]) for m in moves]
    return [f"<p>{_e(caption)}</p>", _table(rows, ["from phase", "into phase", "positions"], numeric=(2,))]


def _table(rows, header=None, numeric=()):
    parts = ["<table>"]
    if header:
        parts.append("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            raw = cell if isinstance(cell, _Raw) else _e(cell)
            cls = ' class="num"' if i in numeric else ""
            cells.append(f"<td{cls}>{raw}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    return "\n".join(parts)


class _Raw(str):
    """Table cell already in HTML."""


def _bytes_text(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _plain_dict(node):
    if hasattr(node, "as_dictionary"):
        node = node.as_dictionary()
    return node if isinstance(node, dict) else {}


def _derived_rows(labels):
    """What the pipeline found or resolved, from the label map's metadata."""
    rows = []
    clustering = labels.metadata.Clustering
    fusion = _plain_dict(clustering.get_item("fusion", {}))
    blocks = fusion.get("Blocks", {})
    for name, block in blocks.items():
        for key, value in _plain_dict(block.get("feature_parameters", {})).items():
            rows.append((f"{name} features", key, _format(_jsonable(value))))
        for key in ("weight", "normalizer", "coherence", "discreteness"):
            if key in block:
                rows.append((f"{name} block", key, _format(_jsonable(block[key]))))
    for key, value in _plain_dict(fusion.get("parameters", {})).items():
        rows.append(("fusion", key, _format(_jsonable(value))))
    for key, value in labels.parameters.items():
        rows.append(("clustering", key, _format(_jsonable(value))))
    return rows


def write_report(directory, name=None):
    """Draw the figures and write ``report.html`` from a results folder.

    Every string that comes from the user (titles, file names and paths,
    parameter values, the command line) is HTML-escaped, and the page
    loads nothing: styles are inline and figures embedded.

    Parameters
    ----------
    directory : str or pathlib.Path
        Output folder of ``stemfuse run`` or ``stemfuse demo``.
    name : str, optional
        The name the page gives the results (default: the folder's). The
        command writes the report in a staging folder before it moves it to
        ``--out``, and gives ``--out``'s name here.

    Returns
    -------
    pathlib.Path
        The report. The figures are written next to it as PNG files and
        embedded in it (base64), so the page stands alone.

    Raises
    ------
    FileNotFoundError
        If the folder, its ``labels.zspy`` or its ``run.json`` (written
        last: a folder without it is from a run that did not finish) is
        missing.
    """
    from matplotlib.colors import to_hex

    from .plot.palette import NOISE_COLOUR, cluster_colours

    results = _Results(directory)
    directory = results.directory
    run, params = results.run, results.params
    k = results.n_clusters
    colours = cluster_colours(k)

    figures = []
    for key, (draw, caption) in _FIGURES.items():
        png = _png(draw(results))
        (directory / FIGURE_FILES[key]).write_bytes(png)
        figures.append((key, caption, base64.b64encode(png).decode("ascii")))

    title = "stemfuse phase map"
    name = directory.resolve().name if name is None else name
    body = [f"<h1>{_e(title)}: {_e(name)}</h1>"]
    key_facts = [f"<b>{k}</b> cluster{'s' if k != 1 else ''}"]
    if run.get("adjusted_rand_index") is not None:
        key_facts.append(f"adjusted Rand index vs the ground truth <b>{run['adjusted_rand_index']:.3f}</b>")
    if run.get("timings"):
        key_facts.append(f"computed in {sum(run['timings'].values()):.1f} s")
    body.append(f'<p class="key">{"; ".join(key_facts)}.</p>')

    demo = run.get("demo")
    body.append("<h2>Data</h2>")
    if demo:
        body.append(
            f"<p>Synthetic scan generated in memory by <code>stemfuse_hs.data.synthetic_scan"
            f"({_e(repr(demo.get('scenario')))}, size={_e(repr(demo.get('size')))}, seed={_e(demo.get('seed'))})"
            f"</code>, scan {_e(' x '.join(map(str, demo.get('scan_shape', []))))}: no input files. "
            f"{_e(demo.get('description', ''))}</p>"
        )
        body.append(_table([(i, name) for i, name in enumerate(demo.get("phases", []))], ["phase", "name"]))
    if run.get("inputs"):
        rows = [
            (
                {"dp": "4D-STEM", "eds": "STEM-EDS"}.get(item["role"], item["role"]),
                _Raw(f'<span class="mono">{_e(item["name"])}</span>'),
                _Raw(f'<span class="mono">{_e(item["path"])}</span>'),
                _bytes_text(item["bytes"]),
                _Raw(f'<span class="mono">{_e(item["sha256"])}</span>'),
                f"{item['signal']} {item['shape']} {item['dtype']}",
            )
            for item in run["inputs"]
        ]
        body.append(_table(rows, ["input", "file", "path", "size", "SHA-256", "signal"]))
    if run.get("scheduler"):
        body.append(f"<p>Dask scheduler: <code>{_e(run['scheduler'])}</code></p>")

    body.append("<h2>Clusters</h2>")
    rows = []
    for label, count, fraction, confidence in results.cluster_table():
        colour = to_hex(NOISE_COLOUR if label < 0 else colours[label])
        name = "noise" if label < 0 else f"cluster {label}"
        rows.append(
            (
                _Raw(f'<span class="swatch" style="background:{colour}"></span> {_e(name)}'),
                count,
                f"{100 * fraction:.1f} %",
                _format(confidence),
            )
        )
    body.append(_table(rows, ["cluster", "positions", "share of scan", "mean largest membership"], numeric=(1, 2, 3)))
    if run.get("block_shares"):
        shares = ", ".join(f"{_e(name)} {100 * share:.1f} %" for name, share in run["block_shares"].items())
        body.append(f"<p>Share of the fused variance by block: {shares}.</p>")
    separated = {k: v for k, v in (run.get("block_separation") or {}).items() if v is not None}
    if separated:
        parts = ", ".join(f"{_e(name)} {100 * value:.1f} %" for name, value in separated.items())
        body.append(
            f"<p>Share of each block's variance between the final clusters (which modality drives the map): "
            f"{parts}.</p>"
        )

    merge = run.get("phase_merge")
    if merge:
        body.append("<h2>Phases from segments</h2>")
        body.append(
            f"<p>{_e(merge['n_segments'])} segments of the fused embedding joined into {_e(merge['n_phases'])} "
            "phases by composition (G-test of the pooled X-ray counts) and lattice (shared Bragg-spot spacings); "
            f"{_e(merge['n_tests'])} pairs tested, {_e(merge['reassigned_positions'])} positions moved to the phase "
            "whose composition explains their counts better. Each merge, in order:</p>"
        )
        lattices = [lattice for lattice in (merge.get("scan_lattice"), merge.get("second_lattice")) if lattice]
        described = []
        for lattice in lattices:
            if lattice["centring"] == "hcp":
                lines = ", ".join(f"{r:.2f} px ({hkl})" for r, hkl in zip(lattice["lines_px"], lattice["hkl"]))
                described.append(
                    f"hexagonal close-packed lattice of c/a {lattice['c_over_a']:.3f} ({_e(lines)}; "
                    f"worst {100 * lattice['max_error']:.1f} %)"
                )
                continue
            centring = {"F": "face-centred", "I": "body-centred"}.get(lattice["centring"], lattice["centring"])
            lines = ", ".join(f"{r:.2f} px (N={n})" for r, n in zip(lattice["lines_px"], lattice["n"]))
            described.append(f"{_e(centring)} cubic lattice ({_e(lines)}; worst {100 * lattice['max_error']:.1f} %)")
        if len(lattices) == 1:
            body.append(
                f"<p>The spot spacings two or more segments show index as one {described[0]}: segments whose "
                "every spacing is one of its reflections are not kept apart by their lattice (merges marked "
                "indexed).</p>"
            )
        elif lattices:
            body.append(
                f"<p>The spot spacings index as two lattices, a {described[0]} and a {described[1]}: a segment "
                "whose every spacing is a reflection of one of them only is of that lattice; groups of one lattice "
                "are not kept apart by it (merges marked indexed), groups of the two never join.</p>"
            )
        rows = [
            (m["segments"], m["joined"], _format(m["p_value"]), _format(m["composition_difference"]),
             _format(m["lattice_overlap"]), "yes" if m.get("indexed") else "")
            for m in merge["merges"]
        ]
        body.append(
            _table(rows, ["segments", "joined to", "p-value", "composition difference", "lattice overlap", "indexed"],
                   numeric=(2, 3, 4))
        )
        groups = [(phase, " ".join(map(str, group))) for phase, group in enumerate(merge["groups"])]
        body.append(_table(groups, ["phase", "segments"]))
        if merge["minor_phases"]:
            rows = [
                (phase, m["host"], m["positions"], _format(m["p_value"]), _format(m["composition_difference"]))
                for phase, m in enumerate(merge["minor_phases"], start=merge["n_phases"] - len(merge["minor_phases"]))
            ]
            body.append("<p>Minor phases carved out of a finer map of the same embedding:</p>")
            body.append(_table(rows, ["phase", "inside phase", "positions", "p-value", "composition difference"],
                               numeric=(2, 3, 4)))
        if merge.get("grown"):
            rows = [
                (m["from_phase"], m["into_phase"], m["positions"], _format(m["p_value"]),
                 _format(m["composition_difference"]))
                for m in merge["grown"]
            ]
            body.append(
                "<p>Positions moved into a phase that holds most of a small phase of the finer map, "
                "out of a phase whose composition is not theirs:</p>"
            )
            body.append(_table(rows, ["from phase", "into phase", "positions", "p-value", "composition difference"],
                               numeric=(2, 3, 4)))
        body += _moves_table(
            merge.get("carved_pieces_returned"),
            "Pieces of a small phase of the finer map given back to its host, whose composition explains their "
            "pooled X-ray counts better:",
        )
        if merge.get("pieces"):
            rows = [(m["segment"], m["from_phase"], m["into_phase"], m["positions"]) for m in merge["pieces"]]
            body.append(
                "<p>Connected pieces of segments moved to the phase of their composition whose Bragg-spot "
                "spacings they show:</p>"
            )
            body.append(_table(rows, ["piece of segment", "from phase", "into phase", "positions"], numeric=(3,)))
        body += _moves_table(
            merge.get("grains_by_composition"),
            "Grains, and patches of positions whose neighbourhoods count alike, moved by their pooled X-ray counts "
            "to a phase of another composition that explains them far better (phases split into grains by their "
            "patterns):",
        )
        for key, caption in (
            ("same_crystal", "Grains whose spacings decided no lattice, given the lattice of a neighbouring grain that "
             "shows their spots in the same places (one crystal; cosine similarity of the spot images):"),
            ("weak_grains_rejudged", "Grains judged on a single spot spacing given the lattice of a neighbouring part "
             "of their crystal judged on more (it shows their spots in the same places):"),
        ):
            if merge.get(key):
                rows = [(m["positions"], m["lattice"], f"{m['similarity']:.2f}") for m in merge[key]]
                body.append(f"<p>{caption}</p>")
                body.append(_table(rows, ["positions", "lattice", "similarity"], numeric=(0, 1, 2)))
        reindexed = [lattice for lattice in merge.get("grain_lattices", []) if lattice.get("indexed_on") == "grains"]
        if reindexed:
            names = " and ".join(
                {"F": "face-centred cubic", "I": "body-centred cubic", "hcp": "hcp"}.get(lattice["centring"], lattice["centring"])
                for lattice in reindexed
            )
            body.append(
                f"<p>The grains were judged by lattices indexed again on their own spacings ({_e(names)}): that "
                "pair explains every spacing of more grains than the pair indexed on the segments (a segment "
                "can pool grains of two phases).</p>"
            )
        refitted = [lattice for lattice in merge.get("grain_lattices", []) if lattice.get("refined_on")]
        if refitted:
            described = []
            for lattice in refitted:
                name = {"F": "face-centred cubic", "I": "body-centred cubic", "hcp": "hcp"}.get(lattice["centring"], lattice["centring"])
                shape = f", c/a {lattice['c_over_a']:.4f}" if "c_over_a" in lattice else ""
                described.append(
                    f"{_e(name)} (scale {lattice['scale_px']:.4f} px{shape}; {int(lattice['refined_on'])} spacings, "
                    f"spread {100 * lattice['spread']:.2f} %)"
                )
            body.append(
                "<p>Lattices refitted on every spacing of the grains judged to show them by a spacing they alone "
                f"claim, and the grains judged again: {'; '.join(described)}.</p>"
            )
        if merge.get("weakly_judged_grains"):
            body.append(
                f"<p>{int(merge['weakly_judged_grains'])} grains judged on a single spot spacing split like "
                "undecided ones (they may pool two crystals whose spots their mean pattern measures as one "
                "line); a part showing no lattice keeps its grain's.</p>"
            )
        if merge.get("loose_positions"):
            body.append(
                f"<p>{int(merge['loose_positions'])} positions left out of every grain (specks of a phase inside a "
                "crystal of another phase of its composition) taken into the grain their patterns put them in, "
                "and moved with it:</p>"
            )
        if merge.get("loose_positions_joined"):
            body.append(
                f"<p>{int(merge['loose_positions_joined'])} positions in no grain (grain boundaries, pieces too small "
                "to judge) given the phase of the grain nearby that fills most of their probe, their patterns split "
                "between those grains' (counted with the grains moved below).</p>"
            )
        body += _moves_table(
            merge.get("grains"),
            "Grains moved to the phase of their composition whose lattice their interior shows (segments split "
            "into grains by their patterns):",
        )
        if merge.get("joined_phases"):
            rows = [(m["phase"], m["into_phase"]) for m in merge["joined_phases"]]
            body.append(
                "<p>Phases joined once their grains of another lattice had moved out: one composition and one "
                "lattice, one phase (phases numbered anew from here on; the grains' moves above use the new "
                "numbers):</p>"
            )
            body.append(_table(rows, ["phase before", "phase after"], numeric=(0, 1)))
        body += _moves_table(
            merge.get("positions_moved"),
            "Positions moved last, by their own X-ray counts, to a phase of another composition that explains "
            "them far better:",
        )
        if merge.get("unmixed"):
            rows = [
                (m["phase"], m["host"], m["moved_out"], m["moved_in"], f"{m['host_share']:.2f}", f"{m['own_share']:.2f}",
                 f"{m.get('halo', 0.0):.2f}", m.get("particles", 0))
                for m in merge["unmixed"]
            ]
            body.append(
                "<p>Small phases unmixed from their host: positions whose probe lies mostly "
                "in the host moved out, positions of the host whose probe lies mostly in the phase moved in "
                "(host share: of the phase's pooled counts; own share: of its host-free spectrum in windows the "
                "host lacks; halo: share of the phase's positions measured mostly in the host; particles: judged "
                "whole by a fitted disk, the rest position by position):</p>"
            )
            body.append(_table(rows, ["phase", "host", "moved out", "moved in", "host share", "own share", "halo",
                                      "particles"], numeric=(2, 3, 4, 5, 6, 7)))
        body += _moves_table(
            merge.get("boundaries"),
            "Positions at phase boundaries moved to the side their diffraction pattern is mostly made of (two "
            "orientations either side):",
        )

    body.append("<h2>Figures</h2>")
    for key, caption, data in figures:
        body.append(
            f'<figure id="{_e(key)}"><img alt="{_e(key)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(caption)} ({_e(FIGURE_FILES[key])})</figcaption></figure>"
        )

    body.append("<h2>Parameters</h2>")
    if params:
        body.append(
            f"<p>As given (defaults filled in); <code>{_e(PARAMS_FILE)}</code> reruns them with "
            f"<code>stemfuse run --params {_e(PARAMS_FILE)}</code>.</p>"
        )
        rows = []
        for section, values in params.items():
            if isinstance(values, dict) and section not in ("inputs",):
                for name, value in values.items():
                    rows.append((section, name, _format(value)))
        body.append(_table(rows, ["section", "parameter", "value"]))
    body.append("<h3>Found and resolved by the pipeline</h3>")
    body.append(_table(_derived_rows(results.labels), ["step", "parameter", "value"]))

    if run.get("timings"):
        body.append("<h2>Timings</h2>")
        rows = [(stage, f"{seconds:.2f} s") for stage, seconds in run["timings"].items()]
        rows.append((_Raw("<b>total</b>"), f"{sum(run['timings'].values()):.2f} s"))
        body.append(_table(rows, ["stage", "time"], numeric=(1,)))

    body.append("<h2>Software</h2>")
    env = run.get("environment") or {}
    packages = env.get("packages") or _plain_dict(results.labels.metadata.Clustering.get_item("versions", {}))
    rows = [("python", env.get("python", "")), ("platform", env.get("platform", ""))] if env else []
    rows += sorted(packages.items())
    body.append(_table(rows, ["software", "version"]))
    if run.get("argv"):
        body.append(f"<p>Command: <code>{_e(' '.join(run['argv']))}</code>")
        if run.get("cwd"):
            body.append(f" in <code>{_e(run['cwd'])}</code>")
        body.append("</p>")
    generated = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    finished = run.get("finished")
    body.append(
        f"<p><small>Results {('computed ' + _e(finished) + '; ') if finished else ''}report generated {_e(generated)}."
        "</small></p>"
    )

    page = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_e(title)}: {_e(name)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
    path = directory / REPORT_FILE
    path.write_text(page, encoding="utf-8")
    return path
