"""particle_budget: the budget it picks meets its target when measured; too few particles miss it; bad input."""

import math

import jax
import numpy as np
import pytest

import ppl_bmc
from ppl_bmc.detectors import Detector
from ppl_bmc.geometry import HeightMap, Scene, VoxelGrid

DAY = 86400.0


@pytest.fixture(scope="module")
def pyramid():
    grid = VoxelGrid((-50.0, 0.0), (50.0, 40.0), (6, 6))
    scene = Scene(HeightMap.pyramid(100.0, 40.0, fill=grid), material="standard_rock", step_m=8.0)
    rho = np.random.default_rng(0).uniform(1500.0, 3000.0, grid.shape)
    # one day over 1 m²: 1e4–3e4 counts per bin, Poisson sd 0.6–1 %
    dets = [Detector((x, 0.0), np.linspace(-50, 50, 9), exposure_s=DAY) for x in (-10.0, 15.0)]
    return scene, rho, dets


def measured_error(scene, rho, dets, n, n_keys=16):
    """Each bin's MC standard error of one estimate at ``n`` particles, in Poisson sd, over ``n_keys`` keys."""
    runs = np.stack([np.asarray(ppl_bmc.expected_counts(scene, rho, dets, method=ppl_bmc.BMC(jax.random.key(100 + i), n)),
                                dtype=float) for i in range(n_keys)])
    return runs.std(0, ddof=1) / np.sqrt(runs.mean(0))


@pytest.mark.slow  # ~26 s cold (pilot runs at several sizes)
def test_the_budget_meets_its_target_and_fewer_particles_miss_it(pyramid):
    scene, rho, dets = pyramid
    budget = ppl_bmc.particle_budget(scene, rho, dets, key=jax.random.key(0))
    assert budget.met and budget.se_over_poisson.max() <= 0.3 == budget.target
    assert budget.se_over_poisson.shape == budget.expected.shape == (2, 8)
    assert budget.pilot_se_over_poisson.shape == (2, 2, 8) and budget.pilot_particles == (64, 256)
    err = measured_error(scene, rho, dets, budget.n_particles)
    # 16 keys: an sd estimate's own relative error is 1/√30 ≈ 0.18; the worst of 16 bins may sit
    # 2.5 of those above its true value, so allow 1.5 × the target
    assert err.max() <= 1.5 * 0.3, (budget.n_particles, err.max())
    # and the budget is not padding: a sixteenth of it misses the target (the check can fail)
    few = max(budget.n_particles // 16, 2)
    assert measured_error(scene, rho, dets, few).max() > 0.3, few


def test_a_cap_below_the_need_warns_and_names_the_bins(pyramid):
    scene, rho, dets = pyramid
    with pytest.warns(UserWarning, match=r"max_particles=4 .*detector"):
        budget = ppl_bmc.particle_budget(scene, rho, dets, key=jax.random.key(0), target=1e-4, pilot_particles=4,
                                         replicas=3, min_particles=2, max_particles=4)
    assert budget.n_particles == 4 and not budget.met and len(budget.missed) > 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(target=0.0), "target must be > 0"),
    (dict(target=float("nan")), "target must be > 0"),
    (dict(pilot_particles=1), "pilot_particles must be >= 2"),
    (dict(replicas=2), "replicas must be >= 3"),
    (dict(min_particles=100, max_particles=10), r"min_particles \(100\) must be <= max_particles \(10\)"),
    (dict(method="bmc"), "method must be a ppl_bmc.BMC"),
])
def test_bad_input(pyramid, kwargs, match):
    scene, rho, dets = pyramid
    with pytest.raises(ValueError, match=match):
        ppl_bmc.particle_budget(scene, rho, dets, key=jax.random.key(0), **kwargs)


def test_the_power_law_between_and_beyond_the_pilots():
    from ppl_bmc.budget import _needed, _predicted

    sizes = (64, 256)
    ratios = np.array([[0.8], [0.2]])  # error falls as 1/N between the pilots
    assert math.isclose(_predicted(sizes, ratios, 128)[0], 0.4)
    assert math.isclose(_predicted(sizes, ratios, 1024)[0], 0.1)  # 1/√N beyond the larger pilot
    assert math.isclose(_needed(sizes, ratios, 0.4)[0], 128)
    assert math.isclose(_needed(sizes, ratios, 0.1)[0], 1024)
    assert math.isclose(_needed(sizes, ratios, 1.6)[0], 32)  # below: the measured power, clipped to [1/2, 3/2]
