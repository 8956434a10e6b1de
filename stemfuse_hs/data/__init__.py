"""Synthetic paired 4D-STEM / STEM-EDS scans with ground truth.

:func:`synthetic_scan` builds a deterministic scan for one of the
:data:`SCENARIOS` at one of the :data:`SIZES`, with realistic nuisances
(thickness, bending, descan, background, grid signal, Poisson noise), so that
phase finding can be tested and benchmarked against a known answer.

Examples
--------
>>> from stemfuse_hs.data import synthetic_scan, SCENARIOS, SIZES
>>> sorted(SCENARIOS)
['chemistry_only', 'four_phases', 'precipitates', 'structure_only']
>>> SIZES["tiny"]
{'scan_shape': (32, 48), 'detector': (32, 32), 'channels': 512}
>>> scan = synthetic_scan("chemistry_only", size="tiny", seed=3)
>>> scan.truth.shape, len(scan.phases)
((32, 48), 2)
"""

from stemfuse_hs.data.synthetic import SCENARIOS, SIZES, SyntheticScan, synthetic_scan

__all__ = ["SCENARIOS", "SIZES", "SyntheticScan", "synthetic_scan"]
