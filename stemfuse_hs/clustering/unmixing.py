"""Small phases unmixed from their host, position by position, by the X-ray counts.

A precipitate a few probe positions across is never seen pure: the probe
and its tails light the matrix around it, so the positions at its edge and
the ring around it (the halo) carry some of its signal. The fused
embedding puts that halo with the precipitate, and the pooled spectrum of
the precipitate's phase is then itself a mixture (tiny
``poly_precipitates``: 50-65 TiC positions beside 40-140 ferrite
positions that hold 0-50 % TiC). A phase map should give every position to
the phase that fills most of its probe.

When the small phase holds elements its host lacks, its pure spectrum can
be recovered: as much of the host's spectrum is subtracted from the small
phase's pooled counts as non-negativity allows
(:func:`host_free_template`), which leaves the part of the small phase
without the host's elements. Each position's counts are then split into a
host part and a template part (non-negative least squares, two
components), and the share of the probe in the host is the host part over
the host's own counts per position nearby (the thickness changes slowly;
:func:`local_rate`). A position of the small phase whose probe lies mostly
in the host moves there, and one of the host beside the small phase whose
probe lies mostly in the small phase moves in (:func:`unmix_small_phases`).

A particle of a few positions is judged as a whole (:func:`fit_particle`):
one position's counts measure its share of the probe to about 6 % at one
half (tiny ``poly_precipitates``: 20 counts of Ti K, 75 of the ferrite),
so a position at 0.45 or 0.55 is a coin toss, while the particle's 15-30
shares measured around it fix its centre, size and edge. Its share falls
from its centre as a soft-edged disk (a compact particle seen through the
probe); every position around it takes the phase the fitted disk gives
it. A particle larger than :data:`MAX_MODELLED_PARTICLE` positions, or one
the disk describes badly (a plate, two particles touching:
:data:`MAX_PARTICLE_MISFIT`), is judged position by position.

Where the small phase shares every element with its host (a Cr-rich
ferrite in austenite), the subtraction would take away part of the small
phase itself, and nothing is moved (``min_own_share``).
"""

import numpy as np

from .._validation import check_array, check_fraction, check_int, check_real

__all__ = [
    "DEFAULT_MAX_UNMIXED_SHARE",
    "DEFAULT_MIN_OWN_SHARE",
    "DEFAULT_UNMIX_MARGIN",
    "MAX_MODELLED_PARTICLE",
    "MAX_PARTICLE_MISFIT",
    "MIN_HALO_SHARE",
    "fit_particle",
    "host_free_template",
    "local_rate",
    "probe_fractions",
    "soft_disk",
    "unmix_small_phases",
]

#: Largest share of the scan of a phase that is unmixed: precipitates and
#: their halo (tiny ``poly_precipitates``: 8-13 %), not a matrix.
DEFAULT_MAX_UNMIXED_SHARE = 0.2
#: Smallest share of the host-free template's counts in windows the host
#: lacks: below it the small phase shares its elements with the host and the
#: subtraction cannot tell its own spectrum (measured 0.22-0.40 on the
#: scenarios' phases of shared elements, 0.95-0.98 on TiC in ferrite).
DEFAULT_MIN_OWN_SHARE = 0.5
#: A position moves when its probe share is at least this many standard
#: errors (Poisson) past one half: a position near one half stays.
DEFAULT_UNMIX_MARGIN = 0.5
#: A window the host "lacks" holds less than this share of its counts
#: (bremsstrahlung alone is about 1 % per window).
HOST_LACKS_SHARE = 0.02
#: Windows holding at least this share of the host's counts bound the
#: subtraction (a faint window would let noise decide it).
MIN_BOUNDING_SHARE = 0.05
#: A host-free part below this share of the small phase's pooled counts is
#: noise (fcc and hcp cobalt: 1 % left), not a spectrum of its own.
MIN_OWN_PART = 0.05
#: Radius (positions) over which the host's counts per position are averaged.
DEFAULT_RATE_RADIUS = 4
#: Fewest pure host positions that make a host's spectrum and counts rate.
MIN_HOST_POSITIONS = 10
#: Largest particle (positions of the small phase, connected) judged as a
#: whole by :func:`fit_particle`: a precipitate 2-4 positions across with
#: its halo (tiny and published ``poly_precipitates``: 6-29 positions).
MAX_MODELLED_PARTICLE = 40
#: Largest misfit (chi-square per degree of freedom, Poisson errors) of a
#: particle's fitted disk that is trusted: 0.9-3.4 on the ``poly_precipitates``
#: particles (the errors leave the host's counts rate out).
MAX_PARTICLE_MISFIT = 5.0
#: Fewest measured shares a particle's disk (five parameters) is fitted to.
MIN_PARTICLE_POSITIONS = 8
#: A small phase more than this share of whose positions are measured
#: mostly in the host was drawn around its particles' halos, not their
#: edges, and its particles are judged by their disks; below it the
#: clustering found the edges itself (a precipitate whose patterns differ
#: from the host's), and the disks, blind to the patterns, would only move
#: positions measured near one half. Tiny and published ``poly_precipitates``
#: (TiC): 0.33-0.75; fixed-zone ``precipitates``, whose patterns differ
#: strongly: 0.00-0.02 (noise).
MIN_HALO_SHARE = 0.1


