"""Deterministic synthetic paired 4D-STEM / STEM-EDS scans with ground truth.

The generator draws a phase map, then renders for every scan position a
diffraction pattern and an X-ray spectrum from the local mixture of phases,
under the nuisances that make real phase mapping hard: a smooth thickness
field (or a wedge), specimen bending, a direct beam that is off the detector
centre and drifts with the scan (descan), a diffuse background, a weak
amorphous ring from the support film, a constant Cu grid signal in the
spectra, mixed patterns where an interface or an embedded precipitate shares
the column, and Poisson noise at a realistic dose.

In the fixed-section scenarios every phase is one zone-axis section of its
reciprocal lattice, in one orientation for the whole scan. The polycrystal
scenarios (:data:`POLY_SCENARIOS`) tile the scan with grains, each phase in
several grains of its own orientation, and compute every grain's Bragg disks
from its 3-D crystal structure with the kinematic model of
:mod:`stemfuse_hs.data.polycrystal`; their ground truth adds the grain map.

Both modalities are built as dask arrays chunked over scan rows. Each row's
noise comes from its own ``numpy.random.Generator`` seeded by
``(seed, scenario, modality, row)``, so the counts do not depend on the
chunking and the eager result (``lazy=False``) is the lazy graph computed.
"""

from __future__ import annotations

import functools
import math
import numbers
import sys
import threading

import dask
import dask.array as da
import dask.threaded
import numpy as np
from scipy.special import erfc, ndtr

import stemfuse_hs.data.polycrystal as polycrystal

__all__ = ["POLY_SCENARIOS", "SCENARIOS", "SIZES", "SyntheticScan", "synthetic_scan"]

#: Scenario name -> one-line description of what separates its phases.
SCENARIOS = {
    "chemistry_only": (
        "Ni-rich vs Mn-rich Ni-Mn-Ga Heusler: identical L2_1 [001] diffraction, "
        "only the EDS line ratios differ."
    ),
    "structure_only": (
        "304 stainless steel austenite (fcc [011]) vs strain-induced martensite "
        "(bcc [001]) of identical composition: only the diffraction differs."
    ),
    "four_phases": (
        "Fe-rich and Ni-rich Fe-Cr-Ni, each as bcc [001] and fcc [011]: each "
        "modality alone sees only two of the four phases."
    ),
    "precipitates": (
        "Ferrite (bcc [001]) matrix with round embedded TiC (NaCl [011]) "
        "precipitates on a 3x thickness wedge."
    ),
    "poly_chemistry": (
        "Polycrystal of Fe-rich and Ni-rich Fe-Cr-Ni austenite (one fcc lattice) in "
        "about ten grains of different orientations: only EDS separates the phases."
    ),
    "poly_structure": (
        "Polycrystal of 304 steel austenite (fcc) and martensite (bcc) of one "
        "composition, every grain in its own orientation: only diffraction separates them."
    ),
    "poly_four_phases": (
        "Polycrystal of Fe-rich and Ni-rich Fe-Cr-Ni, each as fcc and bcc grains in "
        "many orientations: only both modalities together separate the four phases."
    ),
    "poly_hcp": (
        "Polycrystal of fcc and hcp cobalt (Co-Ni-Cr) of one composition in many "
        "orientations: only diffraction separates them."
    ),
    "poly_minor_phase": (
        "Austenite (fcc) polycrystal with a few Cr-rich delta-ferrite (bcc) grains "
        "covering 2-5 % of the scan."
    ),
    "poly_precipitates": (
        "Ferrite (bcc) polycrystal with embedded TiC precipitates 2-4 positions across, "
        "each in its own orientation, on a 3x thickness wedge."
    ),
}

#: Scenarios rendered from 3-D crystal structures in many grain orientations
#: (:mod:`stemfuse_hs.data.polycrystal`); the others use one fixed zone-axis
#: section per phase.
POLY_SCENARIOS = tuple(name for name in SCENARIOS if name.startswith("poly_"))

#: Classes :func:`synthetic_scan` can give its diffraction patterns:
#: pyxem's ``Diffraction2D`` (the default) or HyperSpy's ``Signal2D``.
DIFFRACTION_CLASSES = ("pyxem", "hyperspy")

#: Size name -> ``scan_shape`` (rows, cols), ``detector`` (H, W) in pixels and
#: ``channels`` of the spectra (20 eV for "tiny", 10 eV otherwise).
SIZES = {
    "tiny": {"scan_shape": (32, 48), "detector": (32, 32), "channels": 512},
    "small": {"scan_shape": (48, 80), "detector": (64, 64), "channels": 1024},
    "published": {"scan_shape": (50, 150), "detector": (256, 256), "channels": 2048},
    "large": {"scan_shape": (256, 256), "detector": (256, 256), "channels": 2048},
}

# Private canonical copies so that a caller editing the public dicts cannot
# change what a given (scenario, size, seed) generates.
_SIZES = {k: dict(v) for k, v in SIZES.items()}
_ENERGY_SCALE_KEV = {"tiny": 0.02, "small": 0.01, "published": 0.01, "large": 0.01}

# --- Instrument -------------------------------------------------------------
_BEAM_ENERGY_KEV = 200.0
_WAVELENGTH_NM = 0.0025079  # relativistic electron wavelength at 200 kV
_CONVERGENCE_MRAD = 1.5
_DISK_RADIUS = _CONVERGENCE_MRAD * 1e-3 / _WAVELENGTH_NM  # 0.60 1/nm
# 0.1 1/nm per pixel on a 256 px camera; smaller detectors are binned
# versions of it, so the pattern fills every detector size the same way.
_K_SCALE_256 = 0.1
_NAV_SCALE_NM = 2.0
_DWELL_S = 0.015
_ENERGY_RESOLUTION_MNKA_EV = 130.0
_NOMINAL_THICKNESS_NM = 60.0
_MAX_TILT_MRAD = 3.0

# --- Dose budget at relative thickness 1 and dose=1 -------------------------
_DP_COUNTS = 6.0e4  # electrons per pattern
_DP_DIRECT, _DP_BRAGG, _DP_DIFFUSE, _DP_RING = 0.30, 0.45, 0.22, 0.03
# Polycrystals: fewer electrons (nanobeam dwell), an elastic share (direct
# beam + Bragg disks) that decays with thickness as inelastic scattering
# takes over, and a cap on the Bragg share: independent two-beam
# reflections can sum past 1 on a zone axis, where many-beam scattering
# would share the electrons out instead.
_POLY_DP_COUNTS = 1.5e4
_POLY_ELASTIC = 0.75
_POLY_ELASTIC_DECAY = 2.0  # relative thickness for 1/e loss of elastic electrons
_POLY_MAX_BRAGG = 0.8
# Reflections weaker than this fraction of the beam everywhere in their grain
# are not rendered.
_POLY_MIN_INTENSITY = 2e-3
_POLY_ZONE_TILT_DEG = 1.5
_EDS_COUNTS = 150.0  # specimen X-rays per spectrum for pure Fe, 0-20.48 keV
_EDS_CU_COUNTS = 12.0  # grid X-rays per spectrum, independent of the specimen
_EDS_CONTINUUM_FRACTION = 0.3  # continuum / characteristic for pure Fe

_UINT16_MAX = np.iinfo(np.uint16).max
_TAG_MAP, _TAG_THICKNESS, _TAG_TILT, _TAG_BEAM, _TAG_STRUCT = 1, 2, 3, 4, 5
_TAG_DP, _TAG_EDS = 10, 11
_CHUNK_BYTES = 32 * 2**20
_MIN_CHUNKS = 8
_MIN_SCAN_SIDE = 8


# ----------------------------------------------------------------------------
# Materials
# ----------------------------------------------------------------------------
# Each structure is a zone-axis section of the reciprocal lattice written as
# integer indices (n1, n2) on a 2-D basis; ``rule`` keeps the allowed
# reflections and gives their relative structure factor amplitude.
def _rule_l21_001(n1, n2):
    # Zone [001] of Fm-3m with l = 0: h, k even. 220-type reflections are
    # fundamental, 200-type exist only through L2_1/B2 order and are weaker.
    allowed = (n1 % 2 == 0) & (n2 % 2 == 0)
    return allowed, np.where((n1 + n2) % 4 == 0, 1.0, 0.3)


def _rule_bcc_001(n1, n2):
    return (n1 + n2) % 2 == 0, np.ones(n1.shape)


def _rule_fcc_011(n1, n2):
    # (h, k, -k) in the [011] zone, all-even or all-odd.
    return (n1 - n2) % 2 == 0, np.ones(n1.shape)


def _rule_nacl_011(n1, n2):
    # Rock salt: all-even reflections add Ti and C, all-odd subtract them.
    return (n1 - n2) % 2 == 0, np.where(n1 % 2 == 0, 1.0, 0.45)


# Crystal -> lab rotations of the sections before their in-plane angle: the
# 2-D basis vectors b1, b2 lie along lab x, y and the zone axis along z.
_FRAME_001 = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
_FRAME_011 = (
    (1.0, 0.0, 0.0),
    (0.0, math.sqrt(0.5), -math.sqrt(0.5)),
    (0.0, math.sqrt(0.5), math.sqrt(0.5)),
)

_STRUCTURES = {
    "L2_1 [001]": {
        "label": "L2_1 Heusler (Ni2MnGa-type, a = 0.5825 nm), [001] zone",
        "basis": ((1 / 0.5825, 0.0), (0.0, 1 / 0.5825)),
        "rule": _rule_l21_001,
        "hkl": lambda n1, n2: (n1, n2, 0),
        "zone": "[001]",
        "frame": _FRAME_001,
    },
    "bcc [001]": {
        "label": "bcc alpha-Fe (a = 0.2866 nm), [001] zone",
        "basis": ((1 / 0.2866, 0.0), (0.0, 1 / 0.2866)),
        "rule": _rule_bcc_001,
        "hkl": lambda n1, n2: (n1, n2, 0),
        "zone": "[001]",
        "frame": _FRAME_001,
    },
    "fcc [011]": {
        "label": "fcc gamma-Fe (a = 0.3595 nm), [011] zone",
        "basis": ((1 / 0.3595, 0.0), (0.0, math.sqrt(2) / 0.3595)),
        "rule": _rule_fcc_011,
        "hkl": lambda n1, n2: (n1, n2, -n2),
        "zone": "[011]",
        "frame": _FRAME_011,
    },
    "NaCl [011]": {
        "label": "rock-salt TiC (a = 0.4328 nm), [011] zone",
        "basis": ((1 / 0.4328, 0.0), (0.0, math.sqrt(2) / 0.4328)),
        "rule": _rule_nacl_011,
        "hkl": lambda n1, n2: (n1, n2, -n2),
        "zone": "[011]",
        "frame": _FRAME_011,
    },
}

