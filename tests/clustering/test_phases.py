"""The physics merge: segments joined into phases by composition and lattice."""

import re

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import stemfuse_hs
from stemfuse_hs.clustering.phases import (
    composition_test,
    composition_windows,
    lattice_overlap,
    merge_phases,
    ring_spacings,
)


# --- array core -------------------------------------------------------------
def test_composition_test_ignores_thickness_and_sees_chemistry():
    rng = np.random.default_rng(0)
    shape = np.array([40.0, 5.0, 30.0, 10.0, 15.0])
    thin, thick = rng.poisson(shape * 20), rng.poisson(shape * 90)  # one phase, 4.5x the counts
    other = rng.poisson(np.array([30.0, 15.0, 30.0, 10.0, 15.0]) * 20)  # 10 % of the counts moved
    windows = np.arange(5)
    same = composition_test(thin, thick, windows)
    different = composition_test(thin, other, windows)
    assert same["p_value"] > 1e-3
    assert different["p_value"] < 1e-6
    assert different["difference"] == pytest.approx(0.1, abs=0.03)
    assert same["dof"] == 4 and same["counts"] == [thin.sum(), thick.sum()]


def test_composition_difference_is_measured_above_the_noise():
    # Six X-ray lines on a falling background over 150 windows, 3,000
    # counts against 30,000: noise alone puts ~0.07 of distance between two
    # draws of one composition, more than the 0.03 threshold.
    channels = np.arange(150)

    def spectrum(heights):
        shape = 3.0 * np.exp(-channels / 60.0)
        for centre, height in zip((20, 45, 60, 75, 90, 110), heights):
            shape = shape + height * np.exp(-0.5 * ((channels - centre) / 1.2) ** 2)
        return shape / shape.sum()

    phase, other = spectrum([4, 8, 2, 10, 3, 5]), spectrum([4, 5, 3, 13, 3, 5])
    true_distance = 0.5 * np.abs(other - phase).sum()  # 0.043
    rng = np.random.default_rng(0)
    reference = rng.poisson(phase * 30000)
    same = composition_test(rng.poisson(phase * 3000), reference, channels)
    different = composition_test(rng.poisson(other * 3000), reference, channels)
    assert same["observed_difference"] > 0.06 and same["difference"] < 0.01
    observed, floor = different["observed_difference"], different["noise_floor"]
    assert different["difference"] ** 2 == pytest.approx(observed**2 - floor**2)
    assert true_distance < different["difference"] < different["observed_difference"] - 0.02


@pytest.mark.parametrize("order", ["channel order", "shuffled"])
def test_window_counts_sum_the_channels_of_each_window(order):
    from stemfuse_hs.clustering.phases import _window_counts

    rng = np.random.default_rng(3)
    windows = composition_windows(np.arange(60) * 0.1, 0.35, exclude=[(2.0, 2.6)])
    if order == "shuffled":
        windows = rng.permutation(windows)
    counts = rng.poisson(4.0, size=(3, 60)).astype(float)
    expected = np.stack([counts[:, windows == w].sum(axis=1) for w in range(windows.max() + 1)], axis=1)
    np.testing.assert_array_equal(_window_counts(counts, windows), expected)


def test_composition_windows_leave_out_grid_lines_and_low_energies():
    energies = np.arange(100) * 0.1
    windows = composition_windows(energies, 0.5, exclude=[(7.9, 8.2)])
    assert np.all(windows[energies < 0.2] == -1)
    assert np.all(windows[(energies >= 7.9) & (energies <= 8.2)] == -1)
    assert windows.max() + 1 == len(np.unique(windows[windows >= 0]))


def _spot_pattern(radii_angles, size=64, centre=(31.3, 32.6), counts=40.0, background=3.0):
    rows, cols = np.mgrid[:size, :size]
    pattern = np.full((size, size), background) + 30.0 * np.exp(-np.hypot(rows - centre[0], cols - centre[1]) ** 2 / 8)
    for radius, angle in radii_angles:
        y, x = centre[0] + radius * np.sin(angle), centre[1] + radius * np.cos(angle)
        pattern += counts * np.exp(-((rows - y) ** 2 + (cols - x) ** 2) / 1.5)
    return pattern, centre


def test_ring_spacings_do_not_depend_on_orientation():
    spacings = (9.0, 12.7, 18.0)
    turned = []
    for rotation in (0.0, 0.7):
        spots = [(r, rotation + a) for r in spacings for a in (0.2, 0.2 + np.pi, 1.4)]
        pattern, centre = _spot_pattern(spots)
        radii, strengths = ring_spacings(pattern, centre, inner_radius=5, n_positions=100)
        turned.append(radii)
        np.testing.assert_allclose(radii, spacings, atol=0.15)
        assert strengths.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(turned[0], turned[1], atol=0.15)


def test_ring_medians_equal_those_of_a_sort_by_ring_and_value():
    from stemfuse_hs._kernels import ring_medians

    rng = np.random.default_rng(3)
    values = rng.poisson(20.0, size=(2, 5000)).astype(float)
    ring = rng.integers(0, 300, 5000) * 2  # every other ring empty
    expected = []
    for row in values:
        expected.append([np.median(row[ring == r]) for r in np.unique(ring)])
    np.testing.assert_array_equal(ring_medians(values, ring), expected)
    np.testing.assert_array_equal(ring_medians(values[1], ring), expected[1])
    with pytest.raises(ValueError, match=re.escape("ring_medians: values has 5000 pixels, ring 4999.")):
        ring_medians(values, ring[1:])


def _faint_disk_pattern(amplitude, seed=0):
    # Mean of 25 patterns on a 128-pixel detector: disks 6 pixels in radius
    # (a Friedel pair at 40 pixels) 3 standard deviations of a pixel's noise
    # above a background of 10 counts, about 30 once smoothed over a disk.
    rows, cols = np.mgrid[:128, :128]
    expected = np.full((128, 128), 10.0)
    expected[np.hypot(rows - 64, cols - 64) <= 6] += 2000.0
    for y, x in ((40, 32), (88, 96)):  # 40 * (0.6, 0.8) either side of the beam
        expected[np.hypot(rows - y, cols - x) <= 6] += amplitude
    return np.random.default_rng(seed).poisson(25 * expected) / 25.0