def host_free_template(pooled, host_pooled, *, min_bounding_share=MIN_BOUNDING_SHARE):
    """A small phase's pooled counts with as much of its host's spectrum removed as non-negativity allows.

    ``pooled - g * host_shape`` with the largest ``g`` that keeps every
    window the host fills (at least ``min_bounding_share`` of its counts)
    non-negative: if the small phase's own spectrum lacks one of the host's
    elements, what is left is that own spectrum.

    Parameters
    ----------
    pooled, host_pooled : numpy.ndarray
        ``(n_windows,)`` summed counts of the small phase and of its host.
    min_bounding_share : float, default 0.05

    Returns
    -------
    template : numpy.ndarray
        ``(n_windows,)`` the host-free spectrum normalised to sum 1 (zeros
        when nothing is left).
    host_shape : numpy.ndarray
        The host's spectrum normalised to sum 1.
    host_share : float
        The share of ``pooled`` that was the host's.

    Examples
    --------
    >>> import numpy as np
    >>> host = np.array([90.0, 10.0, 0.0])          # Fe, Cr, Ti
    >>> mixed = 0.6 * host + 0.4 * np.array([0.0, 0.0, 100.0])
    >>> template, shape, share = host_free_template(mixed, host)
    >>> template.round(3).tolist(), round(share, 3)
    ([0.0, 0.0, 1.0], 0.6)
    """
    pooled = np.asarray(pooled, dtype=np.float64).ravel()
    host_pooled = np.asarray(host_pooled, dtype=np.float64).ravel()
    if pooled.shape != host_pooled.shape:
        raise ValueError(f"host_free_template: pooled has {pooled.size} windows, host_pooled {host_pooled.size}.")
    host_total, total = host_pooled.sum(), pooled.sum()
    if host_total <= 0 or total <= 0:
        return np.zeros_like(pooled), np.zeros_like(pooled), 0.0
    host_shape = host_pooled / host_total
    bounding = host_shape >= min_bounding_share
    scale = float(np.min(pooled[bounding] / host_shape[bounding])) if bounding.any() else 0.0
    left = np.maximum(pooled - scale * host_shape, 0.0)
    template = left / left.sum() if left.sum() > 0 else left
    return template, host_shape, float(min(scale / total, 1.0))


