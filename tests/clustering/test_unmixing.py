"""Small phases unmixed from their host position by position (stemfuse_hs.clustering.unmixing)."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from stemfuse_hs.clustering.unmixing import host_free_template, probe_fractions, unmix_small_phases
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
    labels, counts, share = _scan(TIC, np.random.default_rng(0))
    new, moves = unmix_small_phases(labels, counts)
    truth = (share > 0.5).astype(int)
    assert adjusted_rand_score(truth.ravel(), labels.ravel()) < 0.6
    # Every precipitate position stays, nothing else joins, and the halo (18
    # positions with 30 % of their probe in the precipitate, each measured to
    # about 8 %) leaves but for one short of the half-error margin.
    assert (new[share > 0.5] == 1).all() and (new[share == 0] == 0).all()
    assert (new[share == 0.3] == 0).sum() == 17
    (move,) = moves
    assert (move["phase"], move["host"], move["out"].size, move["in"].size) == (1, 0, 17, 0)
    assert move["own_share"] > 0.95


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
    assert before < 0.5 and after > 0.7
    unmixed = phases.phase_merge["unmixed"]
    assert unmixed["moved_out"][0] > 50 and unmixed["own_share"][0] > 0.9
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
