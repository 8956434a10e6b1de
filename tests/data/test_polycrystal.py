"""Tests of the polycrystal scenarios and the kinematic model behind them."""

import functools
import math

import numpy as np
import pytest
from scipy import ndimage

from stemfuse_hs.data import POLY_SCENARIOS, SCENARIOS, synthetic_scan
from stemfuse_hs.data import polycrystal as pc

POLY = list(POLY_SCENARIOS)


@functools.lru_cache(maxsize=None)
def lazy(scenario, seed=0):
    # Ground truth, fields and noise-free expectations need no rendering.
    return synthetic_scan(scenario, size="tiny", seed=seed, lazy=True)


@functools.lru_cache(maxsize=None)
def eager(scenario, seed=0):
    return synthetic_scan(scenario, size="tiny", seed=seed)


@functools.lru_cache(maxsize=None)
def expected(scenario, seed=0):
    return lazy(scenario, seed).expected_dp()


def spot_pattern(scan, pattern, y, x):
    """Bragg disks only: local-median background removed, direct beam masked."""
    yy, xx = np.mgrid[0 : pattern.shape[0], 0 : pattern.shape[1]]
    bx, by = scan.beam_center[y, x]
    spots = pattern - ndimage.median_filter(pattern, size=5)
    spots[np.hypot(yy - by, xx - bx) < 3] = 0
    return spots.ravel()


def grain_core(scan, grain):
    """The position deepest inside a grain and the grain's interior mask."""
    inside = scan.grains == grain
    depth = ndimage.distance_transform_edt(inside)
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return int(y), int(x), depth


# --- registration --------------------------------------------------------------
def test_scenarios_are_registered_with_descriptions():
    # Six polycrystals, after the single crystals (whose random streams are
    # keyed by their index in SCENARIOS); tests/test_cli.py checks that the
    # demo offers every scenario.
    assert len(POLY) == 6
    assert list(SCENARIOS)[-len(POLY) :] == POLY
    for name in POLY:
        assert isinstance(SCENARIOS[name], str) and "\n" not in SCENARIOS[name]
        description = lazy(name).description
        assert "orientation" in description and "Cu" in description
        assert "grain boundaries" in description


def test_old_scenarios_unchanged_by_the_new_code():
    # Adding scenarios must not change what the existing ones generate: their
    # random streams are keyed by their index in SCENARIOS.
    scan = lazy("four_phases")
    assert list(SCENARIOS).index("four_phases") == 2
    assert scan.dp.data.shape == (32, 48, 32, 32)
    assert scan.grain_zone_axes[0] in ("[001]", "[011]")


# --- determinism -------------------------------------------------------------------
def test_same_seed_same_counts():
    a = eager("poly_structure")
    b = synthetic_scan("poly_structure", size="tiny", seed=0)
    np.testing.assert_array_equal(a.dp.data, b.dp.data)
    np.testing.assert_array_equal(a.eds.data, b.eds.data)
    np.testing.assert_array_equal(a.grains, b.grains)
    np.testing.assert_array_equal(a.grain_orientations, b.grain_orientations)
    other = lazy("poly_structure", 1)
    assert not np.array_equal(a.grains, other.grains)
    assert not np.array_equal(lazy("poly_structure").truth, lazy("poly_hcp").truth)


@pytest.mark.parametrize("scenario", ["poly_four_phases", "poly_precipitates"])
def test_lazy_equals_eager_bit_for_bit(scenario):
    scan = eager(scenario)
    other = synthetic_scan(scenario, size="tiny", seed=0, lazy=True, chunk_rows=5)
    np.testing.assert_array_equal(other.dp.data.compute(), scan.dp.data)
    np.testing.assert_array_equal(other.eds.data.compute(), scan.eds.data)


def test_pickled_graph_gives_the_same_data():
    # What a distributed worker sees: the generator travels without its cache.
    import pickle

    scan = synthetic_scan("poly_minor_phase", size="tiny", seed=0, lazy=True, chunk_rows=8)
    dp = pickle.loads(pickle.dumps(scan.dp.data))
    np.testing.assert_array_equal(dp[8:16].compute(), scan.dp.data[8:16].compute())
    np.testing.assert_allclose(scan.expected_dp(slice(8, 9)), lazy("poly_minor_phase").expected_dp(slice(8, 9)))