def probe_fractions(counts, host_shape, template_shape, host_rate):
    """Each position's share of the probe in the host, and its standard error.

    Every position's counts are split into ``a * host_shape + b *
    template_shape`` (non-negative least squares); the host fills ``a /
    host_rate`` of the probe, where ``host_rate`` is the host's own counts
    per position there. Its Poisson standard error is ``sqrt(a) /
    host_rate``.

    Parameters
    ----------
    counts : numpy.ndarray
        ``(n_positions, n_windows)``.
    host_shape, template_shape : numpy.ndarray
        ``(n_windows,)`` each summing to 1 (:func:`host_free_template`).
    host_rate : numpy.ndarray
        ``(n_positions,)`` the host's counts per position at each position
        (:func:`local_rate`).

    Returns
    -------
    host_fraction, standard_error : numpy.ndarray
        ``(n_positions,)``; the fraction is not clipped to 1 (noise).

    Examples
    --------
    >>> import numpy as np
    >>> host, template = np.array([0.9, 0.1, 0.0]), np.array([0.0, 0.0, 1.0])
    >>> counts = np.array([[90.0, 10.0, 0.0], [27.0, 3.0, 70.0]])
    >>> fraction, error = probe_fractions(counts, host, template, np.array([100.0, 100.0]))
    >>> fraction.round(2).tolist(), error.round(3).tolist()
    ([1.0, 0.3], [0.1, 0.055])
    """
    counts = np.asarray(counts, dtype=np.float64)
    h = np.asarray(host_shape, dtype=np.float64).ravel()
    p = np.asarray(template_shape, dtype=np.float64).ravel()
    hh, pp, hp = h @ h, p @ p, h @ p
    hc, pc = counts @ h, counts @ p
    det = hh * pp - hp * hp
    if det > 1e-12 * hh * pp:
        a = (pp * hc - hp * pc) / det
        b = (hh * pc - hp * hc) / det
    else:  # the two spectra are one: everything is the host's
        a, b = hc / hh, np.zeros_like(hc)
    # A negative part: the better of the two one-component fits.
    a_only = np.maximum(hc / hh, 0.0)
    b_only = np.maximum(pc / pp, 0.0) if pp > 0 else np.zeros_like(pc)
    host_residual = -2.0 * a_only * hc + a_only**2 * hh
    template_residual = -2.0 * b_only * pc + b_only**2 * pp
    one_part = np.where(host_residual <= template_residual, a_only, 0.0)
    a = np.where((a < 0) | (b < 0), one_part, a)
    rate = np.maximum(np.asarray(host_rate, dtype=np.float64).ravel(), 1e-12)
    return a / rate, np.sqrt(np.maximum(a, 1.0)) / rate


def soft_disk(rows, cols, centre_row, centre_col, amplitude, radius, edge):
    """A particle's share of the probe at ``(rows, cols)``: a disk of ``radius`` whose edge falls off over ``edge`` positions.

    ``amplitude / (1 + exp((r - radius) / edge))``, ``r`` the distance from
    the centre: a sphere or a faceted particle embedded in the foil, seen
    through a probe about a position wide.

    Examples
    --------
    >>> import numpy as np
    >>> soft_disk(np.zeros(3), np.array([0.0, 1.5, 3.0]), 0.0, 0.0, 0.9, 1.5, 0.4).round(2).tolist()
    [0.88, 0.45, 0.02]
    """
    distance = np.hypot(np.asarray(rows, dtype=np.float64) - centre_row, np.asarray(cols, dtype=np.float64) - centre_col)
    return amplitude / (1.0 + np.exp(np.clip((distance - radius) / edge, -50.0, 50.0)))