def test_faint_wide_disks_are_found_against_the_noise_of_the_smoothed_pattern():
    pattern = _faint_disk_pattern(2.0)
    kwargs = dict(inner_radius=9, n_positions=25, disk_radius=6.0)
    assert ring_spacings(pattern, (64, 64), **kwargs)[0].size == 0
    radii, _ = ring_spacings(pattern, (64, 64), faint_disks=True, **kwargs)
    np.testing.assert_allclose(radii, [40.0], atol=0.3)
    # Noise alone is not taken for disks.
    assert ring_spacings(_faint_disk_pattern(0.0, seed=1), (64, 64), faint_disks=True, **kwargs)[0].size == 0


def test_ring_spacings_of_a_featureless_pattern_are_empty():
    pattern, centre = _spot_pattern([])
    radii, strengths = ring_spacings(pattern, centre, inner_radius=5, n_positions=100)
    assert radii.size == 0 and strengths.size == 0


def test_a_narrow_amorphous_ring_is_background_not_a_spacing():
    # A support film's ring half a pixel wide: one median per half-pixel
    # ring left its slope as a false spacing at 5.8 px (tiny poly_chemistry).
    rows, cols = np.mgrid[:33, :33]
    centre = (16.0, 16.0)
    film = 2.0 + 14.0 * np.exp(-0.5 * ((np.hypot(rows - 16.0, cols - 16.0) - 5.9) / 0.5) ** 2)
    spots, _ = _spot_pattern(
        [(9.8, a) for a in (0.4, 2.0, 3.54, 5.14)] + [(11.5, 1.1), (11.5, 4.24)],
        size=33, centre=centre, counts=6.0, background=0.0,
    )
    for friedel in (False, True):
        radii, _ = ring_spacings(
            film + spots, centre, inner_radius=3, n_positions=100, disk_radius=1.25, friedel_centre=friedel
        )
        np.testing.assert_allclose(radii, [9.8, 11.5], atol=0.1)


def test_a_zone_patterns_spacings_are_measured_to_half_a_percent():
    # The interior of an fcc [011] region of a tiny scan (32-pixel detector):
    # the four bright 111 spots were most of their thin background rings,
    # whose medians then pushed the 200 spots out by 1.7 % (7.07 px against
    # 6.95), and 3 x 3 centroids are pulled to the peak pixel by up to 1.5 %.
    from scipy import ndimage

    from stemfuse_hs.clustering.phases import beam_centroid
    from stemfuse_hs.data import synthetic_scan
    from stemfuse_hs.features.sdt import find_direct_beam

    scan = synthetic_scan("four_phases", size="tiny", seed=4)
    fcc = ndimage.binary_erosion(scan.truth == scan.phases.index("Fe-rich fcc"), iterations=2)
    pattern = np.asarray(scan.dp.data, dtype=np.float64)[fcc].mean(axis=0)
    centre, beam_radius = find_direct_beam(pattern)
    centre = beam_centroid(pattern, centre, beam_radius / 1.25)
    radii, _ = ring_spacings(
        pattern, centre, inner_radius=beam_radius + 1.0, n_positions=int(fcc.sum()), disk_radius=beam_radius / 1.25,
        friedel_centre=True,
    )
    # |g| of fcc (a = 0.3595 nm) 111, 200, 220, 311, 222 and 400 over the tiny detector's 0.8 nm^-1 per pixel
    expected = np.sqrt([3, 4, 8, 11, 12, 16]) / 0.3595 / 0.8
    np.testing.assert_allclose(radii, expected, rtol=0.005)


def test_broad_disks_of_two_lattices_2_percent_apart_are_two_spacings():
    # fcc 111 and bcc 110 of one steel lie 2.4 % apart: 1.2 px at the published size's
    # 48 px, whose disks are about 5 px in radius. Merged within a third of the radius
    # (1.7 px) they were one spacing; now within a sixth.
    rows, cols = np.mgrid[:256, :256]
    pattern = np.ones((256, 256))
    for radius, angles in ((48.0, (0.2, 1.3)), (49.2, (2.1, 2.6))):
        for angle in angles + tuple(a + np.pi for a in angles):
            y, x = 128 + radius * np.sin(angle), 128 + radius * np.cos(angle)
            pattern += 40 * np.exp(-((rows - y) ** 2 + (cols - x) ** 2) / (2 * 2.5**2))
    radii, _ = ring_spacings(pattern, (128, 128), inner_radius=10, disk_radius=5.0)
    np.testing.assert_allclose(radii, [48.0, 49.2], atol=0.2)
    assert ring_spacings(pattern, (128, 128), inner_radius=10, disk_radius=5.0, merge_distance=5 / 3)[0].size == 1


def test_lattice_overlap_accepts_subsets_and_refuses_other_lattices():
    fcc = np.array([6.02, 6.95, 9.83, 11.53])
    bcc = np.array([6.17, 8.72, 12.34])
    assert lattice_overlap(fcc[[0, 2, 3]], fcc, 0.25) == 1.0
    assert lattice_overlap(fcc, bcc, 0.25) == pytest.approx(1 / 3)
    assert np.isnan(lattice_overlap(fcc[:2], bcc, 0.25, min_spacings=3))


def test_complete_linkage_does_not_chain_through_a_mixed_segment():
    counts = np.full((3, 4), 1000.0)  # one composition
    fcc, bcc = [6.02, 6.95, 9.83, 11.53], [6.17, 8.72, 12.34]
    mixed = sorted(fcc + bcc)
    spacings = [np.array(fcc), np.array(mixed), np.array(bcc)]
    merge = merge_phases(counts, np.arange(4), spacings, tolerance=0.25, lattice_linkage="complete")
    assert merge.n_phases == 2
    assert [0, 2] not in merge.groups and merge.segment_phase()[0] != merge.segment_phase()[2]
    assert any(t["merged"] for t in merge.tests)
    # Averaged, the mixed segment's two agreeing pairs outvote the one that disagrees.
    assert merge_phases(counts, np.arange(4), spacings, tolerance=0.25).groups == [[0, 1, 2]]


