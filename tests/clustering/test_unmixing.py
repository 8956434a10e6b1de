"""Small phases unmixed from their host position by position (stemfuse_hs.clustering.unmixing)."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from stemfuse_hs.clustering.unmixing import fit_particle, host_free_template, probe_fractions, soft_disk, unmix_small_phases
from stemfuse_hs.data.polycrystal import embedded_precipitates
from _helpers import phase_maps_with_and_without

FERRITE = np.array([180.0, 20.0, 0.0, 0.0])  # Fe K, Cr K, Ti K, C K windows
TIC = np.array([0.0, 0.0, 150.0, 30.0])
DELTA_FERRITE = np.array([140.0, 60.0, 0.0, 0.0])


def _scan(particle, rng, shape=(30, 40)):
    """Counts of precipitates (probe share 0.8 inside, 0.3 in a one-position halo) in a host, with a thickness ramp."""
    share = np.zeros(shape)
    labels = np.zeros(shape, int)
    for y, x in ((8, 8), (20, 25), (10, 30)):
        share[y - 1 : y + 2, x - 1 : x + 2] = 0.3
        share[y, x] = share[y - 1, x] = share[y, x - 1] = 0.8
        labels[y - 1 : y + 2, x - 1 : x + 2] = 1  # the phase pooled the halo
    thickness = np.linspace(0.6, 1.4, shape[1])[None, :] * np.ones(shape)
    rates = thickness.ravel()[:, None] * (
        np.outer(1 - share.ravel(), FERRITE) + np.outer(share.ravel(), particle)
    )
    return labels, rng.poisson(rates), share


def test_the_halo_of_a_precipitate_goes_back_to_its_host_and_the_precipitate_stays():
    # Position by position: these blocky particles are no disks.
    labels, counts, share = _scan(TIC, np.random.default_rng(0))
    new, moves = unmix_small_phases(labels, counts, particle_model=False)
    truth = (share > 0.5).astype(int)
    assert adjusted_rand_score(truth.ravel(), labels.ravel()) < 0.6
    # Every precipitate position stays, nothing else joins, and the halo (18
    # positions with 30 % of their probe in the precipitate, each measured to
    # about 8 %) leaves but for one short of the half-error margin.
    assert (new[share > 0.5] == 1).all() and (new[share == 0] == 0).all()
    assert (new[share == 0.3] == 0).sum() == 17
    (move,) = moves
    assert (move["phase"], move["host"], move["out"].size, move["in"].size, move["particles"]) == (1, 0, 17, 0, 0)
    assert move["own_share"] > 0.95


def _embedded_scan(seed, pooled_share):
    """Six embedded TiC spheres seen through the probe in ferrite at tiny ``poly_precipitates`` counts (about 20 Ti K at one half).

    The phase holds every position whose probe share exceeds ``pooled_share``.
    """
    rng = np.random.default_rng(seed)
    share = embedded_precipitates(rng, (30, 40), 6).max(axis=0)
    thickness = np.linspace(0.6, 1.4, 40)[None, :] * np.ones((30, 40))
    rates = thickness.ravel()[:, None] * (
        np.outer(1 - share.ravel(), 0.75 * FERRITE) + np.outer(share.ravel(), TIC * 40.0 / 150.0)
    )
    return (share > pooled_share).astype(int), rng.poisson(rates), share


def test_small_particles_are_judged_by_their_fitted_disks():
    # The phase pooled the halo (its counts mostly the host's): each
    # particle's 20-30 measured shares fix its edge better than any one
    # position's (about 6 % at one half) does.
    wrong = {False: 0, True: 0}
    for seed in range(4):
        labels, counts, share = _embedded_scan(seed, 0.15)
        for particle_model in wrong:
            new, (move,) = unmix_small_phases(labels, counts, particle_model=particle_model)
            wrong[particle_model] += int(((new == 1) != (share > 0.5)).sum())
            assert move["particles"] == (6 if particle_model else 0) and move["halo"] > 0.3
    assert wrong == {False: 25, True: 16}


def test_a_phase_drawn_at_its_particles_edges_keeps_them():
    # Sharp-edged particles spanning over half the foil (fixed-zone
    # ``precipitates``), whose patterns let the clustering find their edges:
    # few of the phase's positions are measured mostly in the host, and no
    # disk, blind to the patterns, moves the edge positions measured near
    # one half.
    rows, cols = np.divmod(np.arange(1200.0), 40)
    share = np.zeros(1200)
    for cy, cx, r in ((8.3, 8.6, 2.4), (20.1, 25.4, 2.7), (10.6, 30.2, 2.2), (22.4, 9.7, 2.5)):
        d = np.hypot(rows - cy, cols - cx) / r
        share = np.where(d < 1, 0.52 + 0.38 * np.sqrt(np.clip(1 - d**2, 0, 1)), share)
    share = share.reshape(30, 40)
    rates = np.outer(1 - share.ravel(), 0.75 * FERRITE) + np.outer(share.ravel(), TIC * 40.0 / 150.0)
    labels = (share > 0.5).astype(int)
    counts = np.random.default_rng(0).poisson(rates)
    new, (move,) = unmix_small_phases(labels, counts)
    assert move["halo"] <= 0.1 and move["particles"] == 0
    np.testing.assert_array_equal(new, unmix_small_phases(labels, counts, particle_model=False)[0])
    assert (new != labels).sum() <= 2


def test_fit_particle_recovers_a_noisy_disk_and_flags_a_plate():
    rows, cols = np.divmod(np.arange(81.0), 9)
    truth = soft_disk(rows, cols, 4.3, 3.8, 0.8, 1.7, 0.45)
    noisy = truth + np.random.default_rng(5).normal(0, 0.05, 81)
    fitted, misfit = fit_particle(rows, cols, noisy, np.full(81, 0.05))
    assert np.abs(fitted - truth).max() < 0.06 and misfit < 1.5
    # A plate one position thick and seven long is no disk.
    plate = np.where((rows == 4) & (np.abs(cols - 4) <= 3), 0.8, 0.0)
    assert fit_particle(rows, cols, plate, np.full(81, 0.05))[1] > 5.0


def test_a_small_phase_of_the_hosts_own_elements_is_left_alone():
    # Cr-rich ferrite in ferrite: subtracting the host would eat the phase itself.
    labels, counts, _ = _scan(DELTA_FERRITE, np.random.default_rng(1))
    new, moves = unmix_small_phases(labels, counts)
    assert np.array_equal(new, labels) and moves == []


def test_phases_of_one_composition_are_never_unmixed():
    # fcc and hcp cobalt: what is left of the one after the other's spectrum is noise.
    labels, counts, _ = _scan(FERRITE, np.random.default_rng(3))
    assert unmix_small_phases(labels, counts)[1] == []
    # And a pair the composition test calls one composition is not tried at all.
    labels, counts, _ = _scan(TIC, np.random.default_rng(0))
    assert unmix_small_phases(labels, counts, same_composition=np.ones((2, 2), bool))[1] == []


def test_host_free_template_and_probe_fractions_recover_the_mixture():
    rng = np.random.default_rng(2)
    fractions = rng.uniform(0, 1, 400)
    counts = rng.poisson(np.outer(fractions, FERRITE) + np.outer(1 - fractions, TIC))
    template, host_shape, host_share = host_free_template(counts.sum(axis=0), 50 * FERRITE)
    np.testing.assert_allclose(template, TIC / TIC.sum(), atol=0.01)
    found, error = probe_fractions(counts, host_shape, template, np.full(400, FERRITE.sum()))
    assert np.abs(found - fractions).max() < 4 * error.max() and error.max() < 0.1
    assert host_share == pytest.approx(0.5 * FERRITE.sum() / (0.5 * FERRITE.sum() + 0.5 * TIC.sum()), abs=0.03)


def test_unmix_small_phases_checks_its_inputs():
    with pytest.raises(ValueError, match=r"^unmix_small_phases: counts has 3 rows for 4 positions\.$"):
        unmix_small_phases(np.zeros((2, 2), int), np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"^max_share must be in \(0, 1\], got 1\.5\.$"):
        unmix_small_phases(np.zeros((2, 2), int), np.ones((4, 4)), max_share=1.5)


def test_map_phases_gives_the_halo_of_tic_precipitates_back_to_the_ferrite():
    # Tiny poly_precipitates seed 3: one segment pools every precipitate with
    # its mixed ring; the phase map held ferrite positions 2:1 over TiC.
    # The boundary step after it left out: this test is the unmixing's.
    scan, _, phases, without = phase_maps_with_and_without("poly_precipitates", 3, "max_unmixed_share", boundary_margin=None)
    truth = scan.truth.ravel()
    before, after = adjusted_rand_score(truth, without.data.ravel()), adjusted_rand_score(truth, phases.data.ravel())
    assert before < 0.5 and after > 0.85  # 0.45 -> 0.91
    unmixed = phases.phase_merge["unmixed"]
    assert unmixed["moved_out"][0] > 50 and unmixed["own_share"][0] > 0.9
    # The phase pooled the halo: its particles were judged by their disks.
    assert unmixed["halo"][0] > 0.3 and unmixed["particles"][0] >= 5
    assert phases.phase_merge["max_unmixed_share"] == 0.2 and "unmixed" not in without.phase_merge
    # Each direction of moves is one more segment of the phase it joins.
    added = int(unmixed["moved_out"][0] > 0) + int(unmixed["moved_in"][0] > 0)
    assert phases.segments.n_clusters == without.segments.n_clusters + added


def test_a_precipitate_in_the_thin_corner_of_a_wedge_is_judged_on_the_host_beside_it():
    # No pure host position lies within the rate radius of the corner: the
    # nearest ones (thin) stand in, not the scan's mean (twice as thick),
    # against which the host around the precipitate looked half TiC.
    shape = (30, 40)
    share, labels = np.zeros(shape), np.zeros(shape, int)
    labels[0:4, 0:4] = 1  # the corner precipitate and its halo, pooled
    share[0:4, 0:4] = 0.2
    share[0:3, 0:3] = 0.8
    for y, x in ((15, 20), (22, 32)):
        labels[y - 1 : y + 2, x - 1 : x + 2] = 1
        share[y - 1 : y + 2, x - 1 : x + 2] = 0.2
        share[y, x] = share[y - 1, x] = share[y, x - 1] = 0.8
    thickness = np.linspace(0.5, 1.5, shape[1])[None, :] * np.ones(shape)
    rates = thickness.ravel()[:, None] * (np.outer(1 - share.ravel(), FERRITE) + np.outer(share.ravel(), TIC))
    new, _ = unmix_small_phases(labels, np.random.default_rng(4).poisson(rates))
    assert (new[share > 0.5] == 1).all() and (new[share < 0.5] == 0).all()