def fit_particle(rows, cols, shares, errors):
    """The soft-edged disk (:func:`soft_disk`) that best fits a particle's measured shares of the probe.

    Weighted least squares over the centre, the amplitude (0 to 1.2: the
    shares are measured with noise), the radius (0.3 to 5 positions) and
    the edge width (0.15 to 1.5 positions), started at the shares'
    centroid.

    Parameters
    ----------
    rows, cols : numpy.ndarray
        ``(n,)`` scan coordinates (positions) of the measured shares.
    shares, errors : numpy.ndarray
        ``(n,)`` each position's share of the probe in the particle and
        its standard error (:func:`probe_fractions`: one minus the host's).

    Returns
    -------
    fitted : numpy.ndarray
        ``(n,)`` the disk's share at every position.
    misfit : float
        Chi-square per degree of freedom (``n - 5``).

    Examples
    --------
    >>> import numpy as np
    >>> rows, cols = np.divmod(np.arange(49.0), 7)
    >>> truth = soft_disk(rows, cols, 3.2, 2.9, 0.85, 1.6, 0.45)
    >>> fitted, misfit = fit_particle(rows, cols, truth, np.full(49, 0.05))
    >>> bool(np.abs(fitted - truth).max() < 1e-3), misfit < 1e-3
    (True, True)
    """
    from scipy import optimize

    rows, cols = np.asarray(rows, dtype=np.float64), np.asarray(cols, dtype=np.float64)
    shares, errors = np.asarray(shares, dtype=np.float64), np.maximum(np.asarray(errors, dtype=np.float64), 1e-6)
    weight = np.clip(shares, 0.0, None) + 1e-9
    start = [np.average(rows, weights=weight), np.average(cols, weights=weight), float(np.clip(shares.max(), 0.3, 1.2)), 1.2, 0.5]
    low, high = [rows.min() - 1, cols.min() - 1, 0.0, 0.3, 0.15], [rows.max() + 1, cols.max() + 1, 1.2, 5.0, 1.5]
    start[:2] = np.clip(start[:2], low[:2], high[:2])
    solution = optimize.least_squares(
        lambda p: (soft_disk(rows, cols, *p) - shares) / errors, start, bounds=(low, high)
    )
    fitted = soft_disk(rows, cols, *solution.x)
    misfit = float((((fitted - shares) / errors) ** 2).sum() / max(rows.size - 5, 1))
    return fitted, misfit


