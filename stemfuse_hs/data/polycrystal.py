"""Kinematic diffraction of 3-D crystals in any orientation, and polycrystals.

The physics behind the ``poly_*`` scenarios of
:func:`stemfuse_hs.data.synthetic_scan`. Everything here is plain numpy and
deterministic given a ``numpy.random.Generator``; the rendering into
diffraction patterns (disks, descan, diffuse background, noise) stays in
:mod:`stemfuse_hs.data.synthetic`.

Model
-----
* Crystals are real 3-D structures (:data:`CRYSTALS`): lattice vectors and the
  fractional positions of the atoms in the conventional cell. A site belongs
  to a sublattice: ``"A"`` holds the composition's average atom (a random
  solid solution), ``"M"`` the average of the metals and ``"X"`` the average
  of the interstitials (C, N) of compounds such as TiC.
* Electron scattering factors are a screened-Coulomb (Wentzel / Mott-Bethe)
  form, ``f(g) ~ Z / ((2 pi g)^2 + 1 / R^2)`` with the Thomas-Fermi radius
  ``R = 0.885 a0 Z^(-1/3)``, times a Debye-Waller factor; one overall scale
  makes the extinction distance of bcc Fe 110 at 200 kV 35 nm. They are
  approximations (to tens of percent) of tabulated factors.
* Structure factors ``F(hkl) = sum_j f_j(g) exp(2 pi i hkl . x_j)`` give the
  extinction distance ``xi = pi V / (lambda |F|)`` of every reciprocal-lattice
  point within the detector's reach.
* A grain's orientation is a rotation matrix taking crystal Cartesian
  coordinates to the lab frame, whose z axis is the beam. The excitation
  error of reflection g is ``s = -(g_z + tau . g_xy) - lambda |g|^2 / 2``
  (Ewald sphere at 200 kV), where ``tau`` is the local bending tilt.
* Each reflection's intensity is the two-beam rocking curve
  ``(pi t / xi)^2 sinc^2(t s_eff)`` with ``s_eff = sqrt(s^2 + 1 / xi^2)``: the
  kinematic ``sinc^2(t s)`` shape factor away from the Bragg condition,
  bounded by Pendelloesung at it, so intensities oscillate with the
  thickness ``t`` and change with bending. Reflections are independent: no
  many-beam (dynamical) coupling, no double diffraction into kinematically
  forbidden reflections, no absorption beyond a smooth loss, no Kikuchi
  lines or HOLZ detail.
* The probe converges (1.5 mrad): every disk integrates the rocking curve
  over the excitation errors of the incident directions in the cone,
  ``s0 +- alpha |g_xy|``, weighted by the chord length of the disk.

Examples
--------
>>> import numpy as np
>>> from stemfuse_hs.data.polycrystal import kinematic_pattern, zone_axis_rotation
>>> rot = zone_axis_rotation("fcc Fe", (0, 0, 1))
>>> g, hkl, intensity = kinematic_pattern("fcc Fe", {"Fe": 100.0}, rot, thickness_nm=60.0)
>>> strongest = hkl[int(np.argmax(intensity))].tolist()
>>> sorted(abs(i) for i in strongest)  # a 200-type reflection of the [001] zone
[0, 0, 2]
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = [
    "CRYSTALS",
    "WAVELENGTH_NM",
    "CONVERGENCE_MRAD",
    "direct_lattice",
    "reflections",
    "scattering_factor",
    "random_rotations",
    "zone_axis_rotation",
    "excitation_error",
    "rocking_intensity",
    "kinematic_pattern",
]

WAVELENGTH_NM = 0.0025079  # relativistic electron wavelength at 200 kV
CONVERGENCE_MRAD = 1.5
_BOHR_NM = 0.052918
_DEBYE_WALLER_NM2 = 0.0035  # B = 0.35 A^2, room-temperature transition metals
_XI_FE110_NM = 35.0  # calibration target, bcc Fe 110 at 200 kV
_INTERSTITIALS = frozenset({"C", "N", "B", "O"})
_Z = {"C": 6, "N": 7, "O": 8, "Ti": 22, "V": 23, "Cr": 24, "Mn": 25, "Fe": 26,
      "Co": 27, "Ni": 28, "Cu": 29, "Ga": 31, "Mo": 42}

_FCC = ((0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0))
_CUBIC_ZONES = ((0, 0, 1), (0, 1, 1), (1, 1, 1), (1, 1, 2))
# [0001], [2-1-10] and [01-10] in three-index notation.
_HEX_ZONES = ((0, 0, 1), (1, 0, 0), (1, 2, 0))


def _cubic(a):
    return ((a, 0.0, 0.0), (0.0, a, 0.0), (0.0, 0.0, a))


def _hexagonal(a, c):
    return ((a, 0.0, 0.0), (-a / 2, a * math.sqrt(3) / 2, 0.0), (0.0, 0.0, c))


#: Crystal name -> ``label``, ``lattice`` (rows: a, b, c in nm, Cartesian),
#: ``sites`` ((sublattice, fractional position), ...) and low-index
#: ``zone_axes`` [uvw] that near-zone grains are snapped to.
CRYSTALS = {
    "fcc Fe": {
        "label": "fcc, Fm-3m, a = 0.3595 nm",
        "lattice": _cubic(0.3595),
        "sites": tuple(("A", p) for p in _FCC),
        "zone_axes": _CUBIC_ZONES,
    },
    "bcc Fe": {
        "label": "bcc, Im-3m, a = 0.2866 nm",
        "lattice": _cubic(0.2866),
        "sites": (("A", (0, 0, 0)), ("A", (0.5, 0.5, 0.5))),
        "zone_axes": _CUBIC_ZONES,
    },
    "bcc Fe-Cr": {
        "label": "bcc, Im-3m, a = 0.2877 nm",
        "lattice": _cubic(0.2877),
        "sites": (("A", (0, 0, 0)), ("A", (0.5, 0.5, 0.5))),
        "zone_axes": _CUBIC_ZONES,
    },
    "fcc Co": {
        "label": "fcc, Fm-3m, a = 0.3545 nm",
        "lattice": _cubic(0.3545),
        "sites": tuple(("A", p) for p in _FCC),
        "zone_axes": _CUBIC_ZONES,
    },
    "hcp Co": {
        "label": "hcp, P6_3/mmc, a = 0.2507 nm, c = 0.4069 nm",
        "lattice": _hexagonal(0.2507, 0.4069),
        "sites": (("A", (1 / 3, 2 / 3, 0.25)), ("A", (2 / 3, 1 / 3, 0.75))),
        "zone_axes": _HEX_ZONES,
    },
    "rock salt TiC": {
        "label": "rock salt, Fm-3m, a = 0.4328 nm",
        "lattice": _cubic(0.4328),
        "sites": tuple(("M", p) for p in _FCC)
        + tuple(("X", ((x + 0.5) % 1, y, z)) for x, y, z in _FCC),
        "zone_axes": _CUBIC_ZONES,
    },
}


def direct_lattice(crystal):
    """Lattice vectors of a crystal as the rows of a matrix, in nm.

    Parameters
    ----------
    crystal : str
        A key of :data:`CRYSTALS`.

    Returns
    -------
    numpy.ndarray
        Shape (3, 3): rows a, b, c in Cartesian crystal coordinates.

    Examples
    --------
    >>> from stemfuse_hs.data.polycrystal import direct_lattice
    >>> direct_lattice("bcc Fe")[0]
    array([0.2866, 0.    , 0.    ])
    """
    return np.array(CRYSTALS[crystal]["lattice"], dtype=float)


def _wentzel(z, g):
    radius = 0.885 * _BOHR_NM * z ** (-1 / 3)
    return z / ((2 * math.pi * g) ** 2 + radius**-2) * np.exp(-_DEBYE_WALLER_NM2 * g**2 / 4)


@functools.lru_cache(maxsize=None)
def _form_factor_scale():
    # pi V / (lambda * 2 f(g110)) = xi for bcc Fe: solve for the scale of f.
    a = 0.2866
    g110 = math.sqrt(2) / a
    f_needed = math.pi * a**3 / (WAVELENGTH_NM * _XI_FE110_NM * 2)
    return f_needed / float(_wentzel(26, np.array(g110)))


def scattering_factor(element, g):
    """Approximate electron scattering factor of one atom, in nm.

    A screened-Coulomb (Wentzel) form with a Thomas-Fermi screening radius
    and a Debye-Waller factor (B = 0.35 A^2), scaled once so that bcc Fe 110
    has an extinction distance of 35 nm at 200 kV. It reproduces the
    ``Z^(1/3)`` growth at small angles and the Rutherford ``Z / g^2`` tail,
    not the shell structure of tabulated (Doyle-Turner) factors.

    Parameters
    ----------
    element : str
        Chemical symbol.
    g : array_like
        Reciprocal-lattice vector lengths in 1/nm.

    Returns
    -------
    numpy.ndarray
        ``f(g)`` in nm, same shape as ``g``.

    Examples
    --------
    >>> from stemfuse_hs.data.polycrystal import scattering_factor
    >>> f_ti, f_c = scattering_factor("Ti", 4.0), scattering_factor("C", 4.0)
    >>> bool(0.3 < f_c / f_ti < 0.7)
    True
    """
    if element not in _Z:
        raise ValueError(f"no scattering factor for element {element!r}; known: {sorted(_Z)}")
    return _form_factor_scale() * _wentzel(_Z[element], np.asarray(g, dtype=float))


def _sublattice_fractions(composition):
    total = sum(composition.values())
    metals = {el: v for el, v in composition.items() if el not in _INTERSTITIALS}
    inter = {el: v for el, v in composition.items() if el in _INTERSTITIALS}

    def norm(part):
        s = sum(part.values())
        return {el: v / s for el, v in part.items()} if s > 0 else {}

    return {"A": {el: v / total for el, v in composition.items()}, "M": norm(metals),
            "X": norm(inter)}


@functools.lru_cache(maxsize=64)
def _reflections_cached(crystal, composition_items, g_max):
    composition = dict(composition_items)
    lattice = direct_lattice(crystal)
    recip = np.linalg.inv(lattice).T  # rows a*, b*, c* (1/nm, no 2 pi)
    volume = abs(np.linalg.det(lattice))
    # Enough indices along each axis to cover the sphere |g| < g_max.
    n = [int(math.ceil(g_max * np.linalg.norm(lattice[i]))) + 1 for i in range(3)]
    h, k, l = np.meshgrid(*(np.arange(-m, m + 1) for m in n), indexing="ij")
    hkl = np.stack([h.ravel(), k.ravel(), l.ravel()], 1)
    g_vec = hkl @ recip
    g_len = np.linalg.norm(g_vec, axis=1)
    keep = (g_len > 0) & (g_len <= g_max)
    hkl, g_vec, g_len = hkl[keep], g_vec[keep], g_len[keep]
    fractions = _sublattice_fractions(composition)
    f_sub = {
        sub: sum(x * scattering_factor(el, g_len) for el, x in frac.items())
        if frac else np.zeros_like(g_len)
        for sub, frac in fractions.items()
    }
    structure = np.zeros(g_len.shape, dtype=complex)
    for sub, pos in CRYSTALS[crystal]["sites"]:
        structure += f_sub[sub] * np.exp(2j * math.pi * (hkl @ np.asarray(pos, dtype=float)))
    amplitude = np.abs(structure)
    # Kinematically forbidden reflections cancel to rounding error.
    allowed = amplitude > 1e-6 * amplitude.max()
    hkl, g_vec, amplitude = hkl[allowed], g_vec[allowed], amplitude[allowed]
    xi = math.pi * volume / (WAVELENGTH_NM * amplitude)
    return hkl.astype(np.int64), g_vec, xi


def reflections(crystal, composition, g_max):
    """Allowed reflections of a crystal up to ``g_max``, with extinction distances.

    Parameters
    ----------
    crystal : str
        A key of :data:`CRYSTALS`.
    composition : dict
        Element -> atomic percent; sets the average atom of each sublattice.
    g_max : float
        Largest reciprocal-lattice vector length kept, 1/nm.

    Returns
    -------
    hkl : numpy.ndarray of int, shape (n, 3)
        Miller indices (three-index, also for hcp).
    g : numpy.ndarray, shape (n, 3)
        Reciprocal-lattice vectors in Cartesian crystal coordinates, 1/nm.
    xi : numpy.ndarray, shape (n,)
        Two-beam extinction distance ``pi V / (lambda |F|)`` in nm.

    Examples
    --------
    >>> from stemfuse_hs.data.polycrystal import reflections
    >>> hkl, g, xi = reflections("fcc Fe", {"Fe": 100.0}, g_max=6.0)
    >>> sorted({tuple(sorted(abs(i) for i in r)) for r in hkl.tolist()})  # no 100, 110
    [(0, 0, 2), (1, 1, 1)]
    """
    items = tuple(sorted((str(k), float(v)) for k, v in composition.items()))
    hkl, g, xi = _reflections_cached(crystal, items, float(g_max))
    return hkl.copy(), g.copy(), xi.copy()


def _quaternion_matrix(q):
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def random_rotations(rng, n):
    """Rotations drawn uniformly from SO(3) (Haar measure).

    Parameters
    ----------
    rng : numpy.random.Generator
    n : int

    Returns
    -------
    numpy.ndarray
        Shape (n, 3, 3), proper rotations taking crystal coordinates to the
        lab frame (z along the beam).

    Examples
    --------
    >>> import numpy as np
    >>> from stemfuse_hs.data.polycrystal import random_rotations
    >>> r = random_rotations(np.random.default_rng(0), 2)
    >>> np.allclose(r[0] @ r[0].T, np.eye(3)), round(float(np.linalg.det(r[1])), 6)
    (True, 1.0)
    """
    # A normalised 4-D Gaussian is a uniform unit quaternion.
    return np.stack([_quaternion_matrix(rng.standard_normal(4)) for _ in range(n)])


def _axis_angle(axis, angle):
    axis = np.asarray(axis, dtype=float)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def zone_axis_rotation(crystal, uvw, *, in_plane_deg=0.0, tilt_deg=0.0, tilt_azimuth_deg=0.0):
    """Rotation that puts the crystal direction [uvw] along the beam.

    Parameters
    ----------
    crystal : str
        A key of :data:`CRYSTALS`.
    uvw : tuple of int
        Zone axis, direct-lattice indices (three-index for hcp).
    in_plane_deg : float, optional
        Rotation about the beam after alignment.
    tilt_deg, tilt_azimuth_deg : float, optional
        Then a tilt away from the zone axis by ``tilt_deg`` about the in-plane
        axis at ``tilt_azimuth_deg`` from lab x.

    Returns
    -------
    numpy.ndarray
        Shape (3, 3), crystal Cartesian -> lab (z along the beam).

    Examples
    --------
    >>> import numpy as np
    >>> from stemfuse_hs.data.polycrystal import direct_lattice, zone_axis_rotation
    >>> rot = zone_axis_rotation("hcp Co", (0, 0, 1))
    >>> c_axis = direct_lattice("hcp Co")[2]
    >>> np.round(rot @ c_axis / np.linalg.norm(c_axis), 6) + 0.0
    array([0., 0., 1.])
    """
    d = direct_lattice(crystal).T @ np.asarray(uvw, dtype=float)
    d /= np.linalg.norm(d)
    helper = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = helper - (helper @ d) * d
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(d, e1)
    align = np.stack([e1, e2, d])
    spin = _axis_angle((0, 0, 1), math.radians(in_plane_deg))
    az = math.radians(tilt_azimuth_deg)
    tilt = _axis_angle((math.cos(az), math.sin(az), 0.0), math.radians(tilt_deg))
    return tilt @ spin @ align


def excitation_error(g_lab, tilt_mrad=None):
    """Excitation error of reflections in the lab frame (beam along +z).

    Parameters
    ----------
    g_lab : array_like, shape (..., 3)
        Reciprocal-lattice vectors in the lab frame, 1/nm.
    tilt_mrad : array_like, shape (..., 2), optional
        Extra small crystal tilt (bending), broadcast against ``g_lab[..., :2]``.

    Returns
    -------
    numpy.ndarray
        ``s = -(g_z + tau . g_xy) - lambda |g|^2 / 2`` in 1/nm (positive
        inside the Ewald sphere).

    Examples
    --------
    >>> from stemfuse_hs.data.polycrystal import excitation_error
    >>> float(excitation_error([0.0, 5.0, 0.0]))  # on a zone axis: the sphere's sag
    -0.03134875
    """
    g = np.asarray(g_lab, dtype=float)
    gz = g[..., 2]
    if tilt_mrad is not None:
        tau = np.asarray(tilt_mrad, dtype=float) * 1e-3
        gz = gz + tau[..., 0] * g[..., 0] + tau[..., 1] * g[..., 1]
    return -gz - 0.5 * WAVELENGTH_NM * (g**2).sum(-1)


# Gauss-Chebyshev (second kind) nodes: the chord-length weight sqrt(1 - u^2)
# of a uniformly filled disk projected onto the direction of g.
_N_NODES = 9
_NODE_U = np.cos(np.arange(1, _N_NODES + 1) * math.pi / (_N_NODES + 1))
_NODE_W = np.sin(np.arange(1, _N_NODES + 1) * math.pi / (_N_NODES + 1)) ** 2
_NODE_W /= _NODE_W.sum()


def rocking_intensity(s, xi, thickness_nm, spread=0.0):
    """Two-beam rocking curve, averaged over the probe's convergence.

    Parameters
    ----------
    s : array_like
        Excitation error at the disk centre, 1/nm.
    xi : array_like
        Extinction distance, nm.
    thickness_nm : array_like
        Foil thickness, nm.
    spread : array_like, optional
        Half-range of excitation errors in the disk, ``alpha |g_xy|`` (1/nm).

    Returns
    -------
    numpy.ndarray
        Fraction of the incident beam in the reflection (<= 1), broadcast
        shape of the inputs: ``(pi t / xi)^2 sinc^2(t s_eff)``, averaged over the
        disk.

    Examples
    --------
    >>> from stemfuse_hs.data.polycrystal import rocking_intensity
    >>> round(float(rocking_intensity(0.0, 40.0, 20.0)), 3)  # sin^2(pi t / xi)
    1.0
    >>> bool(rocking_intensity(0.2, 40.0, 60.0) < 0.02)  # far from Bragg: kinematic tail
    True
    """
    s, xi, t, spread = (np.asarray(v, dtype=np.float32) for v in (s, xi, thickness_nm, spread))
    inv_xi2 = 1.0 / (xi * xi)
    out = 0.0
    for u, w in zip(_NODE_U.astype(np.float32), _NODE_W.astype(np.float32)):
        se = np.sqrt((s + u * spread) ** 2 + inv_xi2)
        # np.sinc(x) = sin(pi x) / (pi x), safe at 0 (s_eff >= 1/xi anyway).
        out = out + w * np.float32(math.pi**2) * inv_xi2 * (t * np.sinc(t * se)) ** 2
    return np.asarray(out, dtype=np.float32)


def kinematic_pattern(crystal, composition, rotation, *, thickness_nm=60.0, tilt_mrad=(0.0, 0.0),
                      g_max=15.0, convergence_mrad=CONVERGENCE_MRAD):
    """Reflections of one crystal orientation and their intensities.

    Parameters
    ----------
    crystal : str
        A key of :data:`CRYSTALS`.
    composition : dict
        Element -> atomic percent.
    rotation : array_like, shape (3, 3)
        Crystal Cartesian -> lab (z along the beam).
    thickness_nm : float, optional
        Foil thickness.
    tilt_mrad : tuple of float, optional
        Extra bending tilt (x, y).
    g_max : float, optional
        Largest reflection kept, 1/nm.
    convergence_mrad : float, optional
        Probe semi-angle over which each disk integrates the rocking curve.

    Returns
    -------
    g_xy : numpy.ndarray, shape (n, 2)
        Disk positions relative to the direct beam, 1/nm (lab x, y).
    hkl : numpy.ndarray of int, shape (n, 3)
    intensity : numpy.ndarray, shape (n,)
        Fraction of the incident beam in each reflection (two-beam, independent
        reflections).

    Examples
    --------
    >>> import numpy as np
    >>> from stemfuse_hs.data.polycrystal import kinematic_pattern, zone_axis_rotation
    >>> rot = zone_axis_rotation("bcc Fe", (0, 0, 1))
    >>> thin = kinematic_pattern("bcc Fe", {"Fe": 100.0}, rot, thickness_nm=20.0)[2]
    >>> thick = kinematic_pattern("bcc Fe", {"Fe": 100.0}, rot, thickness_nm=40.0)[2]
    >>> bool(np.abs(thick - thin).max() > 0.1)  # Pendelloesung: thickness matters
    True
    """
    hkl, g, xi = reflections(crystal, composition, g_max)
    g_lab = g @ np.asarray(rotation, dtype=float).T
    s = excitation_error(g_lab, np.asarray(tilt_mrad, dtype=float))
    spread = convergence_mrad * 1e-3 * np.hypot(g_lab[:, 0], g_lab[:, 1])
    return g_lab[:, :2], hkl, rocking_intensity(s, xi, thickness_nm, spread)


# ----------------------------------------------------------------------------
# Microstructures
# ----------------------------------------------------------------------------
# Logistic profile: its 10-90 % rise takes 4.4 temperatures.
_LOGISTIC_10_90 = 4.394
_MIN_SHARE = 0.03


def _sparsify(index, weight, keep):
    """Drop shares below 3 %, keep the ``keep`` largest, renormalise.

    Far from boundaries a position is one pure grain, not a 99.9 % mix.
    """
    weight = np.where(weight < _MIN_SHARE, 0.0, weight)
    order = np.argsort(-weight, axis=-1, kind="stable")[..., :keep]
    index = np.take_along_axis(index, order, -1)
    weight = np.take_along_axis(weight, order, -1)
    weight = weight / weight.sum(-1, keepdims=True)
    index = np.where(weight > 0, index, -1)
    return index.astype(np.int32), weight.astype(np.float32)


def _poisson_disk(rng, shape, n, r_min):
    rows, cols = shape
    seeds = []
    attempts = 0
    while len(seeds) < n:
        p = rng.uniform((-0.5, -0.5), (rows - 0.5, cols - 0.5))
        if all((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 >= r_min**2 for q in seeds):
            seeds.append(p)
        attempts += 1
        if attempts > 200:
            # Crowded: relax the spacing rather than loop forever.
            r_min *= 0.9
            attempts = 0
    return np.array(seeds)


def voronoi_grains(rng, shape, n_grains, *, boundary_width=(1.0, 1.5), keep=3):
    """A Voronoi polycrystal with soft grain boundaries.

    Seeds are spread with a minimum spacing (no slivers); every boundary gets
    its own width (10-90 % of the mixing, in positions) drawn from
    ``boundary_width``, like an inclined boundary seen through the foil with
    a probe of finite size.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : tuple of int
        Scan (rows, cols).
    n_grains : int
    boundary_width : tuple of float, optional
    keep : int, optional
        Grains kept per position (the largest shares).

    Returns
    -------
    seeds : numpy.ndarray, shape (n_grains, 2)
        Grain centres (row, col).
    index : numpy.ndarray of int32, shape (rows, cols, keep)
        Grains sharing each position, -1 where unused, largest share first.
    weight : numpy.ndarray of float32, shape (rows, cols, keep)
        Their shares (sum 1).

    Examples
    --------
    >>> import numpy as np
    >>> from stemfuse_hs.data.polycrystal import voronoi_grains
    >>> seeds, index, weight = voronoi_grains(np.random.default_rng(0), (32, 48), 10)
    >>> index.shape, sorted(np.unique(index[..., 0]).tolist()) == list(range(10))
    ((32, 48, 3), True)
    """
    from scipy.spatial import cKDTree

    rows, cols = shape
    r_min = 0.7 * math.sqrt(rows * cols / n_grains)
    seeds = _poisson_disk(rng, shape, n_grains, r_min)
    width = rng.uniform(*boundary_width, size=(n_grains, n_grains))
    width = np.triu(width, 1) + np.triu(width, 1).T
    yy, xx = np.mgrid[0:rows, 0:cols]
    points = np.stack([yy.ravel(), xx.ravel()], 1).astype(float)
    k = min(6, n_grains)
    dist, idx = cKDTree(seeds).query(points, k=k)
    dist, idx = dist.reshape(-1, k), idx.reshape(-1, k)
    # Distance to the bisector between the nearest seed and each other one.
    sep = np.linalg.norm(seeds[idx] - seeds[idx[:, :1]], axis=-1)
    delta = (dist**2 - dist[:, :1] ** 2) / (2 * np.maximum(sep, 1e-9))
    temperature = width[idx[:, :1], idx] / _LOGISTIC_10_90
    logits = np.where(sep > 0, -delta / np.where(sep > 0, temperature, 1.0), 0.0)
    weight = np.exp(logits)
    weight /= weight.sum(1, keepdims=True)
    index, weight = _sparsify(idx, weight, keep)
    return seeds, index.reshape(rows, cols, keep), weight.reshape(rows, cols, keep)


def add_particles(index, weight, particle_weight, first_id, keep=3):
    """Overlay particles (their column shares) on a grain structure.

    Parameters
    ----------
    index, weight : numpy.ndarray, shape (rows, cols, k)
        The host grains, as returned by :func:`voronoi_grains`.
    particle_weight : numpy.ndarray, shape (n_particles, rows, cols)
        Share of the column each particle takes (0-1; particles do not
        overlap).
    first_id : int
        Grain id of the first particle; the others follow.
    keep : int, optional

    Returns
    -------
    index, weight : numpy.ndarray
        The combined structure, hosts scaled by the share left to them.

    Examples
    --------
    >>> import numpy as np
    >>> from stemfuse_hs.data.polycrystal import add_particles
    >>> index = np.zeros((4, 4, 1), np.int32)
    >>> weight = np.ones((4, 4, 1), np.float32)
    >>> p = np.zeros((1, 4, 4))
    >>> p[0, 1, 1] = 0.8
    >>> i, w = add_particles(index, weight, p, first_id=1)
    >>> i[1, 1].tolist(), [round(float(x), 2) for x in w[1, 1]]
    ([1, 0], [0.8, 0.2])
    """
    share = particle_weight.sum(0)
    owner = np.argmax(particle_weight, 0) + first_id
    idx = np.concatenate([index, owner[..., None]], -1)
    w = np.concatenate([weight * (1 - share[..., None]), share[..., None]], -1)
    return _sparsify(idx, w, keep)


def _logistic(x):
    return 0.5 * (1 + np.tanh(0.5 * x))


def ellipse_particles(rng, shape, centres, area, *, width=1.25, aspect=(1.0, 1.8)):
    """Full-column particles (second-phase grains) of given mean area.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : tuple of int
    centres : numpy.ndarray, shape (n, 2)
        (row, col) of each particle.
    area : numpy.ndarray, shape (n,)
        Target areas in positions.
    width : float, optional
        10-90 % width of the edge, positions.
    aspect : tuple of float, optional
        Range of the axis ratios.

    Returns
    -------
    numpy.ndarray, shape (n, rows, cols)
        Column share of each particle.

    Examples
    --------
    >>> import numpy as np
    >>> from stemfuse_hs.data.polycrystal import ellipse_particles
    >>> p = ellipse_particles(np.random.default_rng(0), (20, 20), np.array([[10.0, 10.0]]), np.array([30.0]))
    >>> int((p[0] > 0.5).sum()) in range(24, 37)
    True
    """
    rows, cols = shape
    yy, xx = np.mgrid[0:rows, 0:cols].astype(float)
    out = np.zeros((len(centres), rows, cols))
    for i, ((cy, cx), a) in enumerate(zip(centres, area)):
        ratio = rng.uniform(*aspect)
        angle = rng.uniform(0, math.pi)
        r1 = math.sqrt(a * ratio / math.pi)
        r2 = r1 / ratio
        u = (xx - cx) * math.cos(angle) + (yy - cy) * math.sin(angle)
        v = -(xx - cx) * math.sin(angle) + (yy - cy) * math.cos(angle)
        rho = np.hypot(u / r1, v / r2)
        # Signed distance to the outline, scaled by the local radius.
        signed = (1 - rho) * math.sqrt(r1 * r2)
        out[i] = _logistic(_LOGISTIC_10_90 * signed / width)
    out[out < _MIN_SHARE] = 0.0
    return out


def embedded_precipitates(rng, shape, n, *, across=(2, 4), fill=(0.75, 0.95), blur=0.45,
                          avoid=None, max_tries=4000):
    """Small embedded precipitates whose majority region is ``across`` positions wide.

    A precipitate is a sphere inside the foil: its column share is
    ``fill * sqrt(1 - (r / R)^2)``, blurred by the probe (Gaussian,
    ``blur`` positions). A draw is kept only if the positions where the
    precipitate holds the majority of the column span ``across`` positions
    in both directions, and it keeps clear of the others.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : tuple of int
    n : int
        Number of precipitates.
    across : tuple of int, optional
        Allowed extent (bounding box, rows and cols) of each majority region.
    fill : tuple of float, optional
        Range of the column share at the centre.
    blur : float, optional
    avoid : numpy.ndarray of bool, optional
        Positions where no precipitate may sit (e.g. the scan border).
    max_tries : int, optional

    Returns
    -------
    numpy.ndarray, shape (n_placed, rows, cols)
        Column share of each precipitate (``n_placed <= n`` if the scan is
        too crowded).

    Examples
    --------
    >>> import numpy as np
    >>> from stemfuse_hs.data.polycrystal import embedded_precipitates
    >>> p = embedded_precipitates(np.random.default_rng(0), (32, 48), 5)
    >>> len(p), all(2 <= int((q > 0.5).any(1).sum()) <= 4 for q in p)
    (5, True)
    """
    from scipy import ndimage

    rows, cols = shape
    placed, out = [], []
    for _ in range(max_tries):
        if len(out) >= n:
            break
        radius = rng.uniform(0.9, 2.3)
        cy = rng.uniform(2.5, rows - 3.5)
        cx = rng.uniform(2.5, cols - 3.5)
        if avoid is not None and avoid[int(round(cy)), int(round(cx))]:
            continue
        if any(math.hypot(cy - y, cx - x) < radius + r + 3 for y, x, r in placed):
            continue
        y0, y1 = max(int(cy - radius) - 4, 0), min(int(cy + radius) + 6, rows)
        x0, x1 = max(int(cx - radius) - 4, 0), min(int(cx + radius) + 6, cols)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(float)
        # Supersampled column share: a sub-position sphere still counts.
        sub = (np.arange(4) + 0.5) / 4 - 0.5
        d2 = ((yy[..., None, None] + sub[:, None] - cy) ** 2
              + (xx[..., None, None] + sub[None, :] - cx) ** 2) / radius**2
        share = np.sqrt(np.clip(1 - d2, 0, None)).mean((-1, -2)) * rng.uniform(*fill)
        share = ndimage.gaussian_filter(share, blur, mode="constant")
        share[share < _MIN_SHARE] = 0.0
        major = share > 0.5
        if not major.any():
            continue
        extent = (int(major.any(1).sum()), int(major.any(0).sum()))
        labels, n_parts = ndimage.label(major)
        if n_parts != 1 or not all(across[0] <= e <= across[1] for e in extent):
            continue
        full = np.zeros(shape)
        full[y0:y1, x0:x1] = share
        placed.append((cy, cx, radius))
        out.append(full)
    return np.array(out).reshape(-1, rows, cols)


def assign_phases(rng, areas, n_phases, *, min_grains=2, min_fraction=0.15):
    """Give every grain a phase: each phase ``min_grains`` grains or more,
    coverages near drawn targets of at least ``min_fraction``.

    Parameters
    ----------
    rng : numpy.random.Generator
    areas : numpy.ndarray, shape (n_grains,)
        Grain areas (positions).
    n_phases : int
    min_grains : int, optional
    min_fraction : float, optional

    Returns
    -------
    numpy.ndarray of int, shape (n_grains,)

    Examples
    --------
    >>> import numpy as np
    >>> from stemfuse_hs.data.polycrystal import assign_phases
    >>> phases = assign_phases(np.random.default_rng(0), np.full(10, 100.0), 2)
    >>> int(np.bincount(phases).min()) >= 2
    True
    """
    n = len(areas)
    if n < min_grains * n_phases:
        raise ValueError(f"{n} grains cannot give {n_phases} phases {min_grains} grains each")
    target = min_fraction + (1 - n_phases * min_fraction) * rng.dirichlet(np.full(n_phases, 2.0))
    target = target * areas.sum()
    phase = np.full(n, -1)
    got = np.zeros(n_phases)
    count = np.zeros(n_phases, int)
    # Largest grains first, each to the phase furthest below its target;
    # phases still short of min_grains take precedence.
    for g in np.argsort(-areas + rng.uniform(0, 1e-3, n), kind="stable"):
        short = count < min_grains
        candidates = np.flatnonzero(short) if short.any() else np.arange(n_phases)
        deficit = (target - got)[candidates]
        p = candidates[int(np.argmax(deficit))]
        phase[g] = p
        got[p] += areas[g]
        count[p] += 1
    return phase