# Radii (pixels) of steel's reflections at the tiny scans' camera length.
FCC = {"111": 6.02, "200": 6.95, "220": 9.83, "311": 11.53, "400": 13.9}
BCC = {"110": 6.17, "200": 8.72, "211": 10.68, "220": 12.34}


def test_a_segment_of_another_composition_witnesses_one_lattice():
    # Ni-rich fcc grains near [001] (200, 220, 400; one also 311) and near
    # [112]/[110] (111, 220, 311, 222) share too few spacings to be judged
    # one lattice; a Fe-rich fcc segment shows 111, 200, 220, 311 and 222
    # together: they are.
    fcc = dict(FCC, **{"222": 12.04})
    grains = [["200", "220", "400"], ["200", "220", "311", "400"], ["111", "220", "311", "222"], ["111", "220", "311", "222"]]
    spacings = [np.array(sorted(fcc[g] for g in grain)) for grain in grains]
    spacings.append(np.array(sorted(fcc[g] for g in ("111", "200", "220", "311", "222"))))
    ni_rich, fe_rich = np.array([6000.0, 3000, 1000, 4000]), np.array([2000.0, 3000, 5000, 4000])
    counts = np.stack([ni_rich] * 4 + [fe_rich])
    merge = merge_phases(counts, np.arange(4), spacings, tolerance=0.25)
    assert merge.groups == [[0, 1, 2, 3], [4]]
    joined = [t for t in merge.tests if t["merged"] and t["witness"] >= 0]
    assert len(joined) == 1 and joined[0]["witness"] == 4
    alone = merge_phases(counts, np.arange(4), spacings, tolerance=0.25, lattice_witnesses=False)
    assert alone.groups == [[0, 1], [2, 3], [4]]
    with pytest.raises(TypeError, match=r"^lattice_witnesses must be True or False, got 'yes'\.$"):
        merge_phases(counts, np.arange(4), spacings, tolerance=0.25, lattice_witnesses="yes")


def test_a_group_whose_spacings_another_has_shown_twice_is_of_its_lattice():
    # One composition. Six fcc grains near [001] (200, 220, 400) and two near
    # [011] (all six spacings) form one group; the grain near [112] (111, 220,
    # 311, 222) shares one spacing with each [001] grain, so the pairs average
    # 0.5 and part it, but each of its four spacings is shown by both [011]
    # grains: one lattice.
    fcc = dict(FCC, **{"222": 12.04})
    zone_001, zone_011, zone_112 = ["200", "220", "400"], list(fcc), ["111", "220", "311", "222"]
    grains = [zone_001] * 6 + [zone_011] * 2 + [zone_112]
    spacings = [np.array(sorted(fcc[g] for g in grain)) for grain in grains]
    counts = np.tile([4000.0, 3000, 2000, 1000], (len(grains), 1))
    counts[-1] = [4040.0, 2990, 1990, 980]  # one composition, but joined last
    merge = merge_phases(counts, np.arange(4), spacings, tolerance=0.25)
    assert merge.groups == [list(range(9))]
    last = [t for t in merge.tests if t["merged"]][-1]
    assert 8 in last["a"] + last["b"] and last["contained"] and last["lattice_overlap"] == 1.0
    # Shown by one [011] grain only (it could mix two lattices at a boundary): apart.
    keep = [0, 1, 2, 3, 4, 5, 6, 8]
    once = merge_phases(counts[keep], np.arange(4), [spacings[k] for k in keep], tolerance=0.25)
    assert once.groups == [[0, 1, 2, 3, 4, 5, 6], [7]]


def test_average_linkage_keeps_grains_of_one_lattice_in_one_phase():
    # Four fcc grains in four orientations ([112] and [001] share only 220),
    # three bcc grains; one composition, so only the lattice separates.
    fcc_grains = [["111", "220", "311"], ["200", "220", "400"], ["111", "200", "220", "311"], ["111", "200", "220", "400"]]
    bcc_grains = [["110", "200", "211"], ["200", "211", "220"], ["110", "211", "220"]]
    spacings = [np.array(sorted(FCC[g] for g in grain)) for grain in fcc_grains]
    spacings += [np.array(sorted(BCC[g] for g in grain)) for grain in bcc_grains]
    counts = np.full((len(spacings), 4), 1000.0)
    merge = merge_phases(counts, np.arange(4), spacings, tolerance=0.25)
    assert merge.groups == [[0, 1, 2, 3], [4, 5, 6]]
    # Any one pair ([112] against [001]) parting the groups keeps fcc in two.
    complete = merge_phases(counts, np.arange(4), spacings, tolerance=0.25, lattice_linkage="complete")
    assert complete.groups == [[0, 2], [1, 3], [4, 5, 6]]
    with pytest.raises(ValueError, match=r"^lattice_linkage='single' is not one of 'average', 'complete'\.$"):
        merge_phases(counts, np.arange(4), spacings, tolerance=0.25, lattice_linkage="single")


def test_a_small_mixed_segment_does_not_make_two_lattices_one():
    # An fcc grain of one composition; a bcc grain of another, with a small
    # segment on its boundary that shows both lattices' spacings. The
    # boundary segment's one agreeing pair must not outvote the grains:
    # positions may not move between the two phases by composition.
    fcc, bcc = [FCC["111"], FCC["200"], FCC["220"]], [BCC["110"], BCC["200"], BCC["211"]]
    spacings = [np.array(fcc), np.array(bcc), np.array(sorted(fcc + bcc))]
    counts = np.stack([np.array([6000.0, 3000, 1000, 4000]), np.array([2000.0, 3000, 5000, 4000]) * 1.0])
    counts = np.concatenate([counts, counts[1:] * 40 / 300])
    merge = merge_phases(counts, np.arange(4), spacings, tolerance=0.25, sizes=np.array([300.0, 300.0, 40.0]))
    assert merge.groups == [[0], [1, 2]]
    assert merge.lattice_differs[0, 1] and merge.lattice_differs[1, 0]
    # Counted per segment instead of per position, the pairs would average 0.67.
    unweighted = merge_phases(counts, np.arange(4), spacings, tolerance=0.25)
    assert unweighted.groups == [[0], [1, 2]] and not unweighted.lattice_differs[0, 1]