# Compositions in atomic percent.
_HEUSLER_NI = {"Ni": 60.0, "Mn": 15.0, "Ga": 25.0}
_HEUSLER_MN = {"Ni": 40.0, "Mn": 35.0, "Ga": 25.0}
_STEEL_304 = {"Fe": 70.0, "Cr": 19.5, "Ni": 8.5, "Mn": 2.0}
_FE_RICH = {"Fe": 72.0, "Cr": 18.0, "Ni": 10.0}
_NI_RICH = {"Fe": 25.0, "Cr": 20.0, "Ni": 55.0}
_FERRITE = {"Fe": 97.5, "Mn": 1.5, "Cr": 1.0}
_TIC = {"Ti": 44.0, "V": 6.0, "C": 50.0}
_COBALT = {"Co": 90.0, "Ni": 6.0, "Cr": 4.0}
_DELTA_FERRITE = {"Fe": 66.0, "Cr": 28.0, "Ni": 4.0, "Mn": 2.0}

# scenario -> list of (phase name, structure key, composition)
_PHASES = {
    "chemistry_only": [
        ("Ni-rich Heusler", "L2_1 [001]", _HEUSLER_NI),
        ("Mn-rich Heusler", "L2_1 [001]", _HEUSLER_MN),
    ],
    "structure_only": [
        ("austenite (fcc)", "fcc [011]", _STEEL_304),
        ("martensite (bcc)", "bcc [001]", _STEEL_304),
    ],
    "four_phases": [
        ("Fe-rich bcc", "bcc [001]", _FE_RICH),
        ("Fe-rich fcc", "fcc [011]", _FE_RICH),
        ("Ni-rich bcc", "bcc [001]", _NI_RICH),
        ("Ni-rich fcc", "fcc [011]", _NI_RICH),
    ],
    "precipitates": [
        ("ferrite matrix (bcc)", "bcc [001]", _FERRITE),
        ("TiC precipitate", "NaCl [011]", _TIC),
    ],
    # Polycrystals: the structure is a key of polycrystal.CRYSTALS.
    "poly_chemistry": [
        ("Fe-rich austenite", "fcc Fe", _FE_RICH),
        ("Ni-rich austenite", "fcc Fe", _NI_RICH),
    ],
    "poly_structure": [
        ("austenite (fcc)", "fcc Fe", _STEEL_304),
        ("martensite (bcc)", "bcc Fe", _STEEL_304),
    ],
    "poly_four_phases": [
        ("Fe-rich bcc", "bcc Fe", _FE_RICH),
        ("Fe-rich fcc", "fcc Fe", _FE_RICH),
        ("Ni-rich bcc", "bcc Fe", _NI_RICH),
        ("Ni-rich fcc", "fcc Fe", _NI_RICH),
    ],
    "poly_hcp": [
        ("fcc Co", "fcc Co", _COBALT),
        ("hcp Co", "hcp Co", _COBALT),
    ],
    "poly_minor_phase": [
        ("austenite matrix (fcc)", "fcc Fe", _STEEL_304),
        ("delta ferrite (bcc, Cr-rich)", "bcc Fe-Cr", _DELTA_FERRITE),
    ],
    "poly_precipitates": [
        ("ferrite matrix (bcc)", "bcc Fe", _FERRITE),
        ("TiC precipitate", "rock salt TiC", _TIC),
    ],
}

# Microstructure of the polycrystals: mean matrix grain area (positions,
# 2 nm each, so ~25 nm grains), the number of matrix phases, and the
# second-phase particles.
_POLY_LAYOUT = {
    "poly_chemistry": {"grain_area": 150.0, "matrix_phases": 2},
    "poly_structure": {"grain_area": 110.0, "matrix_phases": 2},
    "poly_four_phases": {"grain_area": 90.0, "matrix_phases": 4},
    "poly_hcp": {"grain_area": 110.0, "matrix_phases": 2},
    "poly_minor_phase": {"grain_area": 130.0, "matrix_phases": 1, "minor": (0.025, 0.045)},
    "poly_precipitates": {"grain_area": 200.0, "matrix_phases": 1, "precipitates": 1 / 150},
}

_DESCRIPTIONS = {
    "chemistry_only": (
        "Two Ni-Mn-Ga Heusler phases, Ni-rich Ni60Mn15Ga25 and Mn-rich "
        "Ni40Mn35Ga25, share one L2_1 lattice (a = 0.5825 nm) in one [001] "
        "orientation, so their noise-free diffraction is identical and only the "
        "Ni K / Mn K line ratio separates them."
    ),
    "structure_only": (
        "304 stainless steel (Fe70 Cr19.5 Ni8.5 Mn2) as austenite (fcc, "
        "a = 0.3595 nm, [011] zone) and strain-induced martensite (bcc, "
        "a = 0.2866 nm, [001] zone): the composition is identical, so only the "
        "Bragg spot positions separate them."
    ),
    "four_phases": (
        "Two compositions, Fe-rich Fe72Cr18Ni10 and Ni-rich Ni55Cr20Fe25, each "
        "as bcc [001] (a = 0.2866 nm) and fcc [011] (a = 0.3595 nm): EDS alone "
        "sees two groups (by composition), diffraction alone sees two groups "
        "(by structure), and only the fused data separate all four."
    ),
    "precipitates": (
        "A ferrite matrix (bcc [001], Fe97.5 Mn1.5 Cr1) holds several round, "
        "embedded (Ti,V)C precipitates (rock salt, a = 0.4328 nm, [011] zone, "
        "in a different in-plane orientation) that differ in both structure "
        "and composition; each precipitate column still carries 10-48 % matrix "
        "signal, and the foil is a wedge whose thickness grows about 3x across "
        "the scan, which dominates the raw count rates."
    ),
}

_POLY_COMMON = (
    " Every grain has its own orientation: half of the grains of each phase "
    "sit within 1.5 degrees of a low-index zone axis, the others are randomly "
    "oriented, so most patterns show only the few reflections near the Ewald "
    "sphere, and two grains of one phase rarely share a spot; the diffraction is "
    "kinematic (two-beam rocking curves of the real 3-D structure, see "
    "stemfuse_hs.data.polycrystal)."
)

_DESCRIPTIONS.update(
    {
        "poly_chemistry": (
            "A polycrystal of about ten grains (at the tiny size; grains keep "
            "their ~25 nm size on bigger scans) of two austenites, Fe-rich "
            "Fe72Cr18Ni10 and Ni-rich Ni55Cr20Fe25, on one fcc lattice "
            "(a = 0.3595 nm): grains of one phase differ in orientation, grains "
            "of the two phases only in their Ni K / Fe K line ratio (and, "
            "slightly, in their average scattering factor)." + _POLY_COMMON
        ),
        "poly_structure": (
            "A polycrystal of 304 stainless steel (Fe70 Cr19.5 Ni8.5 Mn2) as "
            "austenite (fcc, a = 0.3595 nm) and martensite (bcc, a = 0.2866 nm) "
            "grains: the composition is identical, so only the reflections "
            "(their spacings and extinctions) separate the phases, and every "
            "grain shows a different subset of them." + _POLY_COMMON
        ),
        "poly_four_phases": (
            "A polycrystal of two compositions, Fe-rich Fe72Cr18Ni10 and Ni-rich "
            "Ni55Cr20Fe25, each as bcc (a = 0.2866 nm) and fcc (a = 0.3595 nm) "
            "grains, at least two grains per phase: EDS alone sees two groups, "
            "diffraction alone sees structures only through orientation-"
            "dependent spot subsets." + _POLY_COMMON
        ),
        "poly_hcp": (
            "A polycrystal of cobalt (Co90 Ni6 Cr4) as fcc alpha-Co "
            "(a = 0.3545 nm) and hcp epsilon-Co (a = 0.2507 nm, c = 0.4069 nm) "
            "grains of identical composition; the close-packed planes of the "
            "two have almost the same spacing, so near fcc [111] and hcp [0001] "
            "the patterns nearly coincide." + _POLY_COMMON
        ),
        "poly_minor_phase": (
            "A 304 austenite polycrystal (fcc, Fe70 Cr19.5 Ni8.5 Mn2) with a few "
            "small delta-ferrite grains (bcc, a = 0.2877 nm, Cr-rich Fe66 Cr28 "
            "Ni4 Mn2) at triple junctions, covering 2-5 % of the scan: a minor "
            "phase that differs in structure and composition, in orientations "
            "of its own." + _POLY_COMMON
        ),
        "poly_precipitates": (
            "A ferrite polycrystal (bcc, Fe97.5 Mn1.5 Cr1) holds spherical "
            "(Ti,V)C precipitates (rock salt, a = 0.4328 nm) whose majority "
            "region is only 2-4 positions across; they are embedded in the foil, "
            "so even their best columns carry 10-40 % matrix signal, and the foil is a "
            "wedge whose thickness grows 3x across the scan." + _POLY_COMMON
        ),
    }
)

_NUISANCES = (
    " Nuisances: {thickness} scales the scattered electrons and the X-ray "
    "counts; thickness and specimen bending (up to 3 mrad) change every "
    "reflection's intensity by its own Pendelloesung-like factor, so one spot "
    "varies several-fold within a phase and Friedel mates differ; the direct "
    "beam sits a few percent off the detector centre and drifts by 1-2 px per "
    "128 px of detector across the scan (descan), carrying the Bragg disks with "
    "it; a diffuse background and a weak amorphous-carbon ring are present "
    "everywhere;{interfaces} spectra hold only tens to a few hundred counts on "
    "a Kramers continuum, plus a constant Cu grid signal (Cu Ka, Kb, L); all "
    "counts are Poisson."
)


def _description(scenario):
    if scenario in _POLY_LAYOUT:
        thickness = (
            "the wedge (relative thickness 0.5-1.5, 60 nm nominal)"
            if scenario == "poly_precipitates"
            else "a thickness wedge plus a smooth field (relative 0.5-1.5, 60 nm nominal)"
        )
        interfaces = " grain boundaries mix neighbouring grains over 1-1.5 positions;"
    elif scenario == "precipitates":
        thickness, interfaces = "the wedge (relative thickness 0.5-1.5)", ""
    else:
        thickness = "a smooth thickness field (relative 0.5-1.5)"
        interfaces = " interfaces mix neighbouring phases over about one position;"
    return _DESCRIPTIONS[scenario] + _NUISANCES.format(
        thickness=thickness, interfaces=interfaces
    )