def local_rate(values, mask, radius=DEFAULT_RATE_RADIUS, min_count=5):
    """The mean of ``values`` over the ``mask`` positions within ``radius`` of every position.

    Where fewer than ``min_count`` mask positions lie that close, the
    radius doubles until they do: the nearest host positions stand in, not
    the whole scan's mean, which on a thickness wedge is far off at the
    thin or thick end (tiny ``poly_precipitates`` seed 2: a precipitate in
    the thin corner, 60-90 counts per host position there against 152 over
    the scan, so the host positions around it looked half precipitate).
    The whole mask's mean stands in only where even the whole scan holds
    fewer.

    Parameters
    ----------
    values : numpy.ndarray
        ``(rows, cols)``.
    mask : numpy.ndarray
        ``(rows, cols)`` bool.
    radius : int, default 4
    min_count : int, default 5

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)``.

    Examples
    --------
    >>> import numpy as np
    >>> values = np.tile(np.arange(10.0), (3, 1)); mask = np.ones((3, 10), bool)
    >>> local_rate(values, mask, radius=1)[1].round(2).tolist()  # the end columns see 4 positions: twice the radius
    [0.71, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 8.29]
    """
    from scipy import ndimage

    values = np.asarray(values, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    overall = values[mask].mean() if mask.any() else 0.0
    masked = np.where(mask, values, 0.0)
    rate = np.full(values.shape, np.nan)
    r = int(radius)
    while True:
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        disk = (yy**2 + xx**2 <= r * r).astype(np.float64)
        weight = ndimage.convolve(mask.astype(np.float64), disk, mode="constant")
        total = ndimage.convolve(masked, disk, mode="constant")
        rate = np.where(np.isnan(rate) & (weight >= min_count), total / np.maximum(weight, 1e-12), rate)
        # A disk of radius the scan's diagonal covers it from anywhere.
        if not np.isnan(rate).any() or r * r >= sum(n * n for n in values.shape):
            break
        r *= 2
    return np.where(np.isnan(rate), overall, rate)


def unmix_small_phases(
    labels,
    counts,
    *,
    max_share=DEFAULT_MAX_UNMIXED_SHARE,
    min_own_share=DEFAULT_MIN_OWN_SHARE,
    margin=DEFAULT_UNMIX_MARGIN,
    radius=DEFAULT_RATE_RADIUS,
    same_composition=None,
    particle_model=True,
):
    """Give every position at a small phase's edge to the phase that fills most of its probe.

    For every phase covering at most ``max_share`` of the scan, its host is
    the phase most of the positions around it hold (one of another
    composition, when ``same_composition`` is given). The host's pure
    spectrum is pooled away from it (two positions or more); the small
    phase's own spectrum is its pooled counts without the host's
    (:func:`host_free_template`), used only when it is at least 5 % of
    them and at least ``min_own_share`` of it lies in windows the host
    lacks. Each position
    of the small phase and of the host around it is split between the two
    (:func:`probe_fractions`, the host's counts per position averaged within
    ``radius``): one of the small phase whose host share is more than one
    half by ``margin`` standard errors moves to the host, one of the host
    whose small-phase share is moves in. With ``particle_model``, the
    positions beside a small particle of the phase are judged together
    instead, when more than :data:`MIN_HALO_SHARE` of the phase's positions
    are measured mostly in the host (the phase was drawn around its
    particles' halos): each takes the phase the particle's fitted
    soft-edged disk gives it (:func:`fit_particle`; larger pieces, and
    particles the disk fits badly, stay judged position by position). Each small phase is
    judged on the labels given (the moves of one do not change another's).

    Parameters
    ----------
    labels : numpy.ndarray
        ``(rows, cols)`` phase of every position, -1 for none.
    counts : numpy.ndarray
        ``(rows * cols, n_windows)`` every position's X-ray counts in the
        composition windows.
    max_share : float, default 0.2
    min_own_share : float, default 0.5
    margin : float, default 0.5
    radius : int, default 4
    same_composition : numpy.ndarray, optional
        ``(n_phases, n_phases)`` bool: pairs of phases of one composition
        (:func:`~stemfuse_hs.clustering.phases.same_composition_matrix`),
        never unmixed.
    particle_model : bool, default True
        Judge the positions around each small particle by its fitted disk.
        Tiny ``poly_precipitates`` seeds 0-4: adjusted Rand index 0.86
        position by position, 0.92 with the disks (published seeds 0-1:
        0.90 and 0.94).

    Returns
    -------
    labels : numpy.ndarray
        ``(rows, cols)`` the new phase map.
    moves : list of dict
        Per small phase unmixed: ``"phase"``, ``"host"``, ``"out"`` and
        ``"in"`` (the flat indices of the positions moved to the host and
        into the phase), ``"host_share"`` (the share of its pooled counts
        that was the host's), ``"own_share"``, ``"halo"`` (the share of
        its positions measured mostly in the host) and ``"particles"`` (how
        many particles were judged by their fitted disk).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> probe_share = np.zeros((20, 20)); probe_share[8:12, 8:12] = 0.8    # a precipitate ...
    >>> probe_share[7, 8:12] = probe_share[12, 8:12] = 0.3                # ... and its halo
    >>> rates = np.outer(1 - probe_share.ravel(), [90.0, 10.0, 0.0]) + np.outer(probe_share.ravel(), [0.0, 5.0, 95.0])
    >>> counts = rng.poisson(rates)
    >>> labels = np.zeros((20, 20), int); labels[7:13, 8:12] = 1         # the halo in the precipitate's phase
    >>> new, moves = unmix_small_phases(labels, counts)
    >>> int(new.sum()), len(moves[0]["out"])
    (16, 8)
    """
    from scipy import ndimage

    labels = np.asarray(check_array("labels", labels, ndim=2))
    counts = np.asarray(check_array("counts", counts, ndim=2), dtype=np.float64)
    if counts.shape[0] != labels.size:
        raise ValueError(f"unmix_small_phases: counts has {counts.shape[0]} rows for {labels.size} positions.")
    check_fraction("max_share", max_share)
    check_fraction("min_own_share", min_own_share, closed_low=True)
    check_real("margin", margin, minimum=0)
    check_int("radius", radius, minimum=1)
    flat = labels.ravel()
    new = flat.copy()
    n_phases = int(flat.max()) + 1 if flat.size and flat.max() >= 0 else 0
    sizes = np.bincount(flat[flat >= 0], minlength=n_phases)
    totals = counts.sum(axis=1).reshape(labels.shape)
    around = np.ones((3, 3), bool)
    moves = []
    for phase in np.flatnonzero((sizes > 0) & (sizes <= max_share * flat.size)):
        inside = labels == phase
        near = ndimage.binary_dilation(inside, structure=around)
        held = labels[near & ~inside]
        held = held[held >= 0]
        if held.size == 0:
            continue
        host = int(np.bincount(held, minlength=n_phases).argmax())
        if same_composition is not None and same_composition[phase, host]:
            continue
        pure_host = (labels == host) & ~ndimage.binary_dilation(inside, structure=around, iterations=2)
        if pure_host.sum() < MIN_HOST_POSITIONS:
            continue
        template, host_shape, host_share = host_free_template(
            counts[inside.ravel()].sum(axis=0), counts[pure_host.ravel()].sum(axis=0)
        )
        own_share = float(template[host_shape < HOST_LACKS_SHARE].sum())
        if host_share > 1.0 - MIN_OWN_PART or own_share < min_own_share:
            continue
        candidates = np.flatnonzero(near.ravel() & ((flat == phase) | (flat == host)))
        rate = local_rate(totals, pure_host, radius).ravel()[candidates]
        host_fraction, error = probe_fractions(counts[candidates], host_shape, template, rate)
        excess = (host_fraction - 0.5) / error
        in_phase = np.where(excess > margin, False, np.where(excess < -margin, True, flat[candidates] == phase))
        modelled = 0
        halo = float((host_fraction[flat[candidates] == phase] > 0.5).mean())
        if particle_model and halo > MIN_HALO_SHARE:
            in_phase, modelled = _judged_by_particle(
                inside, candidates, 1.0 - host_fraction, error, in_phase, labels.shape[1], around
            )
        out = candidates[(flat[candidates] == phase) & ~in_phase]
        into = candidates[(flat[candidates] == host) & in_phase]
        new[out] = host
        new[into] = phase
        moves.append(
            {"phase": int(phase), "host": host, "out": out, "in": into, "host_share": float(host_share),
             "own_share": own_share, "halo": halo, "particles": modelled}
        )
    return new.reshape(labels.shape), moves


def _judged_by_particle(inside, candidates, shares, errors, in_phase, n_cols, around):
    """``in_phase`` (bool per candidate) with the candidates around every small particle decided by its fitted disk; and how many particles were.

    A particle is a connected piece of ``inside`` of at most
    :data:`MAX_MODELLED_PARTICLE` positions; its candidates are those
    beside it. A disk fitting worse than :data:`MAX_PARTICLE_MISFIT`
    leaves them as they are. A candidate beside two particles is in the
    phase when either disk puts it there.
    """
    from scipy import ndimage

    pieces, _ = ndimage.label(inside, structure=around)
    rows, cols = np.divmod(candidates, n_cols)
    # Each piece is looked at within its bounding box: a scan can hold thousands.
    candidate_index = np.full(inside.shape, -1, dtype=np.int64)
    candidate_index.flat[candidates] = np.arange(candidates.size)
    decided = np.zeros(candidates.size, dtype=bool)
    judged = np.zeros(candidates.size, dtype=bool)
    modelled = 0
    for piece, box in enumerate(ndimage.find_objects(pieces), start=1):
        if box is None:
            continue
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        own = pieces[box] == piece
        if own.sum() > MAX_MODELLED_PARTICLE:
            continue
        beside = candidate_index[box][ndimage.binary_dilation(own, structure=around)]
        beside = beside[beside >= 0]
        if beside.size < MIN_PARTICLE_POSITIONS:
            continue
        fitted, misfit = fit_particle(rows[beside], cols[beside], shares[beside], errors[beside])
        if not misfit <= MAX_PARTICLE_MISFIT:
            continue
        modelled += 1
        decided[beside] |= fitted > 0.5
        judged[beside] = True
    return np.where(judged, decided, in_phase), modelled