def test_a_mixed_boundary_joins_the_grain_it_shows_but_a_grain_of_its_own_lattice_stays():
    # Fe-rich fcc | three positions 70 % Fe-rich, 30 % Ni-rich | Ni-rich bcc.
    fe_rich, ni_rich = np.array([6000.0, 3000, 1000, 4000]), np.array([2000.0, 3000, 5000, 4000])
    counts = np.stack([fe_rich, (0.7 * fe_rich + 0.3 * ni_rich) * 0.15, ni_rich])
    segment_map = np.repeat([0, 1, 2], [20, 3, 20])
    fcc, bcc = [FCC["111"], FCC["200"], FCC["220"]], [BCC["110"], BCC["200"], BCC["211"]]
    # The probe over both grains shows both lattices' spots: a boundary.
    boundary = [np.array(fcc), np.array(sorted(fcc + bcc)), np.array(bcc)]
    merge = merge_phases(counts, np.arange(4), boundary, tolerance=0.25, segment_map=segment_map)
    assert merge.groups == [[0, 1], [2]]
    assert [t["boundary_of"] for t in merge.tests if "boundary_of" in t] == [[[0], [2]]]
    # A bcc grain whose composition happens to lie between its neighbours' is a phase.
    own = [np.array(fcc), np.array(bcc), np.array(bcc)]
    merge = merge_phases(counts, np.arange(4), own, tolerance=0.25, segment_map=segment_map)
    assert merge.groups == [[0], [1], [2]]


def test_merge_phases_needs_a_modality():
    with pytest.raises(ValueError, match="merge_phases needs spectra, spacings or both."):
        merge_phases(None, None, None, tolerance=0.25)


# --- signals -------------------------------------------------------------------
@pytest.fixture(scope="module")
def thickness_split_scan():
    # structure_only seed 1: thickness splits the bcc phase of one composition
    # into pieces that the feature-space merge keeps apart (ARI 0.37).
    return stemfuse_hs.data.synthetic_scan("structure_only", size="tiny", seed=1)


@pytest.fixture(scope="module")
def phase_map(thickness_split_scan):
    scan = thickness_split_scan
    return stemfuse_hs.map_phases(scan.dp, scan.eds, random_state=1, show_progressbar=False)


def test_map_phases_rejoins_the_pieces_of_one_phase(phase_map, thickness_split_scan):
    truth = thickness_split_scan.truth.ravel()
    assert phase_map.n_clusters == 2
    assert phase_map.segments.n_clusters >= 4
    assert adjusted_rand_score(truth, phase_map.data.ravel()) > 0.85
    assert adjusted_rand_score(truth, phase_map.segments.data.ravel()) < 0.5


def test_phase_map_nests_its_segments(phase_map):
    record = phase_map.phase_merge
    segments = phase_map.segments
    groups = record["groups"]
    assert sorted(i for g in groups for i in g) == list(range(segments.n_clusters))
    phase_of = np.asarray(record["segment_phase"])
    moved = np.asarray(record["reassigned"])
    # Every position is its segment's phase, except those its counts moved.
    np.testing.assert_array_equal(
        phase_map.data[~moved], np.where(segments.data >= 0, phase_of[segments.data], -1)[~moved]
    )
    assert moved.sum() < 0.05 * moved.size
    # Every later move (here: across boundaries) added one segment at the end.
    added = sum(len(record[key]["positions"]) for key in ("grown", "pieces", "grains_by_composition", "grains", "positions_moved", "boundaries"))
    added += len(record["minor_phases"]["positions"]) + int(
        sum((np.asarray(record["unmixed"][k]) > 0).sum() for k in ("moved_out", "moved_in"))
    )
    assert len(record["boundaries"]["positions"]) > 0
    moved |= segments.data >= segments.n_clusters - added
    # Phase memberships are the summed memberships of their segments (swapped where moved).
    np.testing.assert_allclose(
        phase_map.memberships.data[0][~moved], segments.memberships.data[groups[0]].sum(axis=0)[~moved], rtol=1e-6
    )
    assert record["used"] == ["eds", "dp"]
    assert segments.parameters["min_cluster_size"] == 31  # 2 % of the 32 x 48 scan
    tests = record["tests"]
    assert len(tests["a"]) == len(tests["p_value"]) == len(tests["merged"]) == len(tests["composition_noise_floor"])
    assert np.all(tests["composition_noise_floor"][np.isfinite(tests["p_value"])] > 0)
    # Every merge joins two groups; every move from the finer map adds a segment to a phase.
    assert tests["merged"].sum() == (
        segments.n_clusters - phase_map.n_clusters - len(record["grown"]["positions"]) - len(record["pieces"]["positions"])
        - len(record["positions_moved"]["positions"]) - len(record["boundaries"]["positions"])
        - len(record["grains"]["positions"]) - len(record["grains_by_composition"]["positions"])
    )


def test_phase_map_round_trips_through_hspy(phase_map, tmp_path):
    import hyperspy.api as hs

    path = tmp_path / "phases.hspy"
    phase_map.save(path)
    loaded = hs.load(path)
    np.testing.assert_array_equal(loaded.data, phase_map.data)
    np.testing.assert_array_equal(loaded.segments.data, phase_map.segments.data)
    assert loaded.phase_merge["groups"] == phase_map.phase_merge["groups"]
    assert loaded.phase_merge["lattice_linkage"] == "average" and loaded.phase_merge["lattice_witnesses"] is True
    np.testing.assert_array_equal(loaded.phase_merge["tests"]["witness"], phase_map.phase_merge["tests"]["witness"])
    np.testing.assert_array_equal(loaded.phase_merge["tests"]["contained"], phase_map.phase_merge["tests"]["contained"])
    assert set(loaded.phase_merge["grown"]) == {
        "fine_phase", "from_phase", "into_phase", "positions", "p_value", "composition_difference"
    }
    assert set(loaded.phase_merge["pieces"]) == {"segment", "from_phase", "into_phase", "positions"}
    assert loaded.phase_merge["min_piece_size"] == 15
    assert set(loaded.phase_merge["positions_moved"]) == {"from_phase", "into_phase", "positions"}
    assert loaded.phase_merge["min_position_log_ratio"] == 20.0
    np.testing.assert_allclose(loaded.phase_merge["direct_beam"], phase_map.phase_merge["direct_beam"])


