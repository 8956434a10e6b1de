"""X-ray line intensities of spectrum images (STEM-EDS), with background windows.

Chemistry is often better described by the intensity of each element's
line than by raw channels: the counts of a line window, minus a background
interpolated linearly between windows either side of it, gather every
count the element gives and none of the continuum.

All functions take numpy or dask arrays of shape ``(*navigation, channels)``.
"""

from dataclasses import dataclass, field

import numpy as np

import dask.array as da

from .._arrays import as_dask, is_lazy_array
from .._validation import check_bool, check_nan_policy, check_real
from .._docstrings import fill_doc
from ._common import (
    NORMALIZATIONS,
    check_positions,
    check_spectra,
    compute_features,
    blank_and_normalize,
    neutral_fill,
    provenance,
    safe_log,
)
from ._patterns import check_scale
from .variance import DEFAULT_RESOLUTION_MNKA, line_windows, xray_line_energy

__all__ = ["LineResult", "element_lines", "line_intensities"]


@fill_doc
@dataclass
class LineResult:
    """What the line integration used and extracted.

    Attributes
    ----------
    features : numpy.ndarray or dask.array.Array
        ``(*navigation, n_features)`` float32 background-subtracted line
        intensities (one per line, or one per channel of every line window
        with ``per_channel=True``), ``log1p`` of the non-negative part
        unless ``scale="linear"``. Lazy when the input was.
    lines : list of str
        The X-ray lines, in feature order (by energy).
    windows : numpy.ndarray
        ``(n_lines, 2)`` line windows in keV.
    background_windows : numpy.ndarray
        ``(n_lines, 2, 2)`` low and high background windows in keV (NaN
        where a side falls off the spectrum, or without background).
    weights : numpy.ndarray
        ``(channels, n_features)`` the linear map from spectra to features
        (before scaling): window channels +1, background channels minus
        their share of the interpolated background.
    feature_lines : list of str
        The line of every feature.
    %(result_parameters)s
    %(result_excluded_mean_features)s
    """

    features: object
    lines: list
    windows: np.ndarray
    background_windows: np.ndarray
    weights: np.ndarray
    feature_lines: list
    parameters: dict = field(default_factory=dict)
    excluded: np.ndarray = None


def element_lines(elements, energy_range, beam_energy=None):
    """One X-ray line an element: exspy's choice for quantification.

    Of the element's alpha lines (``Ka``, ``La``, ``Ma``) inside
    ``energy_range`` (keV), the one of highest energy below half the beam
    energy (an overvoltage of 2) when the beam energy is known, as exspy's
    ``add_lines`` picks them.

    Examples
    --------
    >>> element_lines(["Fe", "Pt"], (0.1, 20.0), beam_energy=200.0)
    ['Fe_Ka', 'Pt_La']
    """
    from exspy.material import elements as database

    if isinstance(elements, str):
        elements = [elements]
    low, high = (float(e) for e in energy_range)
    chosen = []
    for element in elements:
        try:
            lines = database[element].Atomic_properties.Xray_lines
        except (AttributeError, KeyError):
            raise ValueError(f"element {element!r} is not in exspy's database.") from None
        candidates = []
        for name in lines.keys():
            energy = float(lines[name]["energy (keV)"])
            if name.endswith("a") and low < energy < high:
                if beam_energy is None or energy < beam_energy / 2:
                    candidates.append((energy, name))
        if not candidates:
            raise ValueError(
                f"element {element!r} has no alpha line (Ka, La, Ma) between {low:g} and {high:g} keV"
                f"{'' if beam_energy is None else f' below half the beam energy ({beam_energy:g} keV)'}; "
                "give its lines explicitly."
            )
        chosen.append(f"{element}_{max(candidates)[1]}")
    return chosen


def _background_sides(energies, low, high, width):
    """Channels of the windows ``[low - width, low)`` and ``(high, high + width]``."""
    below = np.flatnonzero((energies >= low - width) & (energies < low))
    above = np.flatnonzero((energies > high) & (energies <= high + width))
    return [(low - width, low, below), (high, high + width, above)]


def _line_weights(energies, windows, background, per_channel):
    """The ``(channels, n_features)`` linear map and background windows."""
    columns, owners, bg_windows = [], [], []
    for k, (low, high) in enumerate(windows):
        window = np.flatnonzero((energies >= low) & (energies <= high))
        if window.size == 0:
            window = np.array([int(np.argmin(np.abs(energies - (low + high) / 2)))])
        block = np.zeros((energies.size, window.size))
        block[window, np.arange(window.size)] = 1.0
        sides = _background_sides(energies, low, high, high - low) if background else []
        usable = [(lo, hi, idx) for lo, hi, idx in sides if idx.size]
        bg_windows.append(
            [[lo, hi] if idx.size else [np.nan, np.nan] for lo, hi, idx in sides] or [[np.nan] * 2] * 2
        )
        if background and not usable:
            raise ValueError(
                f"line window {low:.3f}-{high:.3f} keV has no channel for a background window on either side; "
                "pass background=False."
            )
        if usable:
            # Background at energy e: a line through the mean counts of the
            # side windows at their centres (a constant with one side).
            centres = np.array([energies[idx].mean() for _, _, idx in usable])
            for j, e in enumerate(energies[window]):
                if len(usable) == 2:
                    t = (e - centres[0]) / (centres[1] - centres[0])
                    shares = (1 - t, t)
                else:
                    shares = (1.0,)
                for share, (_, _, idx) in zip(shares, usable):
                    block[idx, j] -= share / idx.size
        if not per_channel:
            block = block.sum(axis=1, keepdims=True)
        columns.append(block)
        owners += [k] * block.shape[1]
    return np.concatenate(columns, axis=1).astype(np.float32), owners, np.asarray(bg_windows, dtype=float)


