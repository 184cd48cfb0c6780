"""The one muon transport core: slab and field run the same kernel and physics; physics and
methods are values (custom materials, user sky fluxes, Quadrature/BMC)."""

import math
import os
import re
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl_bmc
from ppl_bmc import BMC, Detector, Quadrature, ReplayAdjoint, flux, materials, muography
from ppl_bmc.adjoint import mean_weight
from ppl_bmc.geometry import Layers, Scene, VoxelGrid
from ppl_bmc.physics.constants import MUON_MASS, MWE
from ppl_bmc.transport import loop
from ppl_bmc.transport.csda import MuonKernel
from ppl_bmc.transport.kernel import Kernel
from ppl_bmc.transport.paths import FieldPath, LineOfSight, Path

PACKAGE = os.path.join(os.path.dirname(__file__), "..", "..", "ppl_bmc")


def _layer_and_slab(zenith_deg, thickness_m, n_steps, decay=True):
    """A uniform layer of standard rock at its nominal density crossed at ``zenith_deg`` from a
    detector on its floor, as a field kernel and as a slab kernel with the same geometry."""
    rock = materials.get("standard_rock")
    z = np.radians(zenith_deg)
    length = thickness_m / np.cos(z)  # the line of sight inside the layer (m)
    layer = Layers((-400.0,), (400.0,), z_edges=[0.0, thickness_m])
    field = MuonKernel(FieldPath(layer, length / n_steps), rock, flux.gccly, 1e6, decay)
    slab = MuonKernel(LineOfSight(n_steps), rock, flux.gccly, 1e6, decay)
    one = lambda v: jnp.asarray(np.asarray(v, dtype=float)[None])
    field_ctx = {"origin": one(np.zeros(2)), "lo": one([z]), "hi": one([z]), "omega": one(1.0), "k_min": one(1e-3),
                 "frame": one(np.eye(2)), "tent": one(0.0)}
    slab_ctx = {"zenith": one(z), "k_min": one(1e-3)}
    return (field, jnp.full(1, rock.density), field_ctx), (slab, rock.density * length / MWE, slab_ctx)


@pytest.mark.parametrize("zenith_deg, thickness_m", [pytest.param(0.0, 40.0, marks=pytest.mark.slow),  # ~26 s cold
                                                     (35.0, 120.0)])
def test_slab_and_field_agree_for_a_uniform_layer(x64, zenith_deg, thickness_m):
    # One kernel, two paths: the same key draws the same energies, and each step crosses the same
    # grammage (ρ·step_m through the layer = the slab's opacity / n_steps), so the estimates and
    # their gradients agree to float64 rounding (the layer's ray integral rounds differently).
    n_steps = 6
    (fk, rho, fctx), (sk, opacity, sctx) = _layer_and_slab(zenith_deg, thickness_m, n_steps)
    run = lambda kernel, p, ctx, adjoint=ReplayAdjoint(): mean_weight(
        kernel, p, ctx, jax.random.key(7), n_particles=3000, n_steps=n_steps, adjoint=adjoint)
    f, s = float(run(fk, rho, fctx)[0]), float(run(sk, jnp.asarray(opacity), sctx)[0])
    assert f > 0
    assert abs(f / s - 1) < 1e-10, (f, s)
    # d/dρ of the layer = d/dX of the slab × dX/dρ (X = ρ·L in m.w.e.) without decay: with it the
    # two differ by physics (a denser layer keeps its length, a thicker slab does not)
    (fk, rho, fctx), (sk, opacity, sctx) = _layer_and_slab(zenith_deg, thickness_m, n_steps, decay=False)
    gf = float(jax.grad(lambda r: run(fk, r, fctx)[0])(rho)[0])
    gs = float(jax.grad(lambda x: run(sk, x, sctx)[0])(jnp.asarray(opacity))) * opacity / float(rho[0])
    assert abs(gf / gs - 1) < 1e-8, (gf, gs)
    # and the check can fail: a different key or one step fewer is not float rounding away
    other = float(mean_weight(sk, jnp.asarray(opacity), sctx, jax.random.key(8), n_particles=3000, n_steps=n_steps,
                              adjoint=ReplayAdjoint())[0])
    assert abs(other / f - 1) > 1e-6


