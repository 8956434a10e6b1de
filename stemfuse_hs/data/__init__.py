"""Synthetic paired 4D-STEM / STEM-EDS scans with ground truth.

:func:`synthetic_scan` builds a deterministic scan for one of the
:data:`SCENARIOS` at one of the :data:`SIZES`, with realistic nuisances
(thickness, bending, descan, background, grid signal, Poisson noise), so that
phase finding can be tested and benchmarked against a known answer. The
:data:`POLY_SCENARIOS` are polycrystals: every phase in several grains of
different orientations, rendered from 3-D crystal structures with the
kinematic model of :mod:`stemfuse_hs.data.polycrystal`; their ground truth
includes the grain map.

Examples
--------
>>> from stemfuse_hs.data import synthetic_scan, POLY_SCENARIOS, SCENARIOS, SIZES
>>> [name for name in SCENARIOS if name not in POLY_SCENARIOS]
['chemistry_only', 'structure_only', 'four_phases', 'precipitates']
>>> POLY_SCENARIOS[:2]
('poly_chemistry', 'poly_structure')
>>> SIZES["tiny"]
{'scan_shape': (32, 48), 'detector': (32, 32), 'channels': 512}
>>> scan = synthetic_scan("chemistry_only", size="tiny", seed=3)
>>> scan.truth.shape, len(scan.phases)
((32, 48), 2)
>>> poly = synthetic_scan("poly_chemistry", size="tiny", seed=0, lazy=True)
>>> poly.grains.shape, len(poly.grain_phases) > len(poly.phases)
((32, 48), True)
"""

from stemfuse_hs.data.synthetic import (
    POLY_SCENARIOS,
    SCENARIOS,
    SIZES,
    SyntheticScan,
    synthetic_scan,
)

__all__ = ["POLY_SCENARIOS", "SCENARIOS", "SIZES", "SyntheticScan", "synthetic_scan"]