# --- ground truth --------------------------------------------------------------------
@pytest.mark.parametrize("scenario", POLY)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grains_and_phases_are_consistent(scenario, seed):
    scan = lazy(scenario, seed)
    n_grains = len(scan.grain_phases)
    assert scan.grains.shape == scan.truth.shape == (32, 48)
    assert np.issubdtype(scan.grains.dtype, np.integer)
    # Every grain appears and belongs to exactly one phase.
    assert set(np.unique(scan.grains).tolist()) == set(range(n_grains))
    np.testing.assert_array_equal(scan.grain_phases[scan.grains], scan.truth)
    assert set(np.unique(scan.truth).tolist()) == set(range(len(scan.phases)))
    # Several grains per phase, each in its own orientation.
    assert np.bincount(scan.grain_phases).min() >= 2
    particles = scenario in ("poly_minor_phase", "poly_precipitates")
    matrix = np.count_nonzero(scan.grain_phases == 0) if particles else n_grains
    assert 6 <= matrix <= 20
    rot = scan.grain_orientations
    assert rot.shape == (n_grains, 3, 3)
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-9)
    # Every grain has its own orientation; two may come close only by chance
    # (e.g. both near one zone axis with similar in-plane angles).
    relative = np.einsum("aij,bkj->abik", rot, rot)
    cos = np.clip((np.trace(relative, axis1=2, axis2=3) - 1) / 2, -1, 1)
    angle = np.degrees(np.arccos(cos))[np.triu_indices(n_grains, 1)]
    assert angle.min() > 0.01 and np.mean(angle < 5.0) < 0.05
    # Half of each phase's grains near a zone axis, the others random.
    for p in range(len(scan.phases)):
        members = np.flatnonzero(scan.grain_phases == p)
        near = [scan.grain_zone_axes[g] is not None for g in members]
        assert sum(near) == (len(members) + 1) // 2
    assert len(scan.grain_g_vectors) == len(scan.grain_hkl) == n_grains
    for p in range(len(scan.phases)):
        members = np.flatnonzero(scan.grain_phases == p)
        assert len(scan.g_vectors[p]) == sum(len(scan.grain_g_vectors[g]) for g in members)
    np.testing.assert_allclose(scan.phase_weights.sum(-1), 1, rtol=1e-5)
    np.testing.assert_array_equal(np.argmax(scan.phase_weights, -1), scan.truth)