def test_scattering_step_inverts_exactly(x64):
    # (the three adjoints through the scattering slab: tests/test_muography.py)
    rock = materials.get("standard_rock")
    kernel = MuonKernel(LineOfSight(6), rock, flux.gccly, 1e3, scattering=True)
    ctx = {"zenith": jnp.full(1, 0.4), "k_min": jnp.full(1, 1.0)}
    streams, x = loop.Streams(jax.random.key(0), 1, 200), jnp.asarray(30.0)

    @jax.jit
    def walk(x):  # each step and its inverse: the mismatch per step, in units of rtol 1e-10, atol 1e-12
        state, _ = loop.init(kernel, x, ctx, streams, jnp.float64)
        errors = []
        for k in range(1, 7):
            new, _ = loop.step(kernel, state, x, ctx, streams, k, jnp.float64)
            back = loop.inverse(kernel, new, x, ctx, streams, k, jnp.float64)
            pairs = [(a, b) for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(state)) if b.size]
            errors.append(jnp.max(jnp.stack([jnp.max(jnp.abs(a - b) / (1e-10 * jnp.abs(b) + 1e-12)) for a, b in pairs])))
            state = new
        return jnp.stack(errors), state

    errors, state = walk(x)
    assert float(errors.max()) <= 1.0, errors
    assert float(jnp.std(state.direction)) > 1e-3  # the particles were deflected (angle to the line of sight)


def test_one_implementation_of_each_physics_step():
    # grep: the CSDA advance (a range plus a grammage looked up in the table), the energy sampler
    # (log-uniform between k_min and k_max) and the sky weight (the flux model called on an exit
    # energy) each appear once, in transport/muon.py
    patterns = {"table look-up at a range": r"columns_at_range\(", "energy sampler": r"\*\s*jnp\.exp\(u\s*\*",
                "sky weight": r"sky_flux\(jnp\.where"}
    found = {name: [] for name in patterns}
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                text = open(path, encoding="utf-8").read()
                for what, pattern in patterns.items():
                    found[what] += [os.path.relpath(path, PACKAGE)] * len(re.findall(pattern, text))
    for what, where in found.items():
        uses = [w for w in where if w != os.path.join("physics", "materials.py")]  # the definition
        assert uses == [os.path.join("transport", "muon.py")], (what, where)


@dataclass(frozen=True)
class ScaledSky(flux.SkyFlux):
    """A user's sky: GCCLY times a constant."""

    factor: float

    def __call__(self, kinetic_energy, cos_zenith):
        return self.factor * flux.gccly(kinetic_energy, cos_zenith)


def _rock_like(name, density, stopping_scale):
    """A custom material built from tables (standard rock's, stopping power scaled)."""
    rock = materials.get("standard_rock")
    k = np.exp(rock._log_k)
    return materials.Material(name, density, k, np.exp(rock._log_s) * stopping_scale,
                              np.exp(rock._log_r) / stopping_scale, np.exp(rock._log_t))


def test_custom_material_and_user_sky_flux_in_expected_counts():
    grid = VoxelGrid((-50.0, 0.0), (50.0, 60.0), (3, 3))
    det = Detector((0.0, 0.0), np.linspace(-30, 30, 4))
    rho = jnp.full(grid.shape, 2000.0)
    base = np.asarray(ppl_bmc.expected_counts(Scene(grid), rho, det, method=Quadrature()))
    # a user sky flux: the counts scale with it exactly (the quadrature is linear in the flux)
    scaled = np.asarray(ppl_bmc.expected_counts(Scene(grid, sky=ScaledSky(2.5)), rho, det, method=Quadrature()))
    np.testing.assert_allclose(scaled / base, 2.5, rtol=1e-5)  # float32 rounding of the flux table
    bmc = [np.asarray(ppl_bmc.expected_counts(Scene(grid, sky=s), rho, det, method=BMC(jax.random.key(0), 256)))
           for s in (flux.gccly, ScaledSky(2.5))]
    np.testing.assert_allclose(bmc[1] / bmc[0], 2.5, rtol=1e-5)  # same key: the same particles
    # a custom material: more stopping per kg/m² lets fewer muons through, in both methods
    heavy = _rock_like("heavy_rock", 2650.0, 1.3)
    for method in (Quadrature(), BMC(jax.random.key(0), 256)):
        counts = np.asarray(ppl_bmc.expected_counts(Scene(grid, material=heavy), rho, det, method=method))
        ref = np.asarray(ppl_bmc.expected_counts(Scene(grid), rho, det, method=method))
        assert np.all(counts < ref) and np.all(counts > 0)
    # and in the slab
    assert float(muography.transmitted_flux(100.0, 20.0, material=heavy, sky=ScaledSky(1.0))) < float(
        muography.transmitted_flux(100.0, 20.0))