def _apply(block, weights):
    return (block.astype(np.float32, copy=False) @ weights).astype(np.float32)


@fill_doc
def line_intensities(
    data,
    energies,
    lines,
    *,
    width=1.0,
    background=True,
    per_channel=False,
    scale="log",
    resolution_mnka=DEFAULT_RESOLUTION_MNKA,
    normalize="total",
    nan_policy="raise",
):
    """Background-subtracted X-ray line intensities of an array of spectra.

    Parameters
    ----------
    %(spectra_data)s
    %(energies)s
    lines : sequence of str
        X-ray lines named as in exspy, e.g. ``["Ni_Ka", "Mn_Ka"]``.
    width : float, default 1.0
        Half-width of every line window in detector FWHMs at the line's
        energy (from ``resolution_mnka``): 1 gathers about 98 % of a line.
    background : bool, default True
        Subtract a linear background interpolated between two windows of
        the line window's width just below and above it (one side only
        where the other falls off the spectrum). Overlapping lines put each
        other in their background windows: check ``background_windows``.
    per_channel : bool, default False
        One feature per channel of every window (background-subtracted),
        instead of one per line: keeps peak shifts and overlaps visible.
    scale : {"log", "linear"}, default "log"
        ``log1p`` of the intensities (negative ones, from noise, count as
        0), or the intensities themselves.
    resolution_mnka : float, default 130
        Detector resolution at Mn Ka in eV.
    %(normalize_spectra)s
    %(nan_policy_mean_features)s

    Returns
    -------
    LineResult
        Features are lazy if ``data`` is a dask array, else numpy.

    Examples
    --------
    >>> import numpy as np
    >>> energies = np.arange(1024) * 0.01
    >>> rng = np.random.default_rng(0)
    >>> spectra = rng.poisson(2.0, size=(6, 8, 1024)).astype(float)
    >>> spectra[:3, :, 797:813] += 20  # Cu Ka at 8.05 keV in half the scan
    >>> result = line_intensities(spectra, energies, ["Cu_Ka"], scale="linear", normalize=None)
    >>> result.features.shape, bool(result.features[0].mean() > 250 > 20 > abs(result.features[5].mean()))
    ((6, 8, 1), True)
    """
    energies = check_spectra(data, energies)
    lazy = is_lazy_array(data)
    if isinstance(lines, str):
        lines = [lines]
    if not hasattr(lines, "__iter__") or not list(lines):
        raise ValueError(f"lines must be a non-empty list of X-ray lines such as 'Fe_Ka', got {lines!r}.")
    lines = list(dict.fromkeys(lines))
    width = check_real("width", width, minimum=0, strict_minimum=True)
    background = check_bool("background", background)
    per_channel = check_bool("per_channel", per_channel)
    check_scale(scale)
    resolution_mnka = check_real("resolution_mnka", resolution_mnka, minimum=0, strict_minimum=True)
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize={normalize!r} is not one of {sorted(map(repr, NORMALIZATIONS))}.")
    nan_policy = check_nan_policy(nan_policy)
    n_positions = check_positions(data, 1, "line intensities")
    lines = sorted(lines, key=xray_line_energy)
    windows = line_windows(lines, resolution_mnka, width)
    outside = [line for line, (lo, hi) in zip(lines, windows) if hi < energies.min() or lo > energies.max()]
    if outside:
        raise ValueError(
            f"lines {outside} lie outside the spectrum ({energies.min():g}-{energies.max():g} keV)."
        )
    weights, owners, bg_windows = _line_weights(energies, windows, background, per_channel)

    spectra = as_dask(data, 1).astype(np.float32)
    spectra, excluded, _ = blank_and_normalize(spectra, data, 1, normalize, nan_policy)
    features = spectra.map_blocks(
        _apply, weights, dtype=np.float32, chunks=spectra.chunks[:-1] + ((weights.shape[1],),)
    )
    if scale == "log":
        features = safe_log(features)
    if excluded.any():
        neutral = da.nanmean(features.reshape(-1, weights.shape[1]), axis=0).compute()
        features = neutral_fill(features, excluded, neutral)
    features = compute_features(features, lazy, n_positions, "line_intensities")
    parameters = provenance(
        {
            "lines": list(lines),
            "width": width,
            "background": background,
            "per_channel": per_channel,
            "scale": scale,
            "resolution_mnka": resolution_mnka,
        },
        normalize=normalize,
        n_features=weights.shape[1],
        nan_policy=nan_policy,
    )
    return LineResult(
        features=features,
        lines=list(lines),
        windows=np.asarray(windows, dtype=float),
        background_windows=bg_windows,
        weights=weights,
        feature_lines=[lines[k] for k in owners],
        parameters=parameters,
        excluded=excluded,
    )