def test_segment_pieces_keep_pieces_that_are_not_the_whole_segment():
    from stemfuse_hs.clustering.phases import segment_pieces

    segments = np.full((10, 40), -1)
    segments[:5, :10] = 0  # segment 0: pieces of 50, 50 and 4 positions
    segments[5:, 30:] = 0
    segments[0:2, 20:22] = 0
    segments[5:, :20] = 1  # segment 1: 100 positions and a piece of 12, most of it one piece
    segments[:3, 34:38] = 1
    pieces, of = segment_pieces(segments, min_size=15)
    assert of.tolist() == [0, 0]
    assert sorted(np.bincount(pieces[pieces >= 0]).tolist()) == [50, 50]
    assert np.all(segments[pieces >= 0] == 0)
    with pytest.raises(ValueError, match=r"segment_pieces: segment_map must be 2-D \(the scan\), got shape \(4,\)"):
        segment_pieces(np.zeros(4, int))


def test_pieces_move_only_to_a_phase_of_their_composition_whose_spacings_they_show():
    from stemfuse_hs.clustering.phases import move_pieces_by_lattice

    fcc, bcc = np.array([6.0, 6.9, 9.8, 11.5]), np.array([6.2, 8.7, 10.7, 12.3])
    labels = np.array([0] * 6 + [1] * 4)
    pieces = np.array([0, 0, 1, 1, 2, 2, -1, -1, -1, -1])
    shown = [np.array([8.7, 12.3]), np.array([8.7, 9.8]), np.array([11.5])]
    same = np.ones((2, 2), bool)
    new, moves = move_pieces_by_lattice(labels, pieces, shown, [fcc, bcc], same, 0.25)
    # Piece 0 shows bcc only; piece 1 shows both (stays); piece 2 shows its own fcc.
    assert new.tolist() == [1, 1, 0, 0, 0, 0, 1, 1, 1, 1]
    assert [(m["piece"], m["from"], m["into"], m["positions"]) for m in moves] == [(0, 0, 1, 2)]
    other_composition, none = move_pieces_by_lattice(labels, pieces, shown, [fcc, bcc], np.eye(2, dtype=bool), 0.25)
    assert other_composition.tolist() == labels.tolist() and none == []
    # A phase whose spacings are unknown cannot be told from another by them.
    unknown, none = move_pieces_by_lattice(labels, pieces, shown, [np.zeros(0), bcc], same, 0.25)
    assert unknown.tolist() == labels.tolist() and none == []


def test_positions_leave_a_small_phase_across_lattices_only_for_a_composition_its_lattice_lacks():
    from stemfuse_hs.clustering.phases import reassignment_allowed

    # Four small phases: fcc and bcc of composition A (0, 1), of composition B (2, 3).
    fcc = np.array([True, False, True, False])
    differs = fcc[:, None] != fcc[None, :]
    composition = np.array([0, 0, 1, 1])
    same = composition[:, None] == composition[None, :]
    four = reassignment_allowed(differs, same, np.full(4, 0.05))
    # Within a lattice only: a B-looking fcc position goes to fcc B, not bcc B.
    assert (four == ~differs).all()
    # An fcc matrix and a small bcc phase of another composition: out of the small one only.
    two = reassignment_allowed(np.array([[False, True], [True, False]]), np.eye(2, dtype=bool), [0.9, 0.1])
    assert two.tolist() == [[True, False], [True, True]]
    # Two large phases of two lattices: never.
    large = reassignment_allowed(np.array([[False, True], [True, False]]), np.eye(2, dtype=bool), [0.5, 0.5])
    assert large.tolist() == [[True, False], [False, True]]
    # fcc and bcc of one composition: composition cannot tell them apart.
    one = reassignment_allowed(np.array([[False, True], [True, False]]), np.ones((2, 2), bool), [0.95, 0.05])
    assert one.tolist() == [[True, False], [False, True]]


def test_phase_spacings_need_two_segments_unless_the_phase_has_one():
    from stemfuse_hs.clustering.phases import phase_spacings

    spacings = [np.array([6.0, 9.8]), np.array([6.1, 11.5]), np.array([6.2, 8.7]), np.array([13.9])]
    # Phase 0: two segments share 6.0-6.1; phase 1: one judged segment, its spacings; phase 2: none judged.
    found = phase_spacings(spacings, [0, 0, 1, 2], [True, True, True, False], 3, 0.25)
    assert [v.round(2).tolist() for v in found] == [[6.05], [6.2, 8.7], []]


@pytest.fixture(scope="module")
def four_phase_polycrystal():
    # poly_four_phases seed 2: a segment pools a Ni-rich fcc grain of 127
    # positions with grains of the Fe-rich phases' lattice elsewhere.
    scan = stemfuse_hs.data.synthetic_scan("poly_four_phases", size="tiny", seed=2)
    return scan, stemfuse_hs.map_phases(scan.dp, scan.eds, random_state=2, show_progressbar=False)


def test_map_phases_moves_a_grain_to_the_phase_whose_lattice_it_shows(four_phase_polycrystal):
    scan, phase_map = four_phase_polycrystal
    record = phase_map.phase_merge
    truth, labels = scan.truth.ravel(), phase_map.data.ravel()
    # One piece: the grain, less a position or two at its edge (the UMAP
    # layout, and so the segments' edges, differ a little between CPUs).
    (positions,) = record["pieces"]["positions"].tolist()
    assert 115 <= positions <= 127
    into = int(record["pieces"]["into_phase"][0])
    # The moves after the merge each appended one segment: the grown, the
    # carved, then the piece's (the grains' and the boundary moves come later).
    added = sum(
        len(record[key]["positions"]) for key in ("grown", "minor_phases", "pieces", "grains_by_composition", "grains", "positions_moved", "boundaries")
    )
    added += int(sum((np.asarray(record["unmixed"][k]) > 0).sum() for k in ("moved_out", "moved_in")))
    moved_segment = phase_map.segments.n_clusters - added + len(record["grown"]["positions"]) + len(record["minor_phases"]["positions"])
    assert moved_segment in record["groups"][into]
    moved = phase_map.segments.data.ravel() == moved_segment
    # Every moved position is of the true phase that most of the phase it joined holds.
    assert np.all(truth[moved] == np.bincount(truth[labels == into]).argmax())
    back = labels.copy()
    back[moved] = record["pieces"]["from_phase"][0]
    assert adjusted_rand_score(truth, labels) > adjusted_rand_score(truth, back) + 0.1