def test_materials_and_skies_are_values():
    rock = materials.get("standard_rock")
    again = _rock_like("standard_rock", rock.density, 1.0)
    assert again == rock and hash(again) == hash(rock)  # same tables: the same value (jit reuses the compile)
    assert _rock_like("standard_rock", rock.density, 1.1) != rock
    assert ScaledSky(2.0) == ScaledSky(2.0) and flux.gccly == flux.GCCLY() and flux.gccly != flux.gaisser
    table = lambda v: flux.TabulatedFlux([1.0, 10.0], [0.0, 1.0], np.full((2, 2), v))
    assert table(1.0) == table(1.0) and hash(table(1.0)) == hash(table(1.0)) and table(1.0) != table(2.0)
    assert Scene(VoxelGrid((0.0, 0.0), (1.0, 1.0), (1, 1)), material="water").material == materials.get("water")
    grid = VoxelGrid((0.0, 0.0), (1.0, 1.0), (1, 1))
    assert Scene(grid) == Scene(grid, sky="gccly") and hash(Scene(grid)) == hash(Scene(grid))  # shares compiled code
    assert Scene(grid) != Scene(grid, sky="gaisser") and Scene(grid) != Scene(VoxelGrid((0.0, 0.0), (1.0, 1.0), (1, 1)))
    with pytest.raises(ValueError, match="sky must be a ppl_bmc.flux.SkyFlux or one of"):
        Scene(VoxelGrid((0.0, 0.0), (1.0, 1.0), (1, 1)), sky=lambda k, c: k)
    with pytest.raises(ValueError, match="material must be a ppl_bmc.materials.Material or one of"):
        Scene(VoxelGrid((0.0, 0.0), (1.0, 1.0), (1, 1)), material="cheese")


def test_incomplete_subclasses_fail_at_construction():
    class NoCall(flux.SkyFlux):
        pass

    with pytest.raises(TypeError):
        NoCall()

    class NoExit(Path):
        def start(self, ctx, u): ...
        def segment(self, position, direction, params): ...
        def move(self, position, direction, sign=1.0): ...

    with pytest.raises(TypeError):
        NoExit()
    class NoMeanWeight(ppl_bmc.Adjoint):
        pass

    with pytest.raises(TypeError):
        NoMeanWeight()

    class NoCheck(ppl_bmc.geometry.Field):
        def value(self, position, params): ...

    with pytest.raises(TypeError):
        NoCheck()
    with pytest.raises(TypeError, match="must define step"):
        class NoStep(Kernel):
            def init(self, params, ctx, u): ...
    class Straight(NoExit):  # a complete path without turn/scattering_grammage
        def exit(self, position, direction, ctx): ...
        def line(self, position, direction, params, ctx, grammages=None): ...

    with pytest.raises(ValueError, match="not available on a Straight"):
        MuonKernel(Straight(), materials.get("water"), flux.gccly, 1e3, scattering=True)


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="quadrature", key=jax.random.key(0)), r"key applies to method='bmc' only"),
    (dict(method="quadrature", adjoint=ReplayAdjoint()), r"adjoint applies to method='bmc' only"),
    (dict(method="quadrature", n_particles=10), r"n_particles applies to method='bmc' only"),
    (dict(method="quadrature", n_steps=3), r"n_steps applies to method='bmc' only"),
    (dict(method="bmc", key=jax.random.key(0), n_directions=4), r"n_directions applies to method='quadrature'"),
    (dict(method=Quadrature(), n_directions=4), r"n_directions was given both"),
    (dict(method=BMC(jax.random.key(0)), key=jax.random.key(1)), r"key was given both"),
    (dict(method="bmc"), r"key must be a JAX PRNG key"),
    (dict(method="mc"), r"method must be 'bmc', 'quadrature'"),
    (dict(method="quadrature", n_directions=0), r"n_directions must be an integer >= 1"),
])
def test_options_that_do_not_apply_are_errors(kwargs, match):
    grid = VoxelGrid((-10.0, 0.0), (10.0, 10.0), (1, 1))
    with pytest.raises(ValueError, match=match):
        ppl_bmc.expected_counts(Scene(grid), jnp.full((1, 1), 2000.0), Detector((0.0, 0.0), [-5.0, 5.0]), **kwargs)


def test_method_values_and_shorthand_give_the_same_counts():
    grid = VoxelGrid((-20.0, 0.0), (20.0, 20.0), (2, 2))
    args = (Scene(grid), jnp.full((2, 2), 2000.0), Detector((0.0, 0.0), np.linspace(-30, 30, 3)))
    a = ppl_bmc.expected_counts(*args, method="bmc", key=jax.random.key(3), n_particles=64)
    b = ppl_bmc.expected_counts(*args, method=BMC(jax.random.key(3), 64))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    q = ppl_bmc.expected_counts(*args, method="quadrature", n_directions=4)
    np.testing.assert_array_equal(np.asarray(q), np.asarray(ppl_bmc.expected_counts(*args, method=Quadrature(4))))
    with pytest.raises(ValueError, match="applies to expected_counts only"):
        muography.transmitted_flux(10.0, 0.0, method=Quadrature(4))