@pytest.mark.parametrize("size", ["small", "published"])
def test_bigger_scans_keep_the_grain_size(size):
    for scenario in ("poly_structure", "poly_minor_phase", "poly_precipitates"):
        scan = synthetic_scan(scenario, size=size, seed=3, lazy=True)  # truth only
        tiny_scan = lazy(scenario, 3)
        np.testing.assert_array_equal(scan.grain_phases[scan.grains], scan.truth)
        assert len(np.unique(scan.grains)) == len(scan.grain_phases)
        # Grains are ~25 nm whatever the scan: their number follows the area.
        area_ratio = scan.truth.size / tiny_scan.truth.size
        def matrix_grains(s):
            return np.count_nonzero(s.grain_phases == 0) if scenario != "poly_structure" else len(s.grain_phases)

        count_ratio = matrix_grains(scan) / matrix_grains(tiny_scan)
        assert 0.6 * area_ratio < count_ratio < 1.6 * area_ratio
        if scenario == "poly_minor_phase":
            assert 0.02 <= scan.coverage[1] <= 0.05
        if scenario == "poly_precipitates":
            labels, n = ndimage.label(scan.truth == 1)
            extents = [max(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in ndimage.find_objects(labels)]
            assert n >= 10 and 2 <= min(extents) and max(extents) <= 4


def test_near_zone_grains_are_within_their_tolerance():
    scan = lazy("poly_four_phases")
    for g, zone in enumerate(scan.grain_zone_axes):
        if zone is None:
            continue
        uvw = [int(i) for i in zone[1 : zone.index("]")].split()]
        crystal = pc.direct_lattice(
            {"bcc": "bcc Fe", "fcc": "fcc Fe"}[scan.structures[scan.grain_phases[g]][:3]]
        )
        direction = crystal.T @ np.array(uvw, float)
        beam = scan.grain_orientations[g] @ (direction / np.linalg.norm(direction))
        off = math.degrees(math.acos(min(1.0, beam[2])))
        assert off <= 1.5 + 1e-6
        assert f"{off:.1f}" in zone


@pytest.mark.parametrize("seed", range(6))
def test_minor_phase_covers_two_to_five_percent(seed):
    scan = lazy("poly_minor_phase", seed)
    assert 0.02 <= scan.coverage[1] <= 0.05
    # The minor phase is several grains of its own, in several orientations.
    assert np.count_nonzero(scan.grain_phases == 1) >= 2


@pytest.mark.parametrize("seed", range(4))
def test_precipitates_are_two_to_four_positions_across(seed):
    scan = lazy("poly_precipitates", seed)
    labels, n = ndimage.label(scan.truth == 1)
    assert n == np.count_nonzero(scan.grain_phases == 1) >= 3
    for box in ndimage.find_objects(labels):
        extent = (box[0].stop - box[0].start, box[1].stop - box[1].start)
        assert all(2 <= e <= 4 for e in extent), extent
    # Embedded: even the precipitate's best column keeps some matrix signal.
    assert scan.phase_weights[..., 1].max() < 0.97
    # On a wedge.
    cols = np.broadcast_to(np.arange(48), scan.thickness.shape)
    assert abs(np.corrcoef(cols.ravel(), scan.thickness.ravel())[0, 1]) > 0.9


def test_grain_boundaries_mix_over_one_to_two_positions():
    scan = lazy("poly_structure")
    rows, cols = scan.truth.shape
    # Row profiles across every boundary crossing: the two grains' shares
    # hand over within a few positions, never as a hard step everywhere.
    gen = scan._gen
    share = np.zeros((rows, cols, len(scan.grain_phases)))
    for k in range(gen.grain_index.shape[-1]):
        idx = gen.grain_index[..., k]
        ok = idx >= 0
        share[ok, idx[ok]] += gen.grain_weight[..., k][ok]
    mixed = share.max(-1) < 0.9
    assert 0.05 < mixed.mean() < 0.5
    # Mixing is confined to the boundaries.
    boundary = np.zeros_like(mixed)
    boundary[:, 1:] |= scan.grains[:, 1:] != scan.grains[:, :-1]
    boundary[:, :-1] |= scan.grains[:, 1:] != scan.grains[:, :-1]
    boundary[1:] |= scan.grains[1:] != scan.grains[:-1]
    boundary[:-1] |= scan.grains[1:] != scan.grains[:-1]
    near = ndimage.binary_dilation(boundary, iterations=2)
    assert not (mixed & ~near).any()


def test_old_scenarios_have_grains_as_connected_regions():
    scan = lazy("four_phases")
    np.testing.assert_array_equal(scan.grain_phases[scan.grains], scan.truth)
    for g in range(len(scan.grain_phases)):
        _, n = ndimage.label(scan.grains == g)
        assert n == 1
    assert scan.grain_orientations.shape == (len(scan.grain_phases), 3, 3)
    # One orientation per phase: grains of a phase share it.
    for p in range(len(scan.phases)):
        members = np.flatnonzero(scan.grain_phases == p)
        np.testing.assert_allclose(
            scan.grain_orientations[members], np.broadcast_to(scan.grain_orientations[members[0]], (len(members), 3, 3))
        )


# --- diffraction physics -------------------------------------------------------------
def test_extinction_rules_of_real_structures():
    hkl, _, _ = pc.reflections("fcc Fe", {"Fe": 100.0}, 12.0)
    assert ((hkl % 2 == 0).all(1) | (hkl % 2 == 1).all(1)).all()  # unmixed only
    hkl, _, _ = pc.reflections("bcc Fe", {"Fe": 100.0}, 12.0)
    assert (hkl.sum(1) % 2 == 0).all()
    hkl, _, xi = pc.reflections("hcp Co", {"Co": 100.0}, 12.0)
    rows = {tuple(r) for r in hkl.tolist()}
    assert (0, 0, 1) not in rows and (0, 0, 2) in rows and (1, 0, 0) in rows
    # Rock salt: odd reflections are Ti - C, even ones Ti + C.
    hkl, _, xi = pc.reflections("rock salt TiC", {"Ti": 50.0, "C": 50.0}, 8.0)
    by_type = {tuple(sorted(abs(i) for i in r)): x for r, x in zip(hkl.tolist(), xi)}
    assert by_type[(1, 1, 1)] > 2 * by_type[(0, 0, 2)]


def test_zone_axis_pattern_symmetry():
    rot = pc.zone_axis_rotation("fcc Fe", (0, 0, 1), in_plane_deg=17.0)
    g, hkl, intensity = pc.kinematic_pattern("fcc Fe", {"Fe": 100.0}, rot, thickness_nm=50.0, g_max=9.0)
    strong = intensity > 0.02
    # On [001] only hk0 reflections are excited: 200 and 220 types.
    assert (hkl[strong][:, 2] == 0).all()
    assert {tuple(sorted(abs(i) for i in r)) for r in hkl[strong].tolist()} == {(0, 0, 2), (0, 2, 2)}
    # 4-fold symmetry: rotating the strong spots by 90 degrees maps them onto themselves.
    spots = g[strong]
    turned = spots @ np.array([[0.0, -1.0], [1.0, 0.0]]).T
    dist = np.linalg.norm(turned[:, None] - spots[None], axis=-1).min(1)
    assert dist.max() < 1e-9


def test_bending_splits_friedel_mates_and_moves_intensity():
    rot = pc.zone_axis_rotation("bcc Fe", (0, 0, 1))
    _, hkl, flat = pc.kinematic_pattern("bcc Fe", {"Fe": 100.0}, rot, thickness_nm=60.0)
    _, _, bent = pc.kinematic_pattern("bcc Fe", {"Fe": 100.0}, rot, thickness_nm=60.0, tilt_mrad=(3.0, 0.0))
    rows = {tuple(r): i for i, r in enumerate(hkl.tolist())}
    i, j = rows[(1, 1, 0)], rows[(-1, -1, 0)]
    assert flat[i] == pytest.approx(flat[j], rel=1e-5)
    assert abs(bent[i] - bent[j]) > 0.2 * max(bent[i], bent[j])


def test_convergence_smooths_the_rocking_curve():
    s = np.linspace(-0.05, 0.05, 201)
    sharp = pc.rocking_intensity(s, 35.0, 90.0)
    smooth = pc.rocking_intensity(s, 35.0, 90.0, spread=0.02)
    assert np.abs(np.diff(smooth)).max() < 0.6 * np.abs(np.diff(sharp)).max()
    assert (sharp <= 1.0 + 1e-6).all() and (smooth <= 1.0 + 1e-6).all()


def test_bragg_intensities_change_with_thickness():
    rot = pc.zone_axis_rotation("fcc Fe", (0, 1, 1), tilt_deg=0.3, tilt_azimuth_deg=40.0)
    curves = np.stack(
        [pc.kinematic_pattern("fcc Fe", {"Fe": 100.0}, rot, thickness_nm=t)[2] for t in (30, 45, 60, 75, 90)]
    )
    strong = curves.max(0) > 0.05
    ratio = curves[:, strong].max(0) / curves[:, strong].min(0)
    assert np.median(ratio) > 1.5
    # Pendelloesung: some reflections get weaker as the foil gets thicker.
    assert (np.diff(curves[:, strong], axis=0) < 0).any()


def test_bragg_intensities_vary_within_a_grain_of_the_scan():
    scan = lazy("poly_structure")
    varied = []
    for g in range(len(scan.grain_phases)):
        spots = scan.grain_spot_intensities(g)[scan.grains == g]
        if spots.shape[1] == 0 or spots.shape[0] < 20:
            continue
        strongest = spots[:, int(np.argmax(spots.mean(0)))]
        varied.append(strongest.max() / strongest.min())
    assert np.median(varied) > 1.5


def test_scan_disks_are_the_kinematic_model_of_each_grain():
    # The rendered disks of a grain are kinematic_pattern() for its crystal,
    # composition, orientation, local thickness and bending, up to one
    # per-position factor (the elastic electrons and the Bragg cap).
    scan = lazy("poly_four_phases")
    crystals = {"fcc": "fcc Fe", "bcc": "bcc Fe"}
    for g in range(0, len(scan.grain_phases), 3):
        phase = scan.grain_phases[g]
        y, x, _ = grain_core(scan, g)
        counts = scan.grain_spot_intensities(g)[y, x]
        if counts.size < 2:
            continue
        g_xy, hkl, intensity = pc.kinematic_pattern(
            crystals[scan.structures[phase][:3]],
            scan.compositions[phase],
            scan.grain_orientations[g],
            thickness_nm=60.0 * float(scan.thickness[y, x]),
            tilt_mrad=scan.tilt[y, x],
            g_max=30.0,
        )
        index = {tuple(h): i for i, h in enumerate(hkl.tolist())}
        model = intensity[[index[tuple(h)] for h in scan.grain_hkl[g]]]
        np.testing.assert_allclose(g_xy[[index[tuple(h)] for h in scan.grain_hkl[g]]], scan.grain_g_vectors[g], atol=1e-9)
        ratio = counts / model
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-3)


