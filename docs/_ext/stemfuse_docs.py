"""Sphinx directives of the stemfuse_hs documentation (local extension).

``.. synthetic-scenarios::`` and ``.. synthetic-sizes::`` render tables of
:data:`stemfuse_hs.data.SCENARIOS` and :data:`stemfuse_hs.data.SIZES`;
``.. synthetic-description:: <scenario>`` renders what a scenario's phases
are (``SyntheticScan.description`` without the nuisances) and
``.. synthetic-nuisances::`` the nuisances all scenarios share. Everything is
read from the code at build time, so the pages never disagree with the
generator. Scans are built lazily: only their (cheap) ground truth is
computed.
"""

import functools
import re

from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.parsing import nested_parse_to_nodes


def _list_table(header, rows, widths):
    lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {' '.join(str(w) for w in widths)}", ""]
    for row in [header] + rows:
        first, *rest = row
        lines.append(f"   * - {first}")
        lines.extend(f"     - {cell}" for cell in rest)
    return lines


def _volume(n_bytes):
    if n_bytes >= 1e9:
        return f"{n_bytes / 1e9:.1f} GB"
    return f"{n_bytes / 1e6:.0f} MB" if n_bytes >= 1e6 else f"{n_bytes / 1e6:.1f} MB"


class _TableDirective(SphinxDirective):
    has_content = False

    def rows(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self):
        lines = self.rows()
        return nested_parse_to_nodes(self.state, StringList(lines, source="<stemfuse_docs>"))


class SyntheticScenarios(_TableDirective):
    """Scenario, its phases (structure, composition) and what separates them."""

    def rows(self):
        from stemfuse_hs.data import SCENARIOS, synthetic_scan

        rows = []
        for name, summary in SCENARIOS.items():
            scan = synthetic_scan(name, size="small", lazy=True)
            phases = "; ".join(
                f"{phase} ({structure}, {_formula(composition)}, {share:.0%})"
                for phase, structure, composition, share in zip(
                    scan.phases, scan.structures, scan.compositions, scan.coverage
                )
            )
            rows.append([f'``"{name}"``', summary, phases])
        return _list_table(["scenario", "what separates the phases", "phases (structure, at.%, share of the small scan)"], rows, [14, 40, 46])


def _formula(composition):
    return " ".join(f"{element}{value:g}" for element, value in composition.items())


class SyntheticSizes(_TableDirective):
    """Scan, detector and spectrum shapes of every size, with data volumes."""

    def rows(self):
        from stemfuse_hs.data import SIZES, synthetic_scan

        rows = []
        for name, size in SIZES.items():
            scan = synthetic_scan("four_phases", size=name, lazy=True)
            k_axis = scan.dp.axes_manager.signal_axes[0]
            e_axis = scan.eds.axes_manager.signal_axes[0]
            rows_, cols = size["scan_shape"]
            h, w = size["detector"]
            channels = size["channels"]
            rows.append(
                [
                    f'``"{name}"``',
                    f"{rows_} x {cols}",
                    f"{h} x {w} ({k_axis.scale:g} {k_axis.units} per px)",
                    f"{channels} ({e_axis.scale * 1000:g} eV per channel)",
                    _volume(rows_ * cols * h * w * 2),
                    _volume(rows_ * cols * channels * 2),
                ]
            )
        return _list_table(
            ["size", "scan (rows x columns)", "detector", "EDS channels", "4D-STEM (uint16)", "EDS (uint16)"],
            rows,
            [12, 16, 24, 22, 13, 13],
        )


@functools.cache
def _descriptions():
    """(per-scenario text, shared nuisance text) from ``SyntheticScan.description``."""
    from stemfuse_hs.data import SCENARIOS, synthetic_scan

    texts = {name: synthetic_scan(name, size="tiny", lazy=True).description for name in SCENARIOS}
    # The nuisances are the common ending of every description, from the
    # first sentence that starts inside it.
    suffix = functools.reduce(_common_suffix, texts.values())
    match = re.search(r"(?:^\s*|[.!?]\s+)([A-Z])", suffix)
    suffix = suffix[match.start(1) :] if match else ""
    own = {name: text[: len(text) - len(suffix)].strip() if suffix else text for name, text in texts.items()}
    return own, suffix


def _common_suffix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return a[len(a) - n :]


def _escape(text):
    # Descriptions are plain text; keep reST from reading "*" or "_" markup.
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_").replace("`", "\\`")


class SyntheticDescription(_TableDirective):
    """What the phases of one scenario are and what separates them."""

    required_arguments = 1

    def rows(self):
        own, _ = _descriptions()
        name = self.arguments[0]
        if name not in own:
            raise self.error(f"unknown scenario {name!r}; known: {sorted(own)}")
        return [_escape(own[name])]


class SyntheticNuisances(_TableDirective):
    """The nuisances shared by every scenario."""

    def rows(self):
        _, nuisances = _descriptions()
        if nuisances.startswith("Nuisances:"):
            nuisances = nuisances[len("Nuisances:") :].strip()
        text = nuisances[:1].upper() + nuisances[1:]
        return [_escape(text)]


def setup(app):
    app.add_directive("synthetic-scenarios", SyntheticScenarios)
    app.add_directive("synthetic-sizes", SyntheticSizes)
    app.add_directive("synthetic-description", SyntheticDescription)
    app.add_directive("synthetic-nuisances", SyntheticNuisances)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