def slab_kernel(material, k_max, n_steps, **kw):
    """The kernel ``transmitted_flux(method="bmc")`` runs, and its per-reading context."""
    return MuonKernel(LineOfSight(n_steps), material, flux.gccly, k_max, **kw)


def slab_ctx(zenith_rad, k_min):
    return {"zenith": jnp.full(1, zenith_rad), "k_min": jnp.full(1, k_min)}


def test_physical_invariants_of_the_slab_walk(x64):
    rock = materials.get("standard_rock")
    kernel = slab_kernel(rock, 1e6, 8, decay=False)  # pure Jacobians
    streams = loop.Streams(jax.random.key(0), 1, 2000)
    opacity, ctx = jnp.asarray(500.0), slab_ctx(1.0, 1e-3)
    state, log_w0 = loop.init(kernel, opacity, ctx, streams, jnp.float64)
    k0, energies, steps = state.energy.kinetic_energy, [state.energy.kinetic_energy], []
    for k in range(1, 9):
        state, inc = loop.step(kernel, state, opacity, ctx, streams, k, jnp.float64)
        energies.append(state.energy.kinetic_energy)
        steps.append(inc)
    energies = np.stack(energies)
    assert np.all(np.diff(energies, axis=0) > 0)  # energy never decreases backward
    total = np.sum(np.stack(steps), axis=0)
    telescoped = np.log(np.asarray(rock.stopping_power(energies[-1]))) - np.log(np.asarray(rock.stopping_power(k0)))
    np.testing.assert_allclose(total, telescoped, rtol=1e-9, atol=1e-12)  # product of S ratios = S(K_exit)/S(K_0)
    _, log_w = loop.run(kernel, opacity, ctx, streams, 8, jnp.float64)
    assert np.all(np.exp(np.asarray(log_w)) >= 0)


@pytest.mark.parametrize("k0, opacity", [(3.0, 3.0), (10.0, 10.0)])
def test_scattering_angle_spread_matches_highland(k0, opacity):
    # Highland (PDG "Passage of particles through matter"): θ0 = 13.6 MeV/(βcp)·√(x/X0)·(1 + 0.038 ln(x/X0)),
    # accurate to ~11 %; X0 of standard rock 26.54 g/cm² (PDG). Tolerance 20 %: Highland's accuracy
    # plus the energy change across the slab (p taken at the mean of the two ends).
    rock = materials.get("standard_rock")
    kernel = slab_kernel(rock, k0 * (1 + 1e-6), 32, decay=True, scattering=True)
    state, _ = loop.run(kernel, jnp.asarray(opacity), slab_ctx(0.0, k0), loop.Streams(jax.random.key(0), 1, 20_000), 32,
                        jnp.float32)
    angle, k_sky = np.asarray(state.direction), float(np.mean(state.energy.kinetic_energy))  # angle (rad)
    k_mean = 0.5 * (k0 + k_sky)
    p = math.sqrt(k_mean * (k_mean + 2 * MUON_MASS))
    x = opacity * 100 / 26.54
    highland = 0.0136 / p * math.sqrt(x) * (1 + 0.038 * math.log(x))
    assert abs(angle.std() / highland - 1) < 0.2, (angle.std(), highland)


@pytest.mark.parametrize("kwargs, match", [({"n_steps": 0}, "n_steps"), ({"n_steps": 2.5}, "n_steps"),
                                            ({"step_m": 0.0}, "step_m"), ({"step_m": float("nan")}, "step_m"),
                                            ({"field": "rock"}, "field")])
def test_field_path_rejects_bad_arguments(kwargs, match):
    args = {"field": VoxelGrid((0.0, 0.0), (1.0, 1.0), (1, 1)), "step_m": 0.1} | kwargs
    with pytest.raises(ValueError, match=match):
        FieldPath(**args)


def test_a_traced_field_path_refuses_another_number_of_steps():
    """A FieldPath traced for n_steps reads its walk's opacities from that trace: walking more steps
    would read past it (silently wrong), fewer would drop the rest of the line, so it is refused."""
    (kernel, params, ctx), _ = _layer_and_slab(20.0, 50.0, 4)
    traced = MuonKernel(FieldPath(kernel.path.field, kernel.path.step_m, n_steps=4), kernel.material, kernel.sky_flux,
                        kernel.k_max)
    run = lambda n: mean_weight(traced, params, ctx, jax.random.key(0), n_particles=8, n_steps=n, adjoint=ReplayAdjoint())
    assert np.isfinite(np.asarray(run(4))).all()
    for n in (3, 5):
        with pytest.raises(ValueError, match=f"n_steps={n} does not match the FieldPath's n_steps=4"):
            run(n)