# ----------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------
def _rng(seed, *tags):
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tags))


def _scenario_index(scenario):
    return list(SCENARIOS).index(scenario)


def _smooth_field(rng, shape, sigma):
    """Zero-mean, unit-variance Gaussian random field, correlation ``sigma``.

    Filtering in Fourier space keeps the cost independent of ``sigma`` (the
    "large" scan needs sigma ~ 40 positions); the margin removes the wrap.
    """
    margin = int(math.ceil(3 * sigma))
    big = (shape[0] + 2 * margin, shape[1] + 2 * margin)
    spectrum = np.fft.rfft2(rng.standard_normal(big))
    fy = np.fft.fftfreq(big[0])[:, None]
    fx = np.fft.rfftfreq(big[1])[None, :]
    spectrum *= np.exp(-2.0 * (math.pi * sigma) ** 2 * (fx**2 + fy**2))
    field = np.fft.irfft2(spectrum, s=big)[
        margin : margin + shape[0], margin : margin + shape[1]
    ]
    field -= field.mean()
    std = field.std()
    return field / std if std > 0 else field


def _unit_grid(shape):
    v, u = np.meshgrid(
        np.linspace(-0.5, 0.5, shape[0]), np.linspace(-0.5, 0.5, shape[1]), indexing="ij"
    )
    return u, v


def _rescale(field, low, high):
    span = field.max() - field.min()
    if span == 0:
        return np.full_like(field, 0.5 * (low + high))
    return low + (high - low) * (field - field.min()) / span


def _domain_weights(rng, shape, n_phases, min_fraction=0.15, interface=1.5):
    """Smooth-bounded domains: argmax of biased smooth random fields.

    The biases are tuned so that every phase gets a drawn target fraction
    of at least ``min_fraction``; a softmax turns the hard map into mixing
    weights that change over about ``interface`` positions, like an inclined
    boundary seen through the foil.
    """
    sigma = 0.15 * min(shape)
    fields = np.stack([_smooth_field(rng, shape, sigma) for _ in range(n_phases)], -1)
    target = min_fraction + (1 - n_phases * min_fraction) * rng.dirichlet(
        np.full(n_phases, 2.0)
    )
    bias = np.zeros(n_phases)
    for _ in range(400):
        labels = np.argmax(fields + bias, axis=-1)
        fraction = np.bincount(labels.ravel(), minlength=n_phases) / labels.size
        error = target - fraction
        if np.abs(error).max() < 0.01:
            break
        bias += 1.5 * error
    score = fields + bias
    gy, gx = np.gradient(fields, axis=(0, 1))
    slope = float(np.median(np.hypot(gy, gx)))
    # For two fields the logistic 10-90 % width is 4.4 T / |grad(f1 - f2)|.
    temperature = max(interface * math.sqrt(2) * slope / 4.4, 1e-6)
    z = (score - score.max(axis=-1, keepdims=True)) / temperature
    weights = np.exp(z)
    weights /= weights.sum(axis=-1, keepdims=True)
    # Far from interfaces a position is one pure phase, not a 99.9 % mix.
    weights[weights < 0.03] = 0.0
    weights /= weights.sum(axis=-1, keepdims=True)
    return weights


def _precipitate_weights(rng, shape):
    """Matrix (phase 0) with round embedded precipitates (phase 1).

    Radii are log-uniform between a few positions and 10 % of the scan width;
    precipitates are added until they cover a drawn 7-12 % of the scan. A
    precipitate fills only part of the column, most at its centre, so its
    patterns and spectra keep some matrix signal (fraction 1 - p).
    """
    rows, cols = shape
    r_min = max(1.5, 0.03 * cols)
    r_max = max(r_min + 1.0, 0.10 * cols)
    coverage_target = rng.uniform(0.07, 0.12)
    cap = 0.13 * rows * cols
    yy, xx = np.mgrid[0:rows, 0:cols]
    p = np.zeros(shape)
    placed = []
    for _ in range(300):
        covered = np.count_nonzero(p)
        if covered >= coverage_target * p.size and len(placed) >= 3:
            break
        radius = math.exp(rng.uniform(math.log(r_min), math.log(r_max)))
        # Shrink a precipitate that would overshoot the cap, keeping room for
        # at least three; pixelated disks hold about pi (r + 0.5)^2 positions.
        reserve = max(0, 2 - len(placed)) * math.pi * (r_min + 0.5) ** 2
        fit = math.sqrt(max(cap - covered - reserve, 0) / math.pi) - 0.5
        if fit < r_min:
            if len(placed) >= 3:
                break
            fit = r_min
        radius = min(radius, fit)
        margin = radius + 1.0
        if 2 * margin >= min(rows, cols):
            continue
        for _attempt in range(50):
            cy = rng.uniform(margin, rows - 1 - margin)
            cx = rng.uniform(margin, cols - 1 - margin)
            if all(math.hypot(cy - y, cx - x) > radius + r + 2 for y, x, r in placed):
                break
        else:
            continue
        placed.append((cy, cx, radius))
        d = np.hypot(yy - cy, xx - cx) / radius
        inside = d < 1
        p[inside] = 0.52 + 0.38 * np.sqrt(1 - d[inside] ** 2)
    return np.stack([1 - p, p], -1)