def test_merge_phases_lazy_equals_eager(phase_map, thickness_split_scan):
    scan = thickness_split_scan
    lazy = phase_map.segments.merge_phases(scan.dp.as_lazy(), scan.eds.as_lazy(), show_progressbar=False)
    eager = phase_map.segments.merge_phases(scan.dp, scan.eds, show_progressbar=False)
    np.testing.assert_array_equal(lazy.data, eager.data)


def test_merge_phases_with_one_modality_and_clear_errors(phase_map, thickness_split_scan):
    scan = thickness_split_scan
    by_lattice = phase_map.segments.merge_phases(dp=scan.dp)
    # One composition: the spectra alone would merge everything, the lattice keeps two.
    assert by_lattice.n_clusters == 2
    assert phase_map.segments.merge_phases(eds=scan.eds).n_clusters == 1
    with pytest.raises(ValueError, match="merge_phases needs dp, eds or both"):
        phase_map.segments.merge_phases()
    with pytest.raises(ValueError, match=r"^lattice_linkage='any' is not one of 'average', 'complete'\.$"):
        phase_map.segments.merge_phases(dp=scan.dp, lattice_linkage="any")
    with pytest.raises(TypeError, match=r"^lattice_witnesses must be True or False, got 1\.$"):
        phase_map.segments.merge_phases(dp=scan.dp, lattice_witnesses=1)
    with pytest.raises(ValueError, match=r"merge_phases: eds's scan \(navigation shape \(48, 16\)\) is not the label map's scan \(48, 32\)\."):
        phase_map.segments.merge_phases(eds=scan.eds.inav[:, :16])


def test_polycrystal_of_two_compositions_is_two_phases_not_its_grains(default_fit):
    # poly_chemistry: two fcc compositions in 9 grains, each in its own orientation.
    # Not on every seed (issue #14): on this scan random_state 0-9 gave the
    # two phases 8 times with umap-learn's layout (the default at this size)
    # and 6 times with the parallel one (three phases otherwise, a fcc
    # composition split by the lattice test between grains whose
    # orientations show different rings); on scans 0-9 with their own seed
    # 5 and 6 times (measured 2026-12-04). Seed 3 gives them with both
    # layouts: the test pins the mechanism on it.
    scan = default_fit.scan("poly_chemistry")
    truth = scan.truth.ravel()
    phases = stemfuse_hs.map_phases(scan.dp, scan.eds, random_state=3, fused=default_fit.fused("poly_chemistry"))
    eds_alone = default_fit.alone("poly_chemistry", "eds")
    grains_map = default_fit.labels("poly_chemistry")
    phase_ari = adjusted_rand_score(truth, phases.data.ravel())
    assert phases.n_clusters == 2
    assert phase_ari > 0.9
    assert phase_ari >= adjusted_rand_score(truth, eds_alone.data.ravel()) - 0.02
    # The feature-space map follows the grains; the segments inside the phase map do too.
    assert adjusted_rand_score(truth, grains_map.data.ravel()) < 0.5
    assert adjusted_rand_score(scan.grains.ravel(), phases.segments.data.ravel()) > 0.8


def test_min_spacings_leaves_segments_with_fewer_spacings_to_the_composition(default_fit):
    # Above every segment's count of spacings the overlap test never parts two
    # groups: without the indexing, one phase per composition, so fcc and bcc
    # of one steel become one phase. (That two indexed lattices still part
    # them is test_groups_of_two_indexed_lattices_never_join: whether the
    # tiny structure_only scan indexes both hangs on a 1.4 % bias of its fcc
    # 200 spot, see the workflow page.)
    merged = {}
    for scenario in ("poly_chemistry", "structure_only"):
        scan = default_fit.scan(scenario)
        segments = default_fit.phases(scenario).segments
        merged[scenario] = segments.merge_phases(
            scan.dp, scan.eds, min_spacings=50, index_lattice=False, show_progressbar=False
        )
        assert merged[scenario].phase_merge["min_spacings"] == 50
    assert merged["structure_only"].n_clusters == 1
    chemistry = merged["poly_chemistry"]
    assert chemistry.n_clusters == 2
    assert adjusted_rand_score(default_fit.scan("poly_chemistry").truth.ravel(), chemistry.data.ravel()) > 0.9
    with pytest.raises(ValueError, match=r"^min_spacings must be >= 1, got 0\.$"):
        segments.merge_phases(scan.dp, scan.eds, min_spacings=0)


def test_reassign_moves_positions_only_on_strong_evidence():
    from stemfuse_hs.clustering.phases import reassign_by_composition

    shares = np.array([[0.7, 0.2, 0.1], [0.2, 0.2, 0.6]])
    rng = np.random.default_rng(0)
    counts = np.vstack([rng.multinomial(120, shares[0], 50), rng.multinomial(120, shares[1], 50)])
    wrong = np.repeat([1, 0], 50)  # every position in the other phase
    allowed = np.ones((2, 2), bool)
    np.testing.assert_array_equal(reassign_by_composition(counts, wrong, shares, allowed), np.repeat([0, 1], 50))
    # Not between phases whose lattices differ, and never for unlabelled positions.
    np.testing.assert_array_equal(reassign_by_composition(counts, wrong, shares, np.zeros((2, 2), bool)), wrong)
    assert reassign_by_composition(counts[:3], np.array([-1, -1, -1]), shares, allowed).tolist() == [-1, -1, -1]