def test_grains_of_one_phase_differ_positions_in_one_grain_agree():
    scan = lazy("poly_structure")
    patterns = expected("poly_structure")
    for p in range(len(scan.phases)):
        members = np.flatnonzero(scan.grain_phases == p)
        cores, within = [], []
        for g in members:
            y, x, depth = grain_core(scan, g)
            cores.append(spot_pattern(scan, patterns[y, x], y, x))
            # A neighbour two positions away inside the same grain.
            for dy, dx in ((0, 2), (0, -2), (2, 0), (-2, 0)):
                y2, x2 = y + dy, x + dx
                if 0 <= y2 < 32 and 0 <= x2 < 48 and depth[y2, x2] >= 1:
                    break
            b = spot_pattern(scan, patterns[y2, x2], y2, x2)
            within.append(np.corrcoef(cores[-1], b)[0, 1])
        between = np.corrcoef(np.stack(cores))[np.triu_indices(len(members), 1)]
        assert np.median(between) < 0.5 and np.mean(between < 0.5) > 0.8
        assert np.median(within) > 0.8


def test_phase_spot_intensities_cover_every_grain_of_the_phase():
    scan = lazy("poly_hcp")
    spots = scan.spot_intensities(1)
    assert spots.shape == (32, 48, len(scan.g_vectors[1]))
    assert np.isnan(spots[scan.truth != 1]).all()
    # Each position of the phase has values only for its own grain's disks.
    members = np.flatnonzero(scan.grain_phases == 1)
    offsets = np.cumsum([0] + [len(scan.grain_g_vectors[g]) for g in members])
    for k, g in enumerate(members):
        inside = spots[scan.grains == g]
        assert np.isfinite(inside[:, offsets[k] : offsets[k + 1]]).all()
        assert np.isnan(np.delete(inside, np.s_[offsets[k] : offsets[k + 1]], axis=1)).all()
    with pytest.raises(ValueError, match="grain"):
        scan.grain_spot_intensities(len(scan.grain_phases))


# --- counts --------------------------------------------------------------------------
def test_counts_are_realistic_and_match_the_expectation():
    scan = eager("poly_four_phases")
    totals = scan.dp.data.reshape(scan.truth.size, -1).sum(1)
    assert 5e3 <= totals.min() and totals.max() <= 6e4
    spectra = scan.eds.data.sum(-1)
    assert 30 <= np.median(spectra) <= 300
    assert scan.dp.data.sum() == pytest.approx(expected("poly_four_phases").sum(dtype=float), rel=1e-3)


def test_render_time_tiny():
    import time

    start = time.perf_counter()
    synthetic_scan("poly_four_phases", size="tiny", seed=5)
    assert time.perf_counter() - start < 5.0