def _disk_window(shape, cy, cx, radius, sigma, supersample=4):
    """Unit-sum soft-edged disk as a small window: (y0, x0, float32 array).

    Supersampled so that sub-pixel disks (the binned detectors) keep their
    size; clipped to ``shape`` (it only loses the far tail of the edge).
    """
    half = int(math.ceil(radius + 4 * sigma + 1))
    y0, y1 = int(math.floor(cy)) - half, int(math.floor(cy)) + half + 2
    x0, x1 = int(math.floor(cx)) - half, int(math.floor(cx)) + half + 2
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    ys = (np.arange(y0, y1)[:, None] + sub[None, :]).ravel()
    xs = (np.arange(x0, x1)[:, None] + sub[None, :]).ravel()
    r = np.hypot(ys[:, None] - cy, xs[None, :] - cx)
    profile = 0.5 * erfc((r - radius) / (math.sqrt(2) * sigma))
    profile = profile.reshape(y1 - y0, supersample, x1 - x0, supersample).mean(axis=(1, 3))
    profile /= profile.sum()
    cy0, cx0 = max(y0, 0), max(x0, 0)
    cy1, cx1 = min(y1, shape[0]), min(x1, shape[1])
    window = profile[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    return cy0, cx0, np.ascontiguousarray(window, dtype=np.float32)


def _fwhm_kev(energy_kev, resolution_mnka_ev=_ENERGY_RESOLUTION_MNKA_EV):
    """Detector FWHM as exspy models it (Fiori & Newbury), in keV."""
    from exspy.material import elements

    e_mnka = elements.Mn.Atomic_properties.Xray_lines.Ka["energy (keV)"]
    return math.sqrt(2.5 * (energy_kev - e_mnka) * 1000.0 + resolution_mnka_ev**2) / 1000.0


def _detector_efficiency(energy_kev):
    # Window absorption removes the lowest energies, a thin Si crystal lets
    # the hardest X-rays through.
    e = np.maximum(np.asarray(energy_kev, dtype=float), 1e-3)
    return np.exp(-((0.25 / e) ** 2.5)) * (1 - np.exp(-((22.0 / e) ** 1.5)))


_FLUORESCENCE_A = {"K": 1.0e6, "L": 1.1e8, "M": 5.0e9}


@functools.lru_cache(maxsize=None)
def _xray_lines(element):
    """(energy keV, relative generated intensity) of every line of ``element``.

    Intensity per atom is fluorescence yield Z^4 / (a + Z^4) over the family's
    alpha energy (a stand-in for the ionisation edge), times the database
    weight of the line within its family.
    """
    from exspy.material import elements

    props = elements[element]
    z = props.General_properties.Z
    lines = props.Atomic_properties.Xray_lines
    alpha = {}
    for name in lines.keys():
        family = name[0]
        if family not in alpha or name == family + "a":
            alpha[family] = lines[name]["energy (keV)"]
    out = []
    for name in lines.keys():
        family = name[0]
        omega = z**4 / (_FLUORESCENCE_A[family] + z**4)
        out.append(
            (lines[name]["energy (keV)"], lines[name]["weight"] * omega / alpha[family])
        )
    return out


def _element_z(element):
    from exspy.material import elements

    return elements[element].General_properties.Z


def _binned_lines(edges, lines):
    """Gaussian lines integrated over channel edges (area conserved)."""
    out = np.zeros(edges.size - 1)
    for energy, intensity in lines:
        sigma = _fwhm_kev(energy) / (2 * math.sqrt(2 * math.log(2)))
        cdf = ndtr((edges - energy) / sigma)
        out += intensity * np.diff(cdf)
    return out


def _characteristic(edges, composition):
    lines = []
    for element, at_percent in composition.items():
        lines += [(e, w * at_percent / 100.0) for e, w in _xray_lines(element)]
    centres = 0.5 * (edges[:-1] + edges[1:])
    eff = _detector_efficiency(centres)
    return _binned_lines(edges, lines) * eff


def _continuum(edges, composition):
    # Kramers: thin-film bremsstrahlung per atom ~ Z^2 (E0 - E) / E.
    centres = np.maximum(0.5 * (edges[:-1] + edges[1:]), 1e-3)
    z2 = sum(at / 100.0 * _element_z(el) ** 2 for el, at in composition.items())
    shape = np.clip(_BEAM_ENERGY_KEV / centres - 1.0, 0, None)
    return z2 * shape * _detector_efficiency(centres) * np.diff(edges)


@functools.lru_cache(maxsize=None)
def _eds_norm():
    """Scales so that pure Fe gives ``_EDS_COUNTS`` over 0-20.48 keV."""
    edges = np.arange(2049) * 0.01 - 0.005
    fe = {"Fe": 100.0}
    char = _characteristic(edges, fe).sum()
    cont = _continuum(edges, fe).sum()
    return {
        "continuum": _EDS_CONTINUUM_FRACTION * char / cont,
        "total": 1.0 / (char * (1 + _EDS_CONTINUUM_FRACTION)),
        "cu": 1.0 / _characteristic(edges, {"Cu": 100.0}).sum(),
    }


# ----------------------------------------------------------------------------
# The generator: small, picklable state; heavy templates built on first use
# ----------------------------------------------------------------------------
class _Generator:
    def __init__(self, scenario, size, seed, scan_shape, dose):
        self.scenario, self.size, self.seed, self.dose = scenario, size, seed, float(dose)
        # Scenarios draw from separate streams: the same seed gives unrelated
        # maps for, say, chemistry_only and structure_only.
        self.stream = _scenario_index(scenario)
        self.rows, self.cols = scan_shape
        self.det_h, self.det_w = _SIZES[size]["detector"]
        self.channels = _SIZES[size]["channels"]
        self.e_scale = _ENERGY_SCALE_KEV[size]
        self.k_scale = _K_SCALE_256 * 256 / self.det_w
        self.phase_defs = _PHASES[scenario]
        self.poly = scenario in _POLY_LAYOUT
        self.dp_counts = _POLY_DP_COUNTS if self.poly else _DP_COUNTS
        self.structure_keys = list(dict.fromkeys(s for _, s, _ in self.phase_defs))
        self.phase_structure = np.array(
            [self.structure_keys.index(s) for _, s, _ in self.phase_defs]
        )
        self._make_fields()
        self._make_beam()
        if self.poly:
            self._make_grain_crystals()
        else:
            self._make_structures()
            self._make_sections_grains()
        self.spot_offsets = np.cumsum([0] + [len(s["g"]) for s in self.structures])
        self._lock = threading.Lock()
        self._cache = {}

    def __getstate__(self):
        # Workers rebuild the templates rather than receive them.
        state = self.__dict__.copy()
        state["_lock"] = None
        state["_cache"] = {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __dask_tokenize__(self):
        return (
            "stemfuse_hs.synthetic",
            self.scenario,
            self.size,
            self.seed,
            self.dose,
            self.rows,
            self.cols,
        )

    # --- scan-sized fields ------------------------------------------------
    def _make_fields(self):
        shape = (self.rows, self.cols)
        rng = _rng(self.seed, self.stream, _TAG_MAP)
        if self.poly:
            self._make_grains(rng)
        else:
            if self.scenario == "precipitates":
                self.weights = _precipitate_weights(rng, shape)
            else:
                self.weights = _domain_weights(rng, shape, len(self.phase_defs))
            self.weights = self.weights.astype(np.float32)
            self.truth = np.argmax(self.weights, axis=-1).astype(np.int64)

        rng = _rng(self.seed, self.stream, _TAG_THICKNESS)
        u, v = _unit_grid(shape)
        if self.scenario in ("precipitates", "poly_precipitates"):
            angle = rng.uniform(-0.25, 0.25)  # wedge runs roughly along x
            ramp = math.cos(angle) * u + math.sin(angle) * v
            raw = ramp + 0.03 * _smooth_field(rng, shape, 0.2 * min(shape))
        else:
            angle = rng.uniform(0, 2 * math.pi)
            ramp = math.cos(angle) * u + math.sin(angle) * v
            raw = 0.5 * ramp + 0.35 * _smooth_field(rng, shape, 0.3 * min(shape))
        self.thickness = _rescale(raw, 0.5, 1.5).astype(np.float32)

        rng = _rng(self.seed, self.stream, _TAG_TILT)
        bend = rng.normal(size=(2, 2))
        tilt = np.stack(
            [
                _smooth_field(rng, shape, 0.25 * min(shape))
                + 2.0 * (bend[i, 0] * u + bend[i, 1] * v)
                for i in range(2)
            ],
            -1,
        )
        tilt -= tilt.mean(axis=(0, 1))
        self.tilt = (tilt * _MAX_TILT_MRAD / np.abs(tilt).max()).astype(np.float32)

    def _make_grains(self, rng):
        """Polycrystal: matrix grains, second-phase particles, shares, truth."""
        layout = _POLY_LAYOUT[self.scenario]
        shape = (self.rows, self.cols)
        area = self.rows * self.cols
        n_phases = layout["matrix_phases"]
        # Grains keep their size in nm, so bigger scans hold more of them.
        n_matrix = max(
            int(round(area / layout["grain_area"] * rng.uniform(0.85, 1.15))),
            2 * n_phases + 2,
            6,
        )
        seeds, index, weight = polycrystal.voronoi_grains(rng, shape, n_matrix)
        areas = np.bincount(index[..., 0].ravel(), minlength=n_matrix).astype(float)
        grain_phase = polycrystal.assign_phases(rng, areas, n_phases)
        if "minor" in layout:
            parts = self._minor_particles(rng, seeds, index, weight, layout["minor"], n_matrix)
        elif "precipitates" in layout:
            n = max(3, int(round(area * layout["precipitates"])))
            parts = polycrystal.embedded_precipitates(rng, shape, n)
        else:
            parts = np.zeros((0, *shape))
        if len(parts):
            index, weight = polycrystal.add_particles(index, weight, parts, first_id=n_matrix)
            grain_phase = np.concatenate([grain_phase, np.full(len(parts), n_phases)])
        self.grain_index, self.grain_weight = index, weight
        self.grain_phase = grain_phase.astype(np.int64)
        owner = np.where(index >= 0, self.grain_phase[np.maximum(index, 0)], -1)
        self.weights = np.stack(
            [np.where(owner == p, weight, 0).sum(-1) for p in range(len(self.phase_defs))], -1
        ).astype(np.float32)
        self.truth = np.argmax(self.weights, axis=-1).astype(np.int64)
        # The grain of a position is the largest share among the grains of
        # its truth phase, so that grain_phase[grains] == truth everywhere.
        score = np.where(owner == self.truth[..., None], weight, -1.0)
        pick = np.argmax(score, axis=-1)[..., None]
        self.grains = np.take_along_axis(index, pick, -1)[..., 0].astype(np.int64)

    def _minor_particles(self, rng, seeds, index, weight, coverage, first):
        """Full-column second-phase grains at triple junctions, 2-5 % of the scan."""
        from scipy.spatial import Voronoi

        shape = (self.rows, self.cols)
        area = self.rows * self.cols
        target = rng.uniform(*coverage) * area
        # ~22 positions (about 10 nm across) per particle, at least two.
        n = max(2, int(round(target / 22.0)))
        margin = 3.0
        vertices = Voronoi(seeds).vertices if len(seeds) >= 4 else np.zeros((0, 2))
        inside = (
            (vertices[:, 0] >= margin)
            & (vertices[:, 0] <= self.rows - 1 - margin)
            & (vertices[:, 1] >= margin)
            & (vertices[:, 1] <= self.cols - 1 - margin)
        )
        candidates = list(rng.permutation(vertices[inside]))
        while len(candidates) < 4 * n:
            candidates.append(
                rng.uniform((margin, margin), (self.rows - 1 - margin, self.cols - 1 - margin))
            )
        centres = []
        for c in candidates:
            if all(math.hypot(*(c - q)) >= 8.0 for q in centres):
                centres.append(c)
            if len(centres) == n:
                break
        centres = np.array(centres)
        areas = rng.uniform(0.7, 1.3, len(centres))
        areas *= target / areas.sum()
        shape_seed = int(rng.integers(2**63))
        for _ in range(10):
            # Same shapes every pass, only rescaled to hit the coverage.
            parts = polycrystal.ellipse_particles(
                np.random.default_rng(shape_seed), shape, centres, areas
            )
            idx, w = polycrystal.add_particles(index, weight, parts, first_id=first)
            covered = np.count_nonzero(np.where(idx >= first, w, 0).sum(-1) > 0.5)
            if abs(covered - target) <= 0.1 * target:
                break
            areas *= target / max(covered, 1)
        return parts

    def _make_grain_crystals(self):
        """Polycrystal: an orientation per grain and the reflections it shows."""
        rng = _rng(self.seed, self.stream, _TAG_STRUCT)
        n_grains = len(self.grain_phase)
        near = np.zeros(n_grains, dtype=bool)
        for p in range(len(self.phase_defs)):
            members = rng.permutation(np.flatnonzero(self.grain_phase == p))
            near[members[: (len(members) + 1) // 2]] = True
        margin = self.disk_radius_px + 3 * self.disk_sigma_px + self.pad + 0.5
        bx, by = self.beam0
        corners = np.array([[0, 0], [self.det_w, 0], [0, self.det_h], [self.det_w, self.det_h]])
        g_max = float(np.hypot(*(corners - [bx, by]).T).max()) * self.k_scale
        alpha = _CONVERGENCE_MRAD * 1e-3
        flat_index = self.grain_index.reshape(-1, self.grain_index.shape[-1])
        flat_tilt = self.tilt.reshape(-1, 2).astype(float)
        flat_t = self.thickness.reshape(-1) * _NOMINAL_THICKNESS_NM
        self.structures = []
        self.grain_rotation = np.empty((n_grains, 3, 3))
        self.grain_zone = []
        for grain in range(n_grains):
            _, crystal, composition = self.phase_defs[self.grain_phase[grain]]
            if near[grain]:
                axes = polycrystal.CRYSTALS[crystal]["zone_axes"]
                uvw = axes[int(rng.integers(len(axes)))]
                off = rng.uniform(0, _POLY_ZONE_TILT_DEG)
                rot = polycrystal.zone_axis_rotation(
                    crystal,
                    uvw,
                    in_plane_deg=rng.uniform(0, 360),
                    tilt_deg=off,
                    tilt_azimuth_deg=rng.uniform(0, 360),
                )
                self.grain_zone.append(f"[{' '.join(str(i) for i in uvw)}] {off:.1f} deg off")
            else:
                rot = polycrystal.random_rotations(rng, 1)[0]
                self.grain_zone.append(None)
            self.grain_rotation[grain] = rot
            hkl, g, xi = polycrystal.reflections(crystal, composition, g_max)
            g_lab = g @ rot.T
            px = bx + g_lab[:, 0] / self.k_scale
            py = by + g_lab[:, 1] / self.k_scale
            inside = (
                (px >= margin)
                & (px <= self.det_w - 1 - margin)
                & (py >= margin)
                & (py <= self.det_h - 1 - margin)
            )
            hkl, g_lab, xi = hkl[inside], g_lab[inside], xi[inside]
            s0 = polycrystal.excitation_error(g_lab)
            spread = alpha * np.hypot(g_lab[:, 0], g_lab[:, 1])
            # Bound each reflection over the grain's own tilts and thicknesses:
            # two-beam intensity <= 1 / (1 + (xi s)^2) and <= (pi t / xi)^2.
            where = (flat_index == grain).any(axis=1)
            shift = 1e-3 * flat_tilt[where] @ g_lab[:, :2].T
            lo = s0 - shift.max(0) - spread
            hi = s0 - shift.min(0) + spread
            s_min = np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(np.abs(lo), np.abs(hi)))
            bound = np.minimum(
                1 / (1 + (xi * s_min) ** 2), (math.pi * flat_t[where].max() / xi) ** 2
            )
            keep = bound > _POLY_MIN_INTENSITY
            hkl, g_lab, xi, s0, spread = (a[keep] for a in (hkl, g_lab, xi, s0, spread))
            gnorm = np.hypot(g_lab[:, 0], g_lab[:, 1])
            order = np.lexsort((np.arctan2(g_lab[:, 1], g_lab[:, 0]), np.round(gnorm, 6)))
            hkl, g_lab, xi, s0, spread = (a[order] for a in (hkl, g_lab, xi, s0, spread))
            self.structures.append(
                {
                    "key": crystal,
                    "label": polycrystal.CRYSTALS[crystal]["label"],
                    "g": g_lab[:, :2].astype(np.float64),
                    "hkl": [tuple(int(i) for i in row) for row in hkl],
                    "s0": s0.astype(np.float32),
                    "xi": xi.astype(np.float32),
                    "spread": spread.astype(np.float32),
                }
            )
        self.grain_source = np.arange(n_grains)

    def _make_sections_grains(self):
        """Fixed sections: grains are the connected regions of the phase map."""
        from scipy import ndimage

        grains = np.full(self.truth.shape, -1, dtype=np.int64)
        phase_of = []
        for p in range(len(self.phase_defs)):
            labels, n = ndimage.label(self.truth == p)
            grains[labels > 0] = labels[labels > 0] - 1 + len(phase_of)
            phase_of += [p] * n
        # Number the regions in reading order of their first position.
        first = np.unique(grains.ravel(), return_index=True)[1]
        order = np.argsort(np.argsort(first))
        self.grains = order[grains]
        self.grain_phase = np.array(phase_of, dtype=np.int64)[np.argsort(order)]
        self.grain_source = self.phase_structure[self.grain_phase]
        self.grain_rotation = np.stack([self.structures[i]["rotation"] for i in self.grain_source])
        self.grain_zone = [self.structures[i]["zone"] for i in self.grain_source]

    def _make_beam(self):
        rng = _rng(self.seed, self.stream, _TAG_BEAM)
        h, w = self.det_h, self.det_w
        signs = rng.choice([-1.0, 1.0], size=2)
        offset = signs * rng.uniform(0.03, 0.05, size=2) * np.array([w, h])
        self.beam0 = np.array([(w - 1) / 2, (h - 1) / 2]) + offset  # (x, y) px
        # Descan: mostly linear in the scan position plus a little curvature.
        u, v = _unit_grid((self.rows, self.cols))
        lin = rng.normal(size=(2, 2))
        quad = rng.normal(size=2) * 0.3
        drift = np.stack(
            [lin[i, 0] * u + lin[i, 1] * v + quad[i] * (u**2 + v**2) for i in range(2)], -1
        )
        drift -= drift.mean(axis=(0, 1))
        # Peak-to-peak excursion of 1-2 px on a 128 px camera.
        span = drift.reshape(-1, 2)
        span = math.hypot(*(span.max(0) - span.min(0)))
        target = rng.uniform(0.008, 0.015) * w
        self.drift = (drift * target / span).astype(np.float32)
        self.pad = int(math.ceil(np.abs(self.drift).max())) + 1
        self.disk_radius_px = _DISK_RADIUS / self.k_scale
        self.disk_sigma_px = 0.35 + 0.08 * self.disk_radius_px

    def _make_structures(self):
        rng = _rng(self.seed, self.stream, _TAG_STRUCT)
        margin = self.disk_radius_px + 3 * self.disk_sigma_px + self.pad + 0.5
        bx, by = self.beam0
        self.structures = []
        for key in self.structure_keys:
            spec = _STRUCTURES[key]
            b1, b2 = np.array(spec["basis"][0]), np.array(spec["basis"][1])
            angle = rng.uniform(0, 2 * math.pi)
            rot = np.array(
                [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
            )
            spin = np.eye(3)
            spin[:2, :2] = rot
            reach = self.k_scale * max(self.det_h, self.det_w)
            n = int(math.ceil(reach / min(np.linalg.norm(b1), np.linalg.norm(b2)))) + 1
            n1, n2 = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
            n1, n2 = n1.ravel(), n2.ravel()
            allowed, factor = spec["rule"](n1, n2)
            g = (n1[:, None] * b1 + n2[:, None] * b2) @ rot.T
            px = bx + g[:, 0] / self.k_scale
            py = by + g[:, 1] / self.k_scale
            inside = (
                (px >= margin)
                & (px <= self.det_w - 1 - margin)
                & (py >= margin)
                & (py <= self.det_h - 1 - margin)
            )
            keep = allowed & inside & ((n1 != 0) | (n2 != 0))
            n1, n2, g, factor = n1[keep], n2[keep], g[keep], factor[keep]
            gnorm = np.hypot(g[:, 0], g[:, 1])
            order = np.lexsort((np.arctan2(g[:, 1], g[:, 0]), np.round(gnorm, 6)))
            n1, n2, g, factor, gnorm = (a[order] for a in (n1, n2, g, factor, gnorm))
            # Friedel mates share extinction distance and phase; bending still
            # splits them because the excitation error is odd in g.
            canonical = [max((a, b), (-a, -b)) for a, b in zip(n1.tolist(), n2.tolist())]
            unique = sorted(set(canonical))
            xi = rng.uniform(0.8, 1.25, len(unique))
            phi = rng.uniform(0, 2 * math.pi, len(unique))
            amp = rng.uniform(0.4, 0.75, len(unique))
            pick = np.array([unique.index(c) for c in canonical], dtype=int)
            # Kinematic-ish: |F|^2 times an atomic form factor / Debye-Waller fall-off.
            weight = factor**2 * np.exp(-((gnorm / 7.0) ** 2))
            self.structures.append(
                {
                    "key": key,
                    "label": spec["label"],
                    "g": g.astype(np.float64),
                    "hkl": [tuple(int(i) for i in spec["hkl"](a, b)) for a, b in zip(n1, n2)],
                    "xi": (0.55 * (1 + gnorm / 6.0) * xi[pick]).astype(np.float32),
                    "phi": phi[pick].astype(np.float32),
                    "amp": amp[pick].astype(np.float32),
                    "base": (weight / weight.sum()).astype(np.float32),
                    "rotation": spin @ np.array(spec["frame"]),
                    "zone": spec["zone"],
                }
            )

    # --- diffraction --------------------------------------------------------
    def _templates(self):
        with self._lock:
            if "dp" not in self._cache:
                self._cache["dp"] = self._build_templates()
            return self._cache["dp"]

    def _build_templates(self):
        # Disks are kept as small windows: a dense (n_spots x pixels) matrix
        # product would spend >99 % of its time on zeros.
        p = self.pad
        shape = (self.det_h + 2 * p, self.det_w + 2 * p)
        bx, by = self.beam0 + p
        r, sigma = self.disk_radius_px, self.disk_sigma_px
        disks = [_disk_window(shape, by, bx, r, sigma)]
        for s in self.structures:
            for gx, gy in s["g"]:
                disks.append(
                    _disk_window(shape, by + gy / self.k_scale, bx + gx / self.k_scale, r, sigma)
                )
        yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
        k = np.hypot(yy - by, xx - bx) * self.k_scale
        # Inelastic halo near the beam plus thermal diffuse scattering that
        # peaks outside it, both centred on the (drifting) direct beam.
        halo = 1.0 / (1 + (k / 0.6) ** 2) ** 1.5
        tds = np.exp(-k / 3.5) / (1 + (0.8 / np.maximum(k, 1e-3)) ** 2)
        diffuse = 0.4 * halo / halo.sum() + 0.6 * tds / tds.sum()
        # The support film is uniform, so its ring has fixed counts.
        ring = np.exp(-0.5 * ((k - 4.7) / 0.45) ** 2)
        ring *= self.dose * self.dp_counts * _DP_RING / ring.sum()
        return {
            "diffuse": diffuse.astype(np.float32),
            "ring": ring.astype(np.float32),
            "disks": disks,
        }

    def spot_intensity(self, structure, thickness, tilt):
        """Expected counts in every disk of one structure at full weight."""
        if self.poly:
            bragg, _ = self._grain_fractions(structure, thickness, tilt)
            return self._elastic(thickness)[:, None] * bragg
        s = self.structures[structure]
        t = thickness[:, None]
        # Excitation error ~ g . tilt (rad * 1/nm). Broadcasting rather than
        # a matrix product: BLAS threads cost more than they save at K = 2.
        g = s["g"].astype(np.float32)
        excitation = (tilt[:, :1] * g[:, 0] + tilt[:, 1:] * g[:, 1]) * np.float32(1e-3)
        phase = (
            2 * np.pi * t / s["xi"][None, :]
            + np.pi * _NOMINAL_THICKNESS_NM * t * excitation
            + s["phi"][None, :]
        )
        scale = np.float32(self.dose * _DP_COUNTS * _DP_BRAGG)
        return scale * s["base"][None, :] * t * (1 + s["amp"][None, :] * np.cos(phase))

    def _elastic(self, t):
        d = np.float32(self.dose * self.dp_counts * _POLY_ELASTIC)
        return d * np.exp(-(t - 1) / np.float32(_POLY_ELASTIC_DECAY))

    def _grain_fractions(self, grain, thickness, tilt):
        """Fractions of the elastic beam in each disk of a grain, and direct."""
        s = self.structures[grain]
        g = s["g"].astype(np.float32)
        shift = (tilt[:, :1] * g[:, 0] + tilt[:, 1:] * g[:, 1]) * np.float32(1e-3)
        intensity = polycrystal.rocking_intensity(
            s["s0"][None, :] - shift,
            s["xi"][None, :],
            (thickness * np.float32(_NOMINAL_THICKNESS_NM))[:, None],
            s["spread"][None, :],
        )
        total = intensity.sum(axis=1)
        share = 1 / np.sqrt(1 + (total / np.float32(_POLY_MAX_BRAGG)) ** 2)
        return intensity * share[:, None], 1 - total * share

    def _poly_coefficients(self, t, tilt, index, weight):
        d = np.float32(self.dose * self.dp_counts)
        coef = np.zeros((t.size, 2 + int(self.spot_offsets[-1])), dtype=np.float32)
        coef[:, 0] = d * _DP_DIFFUSE * t * (0.8 + 0.2 * t)
        elastic = self._elastic(t)
        for grain in np.unique(index[index >= 0]).tolist():
            share = np.where(index == grain, weight, 0).sum(axis=1)
            rows = np.flatnonzero(share > 0)
            bragg, direct = self._grain_fractions(grain, t[rows], tilt[rows])
            scale = elastic[rows] * share[rows]
            o0, o1 = self.spot_offsets[grain], self.spot_offsets[grain + 1]
            coef[rows, 2 + o0 : 2 + o1] = scale[:, None] * bragg
            coef[rows, 1] += scale * direct
        return coef

    def _coefficients(self, r, c0, c1):
        t, tilt = self.thickness[r, c0:c1], self.tilt[r, c0:c1]
        if self.poly:
            return self._poly_coefficients(
                t, tilt, self.grain_index[r, c0:c1], self.grain_weight[r, c0:c1]
            )
        w = self.weights[r, c0:c1]
        d = np.float32(self.dose * _DP_COUNTS)
        # Columns: diffuse background, direct beam, then every Bragg disk.
        # Multiple scattering makes the diffuse part grow faster than t, and
        # drains the direct beam.
        columns = [
            (d * _DP_DIFFUSE * t * (0.8 + 0.2 * t))[:, None],
            (d * _DP_DIRECT * np.exp(-(t - 1) / 1.5))[:, None],
        ]
        for i in range(len(self.structures)):
            w_struct = w[:, self.phase_structure == i].sum(axis=1)
            columns.append(w_struct[:, None] * self.spot_intensity(i, t, tilt))
        return np.concatenate(columns, axis=1).astype(np.float32)

    def _render(self, r, c0, c1):
        """Noise-free patterns of positions (r, c0:c1), float32 (n, H, W)."""
        templates = self._templates()
        p, h, w = self.pad, self.det_h, self.det_w
        drift = self.drift[r, c0:c1]
        fx, fy = np.floor(drift[:, 0]), np.floor(drift[:, 1])
        ax, ay = drift[:, 0] - fx, drift[:, 1] - fy
        keys = np.stack([fy, fx], 1).astype(int)
        # Bilinear sub-pixel shift of a padded render. Sorting by the integer
        # part of the drift makes each group a contiguous slab that reads the
        # same window of the canvas, so the shift is two lerps on views.
        order = np.lexsort((keys[:, 1], keys[:, 0]))
        n = order.size
        coef = self._coefficients(r, c0, c1)[order]
        canvas = coef[:, :1] * templates["diffuse"].reshape(1, -1)
        canvas += templates["ring"].reshape(1, -1)
        canvas = canvas.reshape(n, h + 2 * p, w + 2 * p)
        # A polycrystal batch meets a few grains only: skip the disks of the
        # others (adding exact zeros would not change the sums).
        for j in (np.flatnonzero(coef[:, 1:].any(axis=0)) + 1).tolist():
            y0, x0, window = templates["disks"][j - 1]
            wy, wx = window.shape
            canvas[:, y0 : y0 + wy, x0 : x0 + wx] += coef[:, j, None, None] * window
        change = np.flatnonzero(np.any(np.diff(keys[order], axis=0) != 0, axis=1)) + 1
        out = np.empty((n, h, w), dtype=np.float32)
        for s0, s1 in zip([0, *change], [*change, n]):
            ky, kx = keys[order[s0]]
            y0, x0 = p - ky - 1, p - kx - 1
            c = canvas[s0:s1]
            tmp = c[:, y0 : y0 + h] - c[:, y0 + 1 : y0 + 1 + h]
            tmp *= ay[order[s0:s1], None, None]
            tmp += c[:, y0 + 1 : y0 + 1 + h]
            blk = tmp[:, :, x0 : x0 + w] - tmp[:, :, x0 + 1 : x0 + 1 + w]
            blk *= ax[order[s0:s1], None, None]
            blk += tmp[:, :, x0 + 1 : x0 + 1 + w]
            out[order[s0:s1]] = blk
        # Rounding in the lerps can leave -1e-9 where a disk edge meets zero.
        np.maximum(out, 0, out=out)
        return out

    def _batches(self):
        # About 4 MB of float32 patterns at a time: big enough to vectorise,
        # small enough that temporaries are recycled instead of page-faulted.
        step = max(1, min(self.cols, 2**20 // (self.det_h * self.det_w)))
        return [(c0, min(c0 + step, self.cols)) for c0 in range(0, self.cols, step)]

    def expected_dp(self, r0, r1):
        """Noise-free patterns of rows r0:r1, float32 (rows, cols, H, W)."""
        out = np.empty((r1 - r0, self.cols, self.det_h, self.det_w), dtype=np.float32)
        for r in range(r0, r1):
            for c0, c1 in self._batches():
                out[r - r0, c0:c1] = self._render(r, c0, c1)
        return out

    def dp_block(self, rows):
        rows = np.asarray(rows)
        out = np.empty((rows.size, self.cols, self.det_h, self.det_w), dtype=np.uint16)
        for i, r in enumerate(rows.tolist()):
            rng = _rng(self.seed, self.stream, _TAG_DP, r)
            for c0, c1 in self._batches():
                counts = rng.poisson(self._render(r, c0, c1))
                np.minimum(counts, _UINT16_MAX, out=counts)
                out[i, c0:c1] = counts
        return out

    # --- EDS --------------------------------------------------------------
    def energy_edges(self):
        return (np.arange(self.channels + 1) - 0.5) * self.e_scale

    def _eds_templates(self):
        with self._lock:
            if "eds" not in self._cache:
                norm = _eds_norm()
                edges = self.energy_edges()
                phases = []
                for _, _, comp in self.phase_defs:
                    spec = _characteristic(edges, comp) + norm["continuum"] * _continuum(
                        edges, comp
                    )
                    phases.append(spec * norm["total"] * _EDS_COUNTS)
                cu = _characteristic(edges, {"Cu": 100.0}) * norm["cu"] * _EDS_CU_COUNTS
                self._cache["eds"] = (
                    np.array(phases, dtype=np.float32),
                    cu.astype(np.float32),
                )
            return self._cache["eds"]

    def expected_eds(self, r0, r1):
        """Noise-free spectra of rows r0:r1, float32 (rows, cols, channels)."""
        phases, cu = self._eds_templates()
        w = self.weights[r0:r1] * self.thickness[r0:r1, :, None]
        out = np.broadcast_to(cu, (*w.shape[:2], cu.size)).copy()
        for k in range(phases.shape[0]):
            out += w[..., k, None] * phases[k]
        out *= np.float32(self.dose)
        return out

    def eds_block(self, rows):
        rows = np.asarray(rows)
        out = np.empty((rows.size, self.cols, self.channels), dtype=np.uint16)
        for i, r in enumerate(rows.tolist()):
            rng = _rng(self.seed, self.stream, _TAG_EDS, r)
            counts = rng.poisson(self.expected_eds(r, r + 1)[0])
            np.minimum(counts, _UINT16_MAX, out=counts)
            out[i] = counts
        return out


def _dp_block(rows, gen):
    return gen.dp_block(rows)


def _eds_block(rows, gen):
    return gen.eds_block(rows)


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------
class SyntheticScan:
    """A synthetic paired 4D-STEM / STEM-EDS scan with its ground truth.

    Returned by :func:`synthetic_scan`; not meant to be built directly.

    Attributes
    ----------
    dp : pyxem.signals.Diffraction2D or pyxem.signals.LazyDiffraction2D
        Diffraction patterns (HyperSpy's ``Signal2D`` or ``LazySignal2D``
        with ``diffraction_class="hyperspy"``), uint16 counts, axes ``("x", "y" | "kx", "ky")``
        with the scan in nm and the detector in 1/nm (zero at the detector
        centre, not at the direct beam).
    eds : exspy.signals.EDSTEMSpectrum or exspy.signals.LazyEDSTEMSpectrum
        Spectrum image, uint16 counts, axes ``("x", "y" | "Energy")``; the
        navigation axes equal those of ``dp``.
    truth : numpy.ndarray of int, shape (rows, cols)
        Ground-truth phase index, ``0 .. len(phases) - 1``: the phase with the
        largest share of the column.
    phases : list of str
        Phase names; ``phases[i]`` is the phase of ``truth == i``.
    scenario, size : str
        The arguments of :func:`synthetic_scan`.
    seed : int
        The seed the scan was generated from.
    dose : float
        Dose multiplier (1 = default counts).
    lazy : bool
        Whether ``dp`` and ``eds`` are lazy.
    description : str
        What differs between the phases and what the nuisances are.
    phase_weights : numpy.ndarray, shape (rows, cols, n_phases)
        Share of each phase in the column (mixed at interfaces and in
        embedded precipitates); ``truth`` is its argmax.
    thickness : numpy.ndarray, shape (rows, cols)
        Relative thickness (0.5 - 1.5) that scales scattered electrons and
        X-rays.
    tilt : numpy.ndarray, shape (rows, cols, 2)
        Local crystal tilt (bending) in mrad, components (x, y).
    beam_center : numpy.ndarray, shape (rows, cols, 2)
        Direct-beam position in detector pixels, (x, y) = (column, row),
        including the descan drift.
    structures : list of str
        Structure of each phase: structure and zone axis for the fixed-section
        scenarios, e.g. ``"bcc [001]"``; crystal, space group and lattice
        parameters for the polycrystals (:data:`POLY_SCENARIOS`), e.g.
        ``"fcc, Fm-3m, a = 0.3595 nm"``.
    compositions : list of dict
        Composition of each phase in atomic percent.
    elements : list of str
        Elements present in the spectra, the Cu of the grid included.
    g_vectors : list of numpy.ndarray
        Per phase, the reciprocal-lattice vectors (gx, gy) in 1/nm of the
        rendered Bragg disks, relative to the direct beam. For a polycrystal,
        the disks of all the phase's grains, grain after grain (in the order
        of ``grain_g_vectors``).
    hkl : list of list of tuple
        Per phase, the Miller indices of those disks (three-index, also for
        hcp).
    grains : numpy.ndarray of int, shape (rows, cols)
        Ground-truth grain index, ``0 .. len(grain_phases) - 1``: among the
        grains of the position's ``truth`` phase, the one with the largest
        share of the column, so ``grain_phases[grains] == truth``. For the
        fixed-section scenarios (one orientation per phase) the grains are
        the 4-connected regions of ``truth``.
    grain_phases : numpy.ndarray of int, shape (n_grains,)
        Phase of each grain.
    grain_orientations : numpy.ndarray, shape (n_grains, 3, 3)
        Rotation of each grain, crystal Cartesian coordinates -> lab frame
        (x, y along the detector's kx, ky; z along the beam); the crystal
        frame is that of :func:`stemfuse_hs.data.polycrystal.direct_lattice`.
    grain_zone_axes : list of str or None
        Per grain, the zone axis [uvw] it was placed near and how far off it
        is (e.g. ``"[0 1 1] 0.8 deg off"``), or None for a randomly oriented
        grain. The fixed sections give their zone axis, e.g. ``"[011]"``.
    grain_g_vectors : list of numpy.ndarray
        Per grain, the (gx, gy) in 1/nm of its rendered Bragg disks.
    grain_hkl : list of list of tuple
        Per grain, their Miller indices.

    Examples
    --------
    >>> from stemfuse_hs.data import synthetic_scan
    >>> scan = synthetic_scan("structure_only", size="tiny", seed=1)
    >>> scan.phases
    ['austenite (fcc)', 'martensite (bcc)']
    >>> scan.truth.shape
    (32, 48)

    A polycrystal: one phase in several grains of different orientations.

    >>> poly = synthetic_scan("poly_structure", size="tiny", seed=0, lazy=True)
    >>> bool((poly.grain_phases[poly.grains] == poly.truth).all())
    True
    >>> bool(min(np.bincount(poly.grain_phases)) >= 2)
    True
    """

    def __init__(self, *, dp, eds, gen, lazy):
        self.dp = dp
        self.eds = eds
        self._gen = gen
        self.lazy = lazy
        self.scenario = gen.scenario
        self.size = gen.size
        self.seed = gen.seed
        self.dose = gen.dose
        self.truth = gen.truth.copy()
        self.phases = [name for name, _, _ in gen.phase_defs]
        self.description = _description(gen.scenario)
        self.phase_weights = gen.weights.copy()
        self.thickness = gen.thickness.copy()
        self.tilt = gen.tilt.copy()
        self.beam_center = (gen.beam0[None, None, :] + gen.drift).astype(np.float32)
        self.structures = [s for _, s, _ in gen.phase_defs]
        self.compositions = [dict(c) for _, _, c in gen.phase_defs]
        self.elements = _scan_elements(gen)
        self.grains = gen.grains.copy()
        self.grain_phases = gen.grain_phase.copy()
        self.grain_orientations = gen.grain_rotation.copy()
        self.grain_zone_axes = list(gen.grain_zone)
        self.grain_g_vectors = [gen.structures[i]["g"].copy() for i in gen.grain_source]
        self.grain_hkl = [list(gen.structures[i]["hkl"]) for i in gen.grain_source]
        if gen.poly:
            self.structures = [polycrystal.CRYSTALS[s]["label"] for _, s, _ in gen.phase_defs]
            members = [np.flatnonzero(gen.grain_phase == p) for p in range(len(self.phases))]
            self.g_vectors = [
                np.concatenate([self.grain_g_vectors[g] for g in m]).reshape(-1, 2)
                for m in members
            ]
            self.hkl = [[h for g in m for h in self.grain_hkl[g]] for m in members]
        else:
            self.g_vectors = [gen.structures[i]["g"].copy() for i in gen.phase_structure]
            self.hkl = [list(gen.structures[i]["hkl"]) for i in gen.phase_structure]

    def __repr__(self):
        rows, cols = self.truth.shape
        return (
            f"<SyntheticScan {self.scenario!r}, size={self.size!r}, seed={self.seed}, "
            f"scan {rows}x{cols}, {len(self.phases)} phases, "
            f"{'lazy' if self.lazy else 'in memory'}>"
        )

    @property
    def coverage(self):
        """Fraction of the scan covered by each phase (from ``truth``).

        Returns
        -------
        numpy.ndarray
            Shape (n_phases,), sums to 1.

        Examples
        --------
        >>> from stemfuse_hs.data import synthetic_scan
        >>> scan = synthetic_scan("four_phases", size="tiny", lazy=True)
        >>> bool(scan.coverage.min() >= 0.12)
        True
        """
        return np.bincount(self.truth.ravel(), minlength=len(self.phases)) / self.truth.size

    def truth_signal(self):
        """The ground-truth phase map as a HyperSpy signal, for plotting.

        Returns
        -------
        hyperspy.signals.Signal2D
            Integer phase indices with the scan axes ``x`` and ``y`` (nm) of
            ``dp``; ``metadata.Sample.phases`` lists the phase names.

        Examples
        --------
        >>> from stemfuse_hs.data import synthetic_scan
        >>> scan = synthetic_scan("precipitates", size="tiny", lazy=True)
        >>> truth = scan.truth_signal()
        >>> truth.axes_manager.signal_shape
        (48, 32)
        >>> truth.plot(cmap="viridis")  # doctest: +SKIP
        """
        import hyperspy.api as hs

        axes = [dict(a) for a in _nav_axes(self.truth.shape)]
        for a in axes:
            a["navigate"] = False
        s = hs.signals.Signal2D(self.truth.copy(), axes=axes)
        s.metadata.General.title = f"Ground truth: {self.scenario} (seed {self.seed})"
        s.metadata.set_item("Sample.phases", list(self.phases))
        return s

    def spot_intensities(self, phase):
        """Noise-free expected counts in each Bragg disk of one phase.

        Parameters
        ----------
        phase : int
            Phase index (a value of ``truth``).

        Returns
        -------
        numpy.ndarray
            Shape (rows, cols, n_spots), float32, in the order of
            ``g_vectors[phase]``: the counts each disk would hold if the
            column were that phase alone; NaN where ``truth != phase``. For a
            polycrystal the disks of a grain hold values only where
            ``grains`` is that grain (NaN elsewhere).

        See Also
        --------
        grain_spot_intensities

        Examples
        --------
        >>> from stemfuse_hs.data import synthetic_scan
        >>> scan = synthetic_scan("four_phases", size="tiny", lazy=True)
        >>> spots = scan.spot_intensities(0)
        >>> spots.shape[-1] == len(scan.g_vectors[0])
        True
        """
        if not isinstance(phase, numbers.Integral) or not 0 <= phase < len(self.phases):
            raise ValueError(
                f"phase={phase!r} is not one of {list(range(len(self.phases)))}"
            )
        gen = self._gen
        if gen.poly:
            members = np.flatnonzero(self.grain_phases == phase).tolist()
            values = np.concatenate(
                [self.grain_spot_intensities(g) for g in members], axis=-1
            )
            values[self.truth != phase] = np.nan
            return values
        values = gen.spot_intensity(
            int(gen.phase_structure[phase]),
            gen.thickness.reshape(-1),
            gen.tilt.reshape(-1, 2),
        ).reshape(gen.rows, gen.cols, -1)
        values[self.truth != phase] = np.nan
        return values

    def grain_spot_intensities(self, grain):
        """Noise-free expected counts in each Bragg disk of one grain.

        Parameters
        ----------
        grain : int
            Grain index (a value of ``grains``).

        Returns
        -------
        numpy.ndarray
            Shape (rows, cols, n_spots), float32, in the order of
            ``grain_g_vectors[grain]``: the counts each disk would hold if
            the column were that grain alone, at the position's thickness and
            bending tilt; NaN where ``grains != grain``.

        Examples
        --------
        >>> import numpy as np
        >>> from stemfuse_hs.data import synthetic_scan
        >>> scan = synthetic_scan("poly_chemistry", size="tiny", lazy=True)
        >>> spots = scan.grain_spot_intensities(0)
        >>> spots.shape[-1] == len(scan.grain_g_vectors[0])
        True
        >>> inside = spots[scan.grains == 0]
        >>> bool(np.isfinite(inside).all() and (inside >= 0).all())
        True
        """
        n = len(self.grain_phases)
        if not isinstance(grain, numbers.Integral) or isinstance(grain, bool) or not 0 <= grain < n:
            raise ValueError(f"grain={grain!r} is not an integer in [0, {n})")
        gen = self._gen
        values = gen.spot_intensity(
            int(gen.grain_source[grain]),
            gen.thickness.reshape(-1),
            gen.tilt.reshape(-1, 2),
        ).reshape(gen.rows, gen.cols, -1)
        values[self.grains != grain] = np.nan
        return values

    def expected_dp(self, rows=slice(None)):
        """Noise-free diffraction patterns (the Poisson means) of some rows.

        Parameters
        ----------
        rows : slice, optional
            Scan rows to render (step 1); all rows by default, which for big
            sizes needs a lot of memory (float32).

        Returns
        -------
        numpy.ndarray
            float32, shape (n_rows, cols, H, W).

        Examples
        --------
        >>> from stemfuse_hs.data import synthetic_scan
        >>> scan = synthetic_scan("four_phases", size="tiny", lazy=True)
        >>> scan.expected_dp(slice(0, 2)).shape
        (2, 48, 32, 32)
        """
        r0, r1 = _row_range(rows, self._gen.rows)
        return self._gen.expected_dp(r0, r1)

    def expected_eds(self, rows=slice(None)):
        """Noise-free spectra (the Poisson means) of some rows.

        Parameters
        ----------
        rows : slice, optional
            Scan rows (step 1); all rows by default.

        Returns
        -------
        numpy.ndarray
            float32, shape (n_rows, cols, channels).

        Examples
        --------
        >>> from stemfuse_hs.data import synthetic_scan
        >>> scan = synthetic_scan("four_phases", size="tiny", lazy=True)
        >>> scan.expected_eds().shape
        (32, 48, 512)
        """
        r0, r1 = _row_range(rows, self._gen.rows)
        return self._gen.expected_eds(r0, r1)


def _row_range(rows, n):
    if not isinstance(rows, slice):
        raise ValueError(f"rows={rows!r} is not a slice")
    r0, r1, step = rows.indices(n)
    if step != 1:
        raise ValueError(f"rows={rows!r} must have step 1")
    return r0, max(r0, r1)


def _scan_elements(gen):
    return sorted({el for _, _, comp in gen.phase_defs for el in comp} | {"Cu"})


def _nav_axes(scan_shape):
    rows, cols = scan_shape
    return [
        {"name": "y", "size": rows, "scale": _NAV_SCALE_NM, "offset": 0.0, "units": "nm",
         "navigate": True},
        {"name": "x", "size": cols, "scale": _NAV_SCALE_NM, "offset": 0.0, "units": "nm",
         "navigate": True},
    ]


def _check_choice(name, value, allowed):
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {list(allowed)}")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def synthetic_scan(
    scenario="four_phases",
    size="tiny",
    seed=0,
    lazy=False,
    *,
    scan_shape=None,
    dose=1.0,
    chunk_rows=None,
    diffraction_class="pyxem",
):
    """Generate a deterministic paired 4D-STEM / STEM-EDS scan with ground truth.

    Parameters
    ----------
    scenario : str, optional
        One of :data:`SCENARIOS`: ``"chemistry_only"``, ``"structure_only"``,
        ``"four_phases"`` (default) or ``"precipitates"`` (one fixed zone-axis
        section per phase), or one of the polycrystals of
        :data:`POLY_SCENARIOS`: ``"poly_chemistry"``, ``"poly_structure"``,
        ``"poly_four_phases"``, ``"poly_hcp"``, ``"poly_minor_phase"`` or
        ``"poly_precipitates"`` (each phase in several grains of different
        orientations, rendered by :mod:`stemfuse_hs.data.polycrystal`).
    size : str, optional
        One of :data:`SIZES`: ``"tiny"`` (default, for unit tests),
        ``"small"``, ``"published"`` (~1 GB of diffraction data) or
        ``"large"`` (8.6 GB, lazy only).
    seed : int, optional
        Non-negative seed; the same arguments always give the same counts.
    lazy : bool, optional
        Return lazy signals backed by dask arrays chunked over scan rows. The
        eager result is the same graph computed, bit for bit.
    scan_shape : tuple of int, optional
        ``(rows, cols)`` overriding the size's scan shape (each >= 8); the
        detector and the channels stay those of ``size``.
    dose : float, optional
        Multiplies the electron dose and the X-ray counts (default 1: about
        6e4 electrons per pattern and 150 specimen X-rays per spectrum at
        relative thickness 1). Counts clip at 65535.
    chunk_rows : int, optional
        Scan rows per dask chunk; by default at most 32 MiB of diffraction
        data and at least 8 chunks. Does not change the data.
    diffraction_class : {"pyxem", "hyperspy"}, optional
        The class of ``dp``: pyxem's ``Diffraction2D`` (default, or
        ``LazyDiffraction2D``), or HyperSpy's plain ``Signal2D`` (or
        ``LazySignal2D``) with the same data, axes and metadata, which does
        not import pyxem (about 5 s, and much more while numba compiles
        pyxem's and orix's functions on a fresh install). ``stemfuse demo``
        uses ``"hyperspy"``: its pipeline needs no pyxem method.

    Returns
    -------
    SyntheticScan
        ``dp``, ``eds``, ``truth``, ``phases`` and the generator's fields.

    Raises
    ------
    ValueError
        If an argument is not allowed, or if ``lazy=False`` would hold more
        than 4 GiB of diffraction data in memory.

    See Also
    --------
    SCENARIOS, SIZES

    Notes
    -----
    Each scan row's Poisson noise is drawn from its own
    ``numpy.random.default_rng(SeedSequence(seed, spawn_key=(scenario,
    modality, row)))``, so the data do not depend on ``chunk_rows`` or on the
    scheduler. Rendering is vectorised: per structure, the Bragg disks are
    precomputed soft-edged windows at zero drift, scaled per position by their
    thickness- and tilt-dependent intensities; the descan is a bilinear
    sub-pixel shift of the padded render.

    Examples
    --------
    >>> from stemfuse_hs.data import synthetic_scan
    >>> scan = synthetic_scan("four_phases", size="tiny", seed=0)
    >>> scan.dp.data.shape, scan.dp.data.dtype
    ((32, 48, 32, 32), dtype('uint16'))
    >>> scan.eds.data.shape
    (32, 48, 512)
    >>> scan.phases
    ['Fe-rich bcc', 'Fe-rich fcc', 'Ni-rich bcc', 'Ni-rich fcc']

    Out-of-core: nothing is computed until asked for.

    >>> big = synthetic_scan("precipitates", size="large", lazy=True)
    >>> big.dp
    <LazyDiffraction2D, title: Synthetic 4D-STEM: precipitates (large, seed 0), dimensions: (256, 256|256, 256)>

    A polycrystal: two phases, each in several orientations; the grain map
    is part of the ground truth.

    >>> poly = synthetic_scan("poly_structure", size="tiny", seed=0)
    >>> poly.phases
    ['austenite (fcc)', 'martensite (bcc)']
    >>> len(poly.grain_phases) > 2 * len(poly.phases)
    True
    >>> bool((poly.grain_phases[poly.grains] == poly.truth).all())
    True
    """
    _check_choice("scenario", scenario, SCENARIOS)
    _check_choice("size", size, _SIZES)
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed={seed!r} is not a non-negative integer")
    if not isinstance(lazy, (bool, np.bool_)):
        raise ValueError(f"lazy={lazy!r} is not one of [True, False]")
    lazy = bool(lazy)
    if scan_shape is None:
        scan_shape = _SIZES[size]["scan_shape"]
    elif (
        not isinstance(scan_shape, (tuple, list))
        or len(scan_shape) != 2
        or not all(_is_int(n) and n >= _MIN_SCAN_SIDE for n in scan_shape)
    ):
        raise ValueError(
            f"scan_shape={scan_shape!r} is not a (rows, cols) pair of integers "
            f">= {_MIN_SCAN_SIDE}"
        )
    scan_shape = (int(scan_shape[0]), int(scan_shape[1]))
    if (
        isinstance(dose, bool)
        or not isinstance(dose, numbers.Real)
        or not math.isfinite(dose)
        or dose <= 0
    ):
        raise ValueError(f"dose={dose!r} is not a positive finite number")
    if chunk_rows is not None and (not _is_int(chunk_rows) or chunk_rows < 1):
        raise ValueError(f"chunk_rows={chunk_rows!r} is not a positive integer or None")
    _check_choice("diffraction_class", diffraction_class, DIFFRACTION_CLASSES)

    h, w = _SIZES[size]["detector"]
    dp_bytes = scan_shape[0] * scan_shape[1] * h * w * 2
    if not lazy and dp_bytes > 4 * 2**30:
        raise ValueError(
            f"lazy=False with size={size!r} would hold {dp_bytes / 1e9:.1f} GB of "
            "diffraction data in memory; pass lazy=True (or a smaller scan_shape)"
        )

    gen = _Generator(scenario, size, int(seed), scan_shape, dose)
    rows, cols = scan_shape
    if chunk_rows is None:
        # Small enough for memory, many enough for all cores to take part.
        chunk_rows = max(
            1, min(_CHUNK_BYTES // (cols * h * w * 2), math.ceil(rows / _MIN_CHUNKS))
        )
    chunk_rows = min(int(chunk_rows), rows)
    token = dask.base.tokenize(gen, chunk_rows)
    row_index = da.arange(rows, chunks=chunk_rows)
    dp_data = da.map_blocks(
        _dp_block,
        row_index,
        gen=gen,
        new_axis=[1, 2, 3],
        chunks=(row_index.chunks[0], (cols,), (h,), (w,)),
        dtype=np.uint16,
        meta=np.empty((0, 0, 0, 0), dtype=np.uint16),
        name=f"stemfuse-synthetic-dp-{token}",
    )
    eds_data = da.map_blocks(
        _eds_block,
        row_index,
        gen=gen,
        new_axis=[1, 2],
        chunks=(row_index.chunks[0], (cols,), (gen.channels,)),
        dtype=np.uint16,
        meta=np.empty((0, 0, 0), dtype=np.uint16),
        name=f"stemfuse-synthetic-eds-{token}",
    )
    if not lazy:
        # Storing into preallocated arrays keeps the peak at one copy.
        dp_np = np.empty(dp_data.shape, dtype=np.uint16)
        eds_np = np.empty(eds_data.shape, dtype=np.uint16)
        # Without distributed imported there is no client: hand dask its default
        # scheduler for arrays rather than have it import distributed to look.
        scheduler = None if "distributed" in sys.modules else dask.threaded.get
        da.store([dp_data, eds_data], [dp_np, eds_np], lock=False, scheduler=scheduler)
        dp_data, eds_data = dp_np, eds_np

    dp = _make_dp(dp_data, gen, lazy, diffraction_class)
    eds = _make_eds(eds_data, gen, lazy)
    return SyntheticScan(dp=dp, eds=eds, gen=gen, lazy=lazy)


def _title(gen, what):
    return f"Synthetic {what}: {gen.scenario} ({gen.size}, seed {gen.seed})"


def _make_dp(data, gen, lazy, diffraction_class="pyxem"):
    if diffraction_class == "pyxem":
        import pyxem.signals as signals

        cls = signals.LazyDiffraction2D if lazy else signals.Diffraction2D
    else:
        import hyperspy.signals as signals

        cls = signals.LazySignal2D if lazy else signals.Signal2D
    axes = _nav_axes((gen.rows, gen.cols)) + [
        {"name": name, "size": n, "scale": gen.k_scale, "offset": -n / 2 * gen.k_scale,
         "units": "1/nm", "navigate": False}
        for name, n in (("ky", gen.det_h), ("kx", gen.det_w))
    ]
    s = cls(data, axes=axes)
    s.metadata.General.title = _title(gen, "4D-STEM")
    s.metadata.set_item("Acquisition_instrument.TEM.beam_energy", _BEAM_ENERGY_KEV)
    s.metadata.set_item("Acquisition_instrument.TEM.convergence_angle", _CONVERGENCE_MRAD)
    s.metadata.set_item(
        "Acquisition_instrument.TEM.Detector.Diffraction.exposure_time", _DWELL_S
    )
    return s


def _make_eds(data, gen, lazy):
    import exspy.signals as es

    axes = _nav_axes((gen.rows, gen.cols)) + [
        {"name": "Energy", "size": gen.channels, "scale": gen.e_scale, "offset": 0.0,
         "units": "keV", "navigate": False}
    ]
    cls = es.LazyEDSTEMSpectrum if lazy else es.EDSTEMSpectrum
    s = cls(data, axes=axes)
    s.metadata.General.title = _title(gen, "STEM-EDS")
    s.set_microscope_parameters(
        beam_energy=_BEAM_ENERGY_KEV,
        live_time=_DWELL_S,
        energy_resolution_MnKa=_ENERGY_RESOLUTION_MNKA_EV,
        display=False,
    )
    s.add_elements(_scan_elements(gen))
    s.add_lines()
    return s