def test_reassign_pools_the_counts_of_neighbouring_positions():
    from stemfuse_hs.clustering.phases import reassign_by_composition

    # A 20 x 20 scan, right half of the second composition, every position
    # labelled with the first, 8 counts each: alone a spectrum rarely
    # decides, pooled with its 8 neighbours it does.
    shares = np.array([[0.55, 0.3, 0.15], [0.35, 0.3, 0.35]])
    rng = np.random.default_rng(1)
    truth = np.tile(np.repeat([0, 1], 10), (20, 1)).ravel()
    counts = np.stack([rng.multinomial(8, shares[t]) for t in truth])
    labels = np.zeros(400, dtype=np.int64)
    allowed = np.ones((2, 2), bool)
    alone = reassign_by_composition(counts, labels, shares, allowed, pool_width=1)
    pooled = reassign_by_composition(counts, labels, shares, allowed, scan_shape=(20, 20))
    assert (alone[truth == 1] == 1).mean() < 0.2
    assert (pooled[truth == 1] == 1).mean() > 0.8
    assert (pooled[truth == 0] == 1).mean() < 0.1
    with pytest.raises(ValueError, match=r"^pool_width must be odd \(a square centred on the position\), got 2\.$"):
        reassign_by_composition(counts, labels, shares, allowed, scan_shape=(20, 20), pool_width=2)
    with pytest.raises(ValueError, match=r"^scan_shape \(20, 21\) holds 420 positions, window_counts 400\.$"):
        reassign_by_composition(counts, labels, shares, allowed, scan_shape=(20, 21))


def test_carve_minor_phases_ignores_boundaries():
    from stemfuse_hs.clustering.phases import carve_minor_phases

    rng = np.random.default_rng(1)
    a, b = np.array([60.0, 30.0, 10.0]), np.array([10.0, 30.0, 60.0])
    counts = np.vstack([rng.poisson(a, (150, 3)), rng.poisson(b, (150, 3)), rng.poisson(0.5 * a + 0.5 * b, (12, 3))])
    labels = np.r_[np.zeros(150, int), np.ones(150, int), np.zeros(12, int)]
    fine = np.r_[np.zeros(150, int), np.ones(150, int), np.full(12, 2)]
    # The 12 positions are half a, half b: the boundary, not a phase.
    new, carved = carve_minor_phases(labels, fine, counts)
    assert carved == [] and np.array_equal(new, labels)


def test_carved_pieces_of_the_host_composition_go_back_to_the_host():
    from stemfuse_hs.clustering.phases import carved_pieces_of_the_host

    # A 20 x 20 scan of the matrix with two particles (3 x 3, the minor composition) carved as phase 1, and two
    # pieces of matrix positions (4 and 2, apart from the particles) carved with them.
    rng = np.random.default_rng(2)
    matrix, minor = np.array([60.0, 30.0, 10.0]), np.array([40.0, 30.0, 30.0])
    truth = np.zeros((20, 20), int)
    truth[2:5, 2:5] = truth[12:15, 14:17] = 1
    counts = np.stack([rng.poisson(minor if t else matrix) for t in truth.ravel()])
    labels = truth.copy()
    labels[8:10, 5:7] = 1
    labels[17, 2:4] = 1
    new = carved_pieces_of_the_host(labels.ravel(), [(1, 0)], counts, (20, 20))
    assert np.array_equal(new, truth.ravel())
    # The same pieces of the minor composition stay.
    counts[labels.ravel() == 1] = rng.poisson(minor, (int((labels == 1).sum()), 3))
    assert np.array_equal(carved_pieces_of_the_host(labels.ravel(), [(1, 0)], counts, (20, 20)), labels.ravel())
    with pytest.raises(ValueError, match=r"^carved_pieces_of_the_host: scan_shape \(20, 21\) does not hold 400 positions\.$"):
        carved_pieces_of_the_host(labels.ravel(), [(1, 0)], counts, (20, 21))
    with pytest.raises(ValueError, match=r"^carved_pieces_of_the_host: window_counts has 399 rows for 400 positions\.$"):
        carved_pieces_of_the_host(labels.ravel(), [(1, 0)], counts[:399], (20, 20))


def test_grow_phases_moves_only_positions_whose_counts_are_not_their_phase_s():
    from stemfuse_hs.clustering.phases import grow_phases

    rng = np.random.default_rng(3)
    matrix, minor = np.array([60.0, 30.0, 10.0]), np.array([20.0, 30.0, 50.0])
    counts = rng.poisson(matrix, (1200, 3))
    counts[:100] = rng.poisson(minor, (100, 3))
    index = np.arange(1200)
    # The finer map holds the 100 minor positions; the phase map 80 of them as a phase.
    new, moves = grow_phases(np.where(index < 80, 1, 0), np.where(index < 100, 1, 0), counts)
    assert np.array_equal(new, np.where(index < 100, 1, 0))
    assert [(m["from"], m["into"], m["positions"]) for m in moves] == [(0, 1, 20)]
    # The finer map's phase reaches 4 matrix positions past the minor phase: pooled
    # with the minor ones they differ from the matrix, on their own they do not.
    labels = np.where(index < 100, 1, 0)
    new, moves = grow_phases(labels, np.where(index < 104, 1, 0), counts)
    assert np.array_equal(new, labels) and moves == []


def test_minor_phase_is_found(default_fit):
    # poly_minor_phase: Cr-rich bcc delta ferrite covering 2.7 % of an austenite polycrystal.
    scan = default_fit.scan("poly_minor_phase")
    phases = default_fit.phases("poly_minor_phase")
    without = stemfuse_hs.map_phases(scan.dp, scan.eds, random_state=0, minor_cluster_size=None,
                                     fused=default_fit.fused("poly_minor_phase"), show_progressbar=False)
    truth = scan.truth.ravel()
    assert len(phases.phase_merge["minor_phases"]["host"]) >= 1
    # Every piece of the carved phase was tested against its host (none went back on this scan).
    assert set(phases.phase_merge["carved_pieces_returned"]) == {"from_phase", "into_phase", "positions"}
    assert adjusted_rand_score(truth, phases.data.ravel()) > 0.5
    assert adjusted_rand_score(truth, without.data.ravel()) < 0.1


