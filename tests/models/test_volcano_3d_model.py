"""The 3-D volcano model (models/volcano_3d.py) at a small size: data, sites, the CLI protocol,
and a MAP that finds the conduit, with and without gravity."""

import math

import jax
import numpy as np
import numpyro
import pytest

import volcano_3d as vm

SMALL = {"grid": 8, "truth_grid": 16, "n_pixels": 4, "n_stations": 16, "dem_cells": 21, "n_directions": 2}


@pytest.fixture(scope="module")
def simulated():
    cfg = vm._cfg(SMALL)
    return cfg, *vm.simulate(cfg, key=jax.random.key(0))


def test_simulated_data(simulated):
    cfg, data, truth = simulated
    n_tel = len(cfg["telescope_azimuths_deg"])
    assert data["counts"].shape == (n_tel, (2 * cfg["n_pixels"] - 1) ** 2) == data["open_sky_counts"].shape
    assert data["counts"].dtype == np.int64 and np.all(data["counts"] >= 0)
    # relative gravity: the true mean is removed (the offset is a latent site), then the noise
    # added: the mean is within 4 standard errors of 0; the anomaly spans several mGal
    noise = cfg["gravity_noise_mgal"] / math.sqrt(cfg["n_stations"])
    assert abs(data["gravity"].mean()) < 4 * noise and data["gravity"].std() > 1.0
    assert truth["log_density"].shape == (8, 8, 8)
    conduit, zone = vm.bodies(cfg)
    assert conduit.any()  # (the 70 m zone is below a quarter contrast in 200 m voxels: not zone.any())
    vm.validate_data(data)
    with pytest.raises(ValueError, match="gravity"):
        vm.validate_data(dict(data, gravity=data["gravity"][:, None]))


def test_model_sites(simulated):
    cfg, data, _ = simulated
    model, kw = vm.build(cfg, data, key=None)
    tr = numpyro.handlers.trace(numpyro.handlers.seed(model, 0)).get_trace(**kw)
    latent = {k for k, v in tr.items() if v["type"] == "sample" and not v["is_observed"]}
    observed = {k for k, v in tr.items() if v["type"] == "sample" and v["is_observed"]}
    assert latent == {"log_density_white", "background", "efficiency", "sky_norm", "gravity_offset"}
    assert observed == set(vm.OBSERVED)
    muons_only, kw2 = vm.build(dict(cfg, use_gravity=False, model_background=False), data, key=None)
    tr2 = numpyro.handlers.trace(numpyro.handlers.seed(muons_only, 0)).get_trace(**kw2)
    assert "gravity" not in tr2 and "background" not in tr2 and "gravity" not in kw2


def test_map_finds_the_conduit(simulated):
    from ppl_bmc import infer

    cfg, data, _ = simulated
    model, kw = vm.build(cfg, data, key=None)
    fit = infer.fit_map(model, rng_key=jax.random.key(1), num_steps=800, learning_rate=0.05, **kw)
    loc = vm.locate(vm.map_log_density(fit, cfg), cfg)
    assert loc["conduit_distance"] is not None and loc["conduit_distance"] <= 1, loc
    # and a deliberately wrong reading (the densest voxel of a flat, prior-mean field) does not
    flat = np.full((8, 8, 8), math.log(cfg["density"]))
    flat[0, 0, 0] += 0.1  # the corner voxel, far from the summit's column
    assert vm.locate(flat, cfg)["conduit_distance"] > 1


def test_bad_configuration():
    with pytest.raises(ValueError, match="unknown volcano_3d option"):
        vm._cfg({"grdi": 8})
    with pytest.raises(ValueError, match="one value per telescope"):
        vm._cfg({"true_background": [0.1]})
    with pytest.raises(ValueError, match="grid must divide"):
        vm.voxel_truth(vm._cfg({"grid": 5, "truth_grid": 16}))