def test_precipitates_left_in_the_matrix_take_their_positions_by_their_own_counts():
    # Tiny poly_precipitates seed 2, segmented by its true grains so that the
    # result does not hang on a UMAP layout: five TiC precipitates form a
    # segment of their own, five more (23 positions) lie inside the ferrite
    # grains' segments, and the merge's pooled reassignment is off, as for a
    # precipitate phase that map_phases carves out of the finer map after
    # the merge. Its last pass moves them by their own counts.
    from scipy import ndimage

    from stemfuse_hs.signals.label_factory import relabel_cluster_labels
    from stemfuse_hs.signals.phases import _composition_windows, _move_positions, _window_counts_per_position

    scan = stemfuse_hs.data.synthetic_scan("poly_precipitates", size="tiny", seed=2)
    grains = scan.grains.copy()
    left = grains >= 12
    nearest = ndimage.distance_transform_edt(grains >= 7, return_distances=False, return_indices=True)
    grains[left] = grains[tuple(nearest)][left]
    grains[(grains >= 7) & (grains <= 11)] = 7
    carrier = stemfuse_hs.fuse(scan.dp, scan.eds, show_progressbar=False).cluster(
        random_state=0, merge_threshold=0, show_progressbar=False
    )
    segments = relabel_cluster_labels(carrier, grains.ravel(), np.eye(8, dtype=np.float32)[grains.ravel()])
    phases = segments.merge_phases(scan.dp, scan.eds, min_log_ratio=1e9, show_progressbar=False)
    truth, before = scan.truth.ravel(), phases.data.ravel()
    tic = int(np.bincount(before[truth == 1]).argmax())
    assert np.count_nonzero((truth == 1) & (before != tic)) == 23
    counts = _window_counts_per_position(scan.eds, _composition_windows(scan.eds, phases.phase_merge["exclude_lines"]))
    moved = _move_positions(phases, counts, 20.0)
    after = moved.data.ravel()
    record = moved.phase_merge["positions_moved"]
    # Every TiC position reaches the TiC phase (with some of the mixed ring
    # around them, which map_phases unmixes after this pass).
    assert np.count_nonzero((truth == 1) & (after != tic)) == 0
    assert set(record["into_phase"].tolist()) == {tic} and record["positions"].sum() == np.count_nonzero(after != before)
    assert adjusted_rand_score(truth, after) > adjusted_rand_score(truth, before) + 0.05
    # Each pair of phases' moved positions is one more segment of the phase they join.
    assert moved.segments.n_clusters == phases.segments.n_clusters + record["positions"].size
    assert moved.phase_merge["groups"][tic][-1] == moved.segments.n_clusters - 1


def test_map_phases_checks_its_parameters_before_clustering(thickness_split_scan, monkeypatch):
    from stemfuse_hs.signals import features

    def must_not_run(*args, **kwargs):
        raise AssertionError("clustered before the parameters were checked")

    monkeypatch.setattr(features.FusedSTEMSignal, "cluster", must_not_run)
    scan = thickness_split_scan
    with pytest.raises(TypeError, match="unexpected keyword argument 'alpah'"):
        stemfuse_hs.map_phases(scan.dp, scan.eds, alpah=0.01)
    with pytest.raises(ValueError, match="X-ray line 'Cu_Kz': Cu has no line 'Kz'"):
        stemfuse_hs.map_phases(scan.dp, scan.eds, exclude_lines=["Cu_Kz"])
    with pytest.raises(ValueError, match=r"min_cluster_size=20000 \(20000 positions\) is larger than the number of positions \(1536\)"):
        stemfuse_hs.map_phases(scan.dp, scan.eds, minor_cluster_size=20000)
    with pytest.raises(ValueError, match=r"^segment_size=20000 \(20000 positions\) is larger than the number of positions \(1536\)\.$"):
        stemfuse_hs.map_phases(scan.dp, scan.eds, segment_size=20000)
    with pytest.raises(TypeError, match=r"^segment_size must be a count or a fraction, got 'big'\.$"):
        stemfuse_hs.map_phases(scan.dp, scan.eds, segment_size="big")
    with pytest.raises(ValueError, match=r"^map_phases sizes its segments with segment_size; cluster_kwargs may not hold min_cluster_size\.$"):
        stemfuse_hs.map_phases(scan.dp, scan.eds, cluster_kwargs={"min_cluster_size": 50})
    with pytest.raises(ValueError, match=r"^min_position_log_ratio must be >= 0, got -1\.$"):
        stemfuse_hs.map_phases(scan.dp, scan.eds, min_position_log_ratio=-1)
    with pytest.raises(ValueError, match=r"^min_grain_log_ratio must be >= 0, got -1\.$"):
        stemfuse_hs.map_phases(scan.dp, scan.eds, min_grain_log_ratio=-1)
    with pytest.raises(ValueError, match=r"^boundary_margin must be >= 0, got -2\.$"):
        stemfuse_hs.map_phases(scan.dp, scan.eds, boundary_margin=-2)


def test_segments_are_two_percent_of_the_scan_up_to_forty_positions():
    from stemfuse_hs.signals.phases import default_segment_size

    # A grain covers about as many positions whatever the scan's size.
    assert [default_segment_size(n) for n in (32 * 48, 48 * 80, 50 * 150, 512 * 512)] == [31, 40, 40, 40]


def test_map_phases_lazy_equals_eager_with_pieces_moved(four_phase_polycrystal):
    scan, phase_map = four_phase_polycrystal
    lazy = stemfuse_hs.map_phases(scan.dp.as_lazy(), scan.eds.as_lazy(), random_state=2, show_progressbar=False)
    np.testing.assert_array_equal(lazy.data, phase_map.data)
    np.testing.assert_array_equal(lazy.segments.data, phase_map.segments.data)
    assert lazy.phase_merge["pieces"]["positions"].tolist() == phase_map.phase_merge["pieces"]["positions"].tolist()
    assert lazy.phase_merge["pieces"]["positions"].size == 1
    assert lazy.phase_merge["boundaries"]["positions"].tolist() == phase_map.phase_merge["boundaries"]["positions"].tolist()
