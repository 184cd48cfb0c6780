"""Reference muon fluxes through layered geometries, computed with ``mulder`` (PUMAS physics).

Writes ``tests/data/mulder_layers.json``: integrated fluxes (m⁻² s⁻¹ sr⁻¹) of muons with kinetic
energy in [K_MIN, K_MAX] = [1e-3, 1e6] GeV at a detector at the bottom of a stack of horizontal
layers of different materials (CSDA, section "layers"), through a single slab of standard rock
(CSDA and mixed stochastic losses, section "slab"), through single slabs of the other materials
whose mixed/CSDA ratio the quadrature tabulates (section "slab_materials"), and through some of the
layered stacks in mixed mode (section "layers_mixed", for the mixed BMC through a Composition).  How to run (about 12
minutes on one core, plus about a minute the first time, while mulder compiles its physics tables
into ~/.cache/mulder):

    python -m venv /tmp/mulderenv && /tmp/mulderenv/bin/pip install mulder==0.3.7
    /tmp/mulderenv/bin/python tools/generate_composition_reference.py [output.json]

The materials are defined in mulder exactly as in ``tools/generate_material_tables.py`` (its
``MATERIALS`` dict is imported): same mass fractions, densities and mean excitation energies, same
physics (mulder's default ``Physics()``: SSR19 bremsstrahlung and pair production, DRSS01
photonuclear, 5 % cutoff).  As a cross-check, the stopping power of every material used is compared
with ``ppl_bmc/data/materials.npz``.

Setup (this is what reproduces ``ppl_bmc.muography.transmitted_flux``):

* ``mulder.Fluxmeter(geometry=mulder.EarthGeometry(*layers))``, one ``mulder.Layer(z_top,
  material=..., density=...)`` per layer, bottom first, the top layer's top at altitude 0 m.  The
  detector sits at the bottom of the stack (altitude −Σ thickness, latitude = longitude = azimuth
  = 0), looking up at elevation 90° − zenith.
* Reference (sky) flux: mulder's default, the GCCLY15 parametrisation, defined at altitude 0 m.
  Since the top of the geometry coincides with that altitude, the reference flux is taken directly
  at the exit of the top layer: no air is crossed (changing the atmosphere model changes the
  results by < 1e-8).  This is the package's "sky at the top, no atmosphere" convention.
* ``Fluxmeter.flux`` is the *differential* flux (GeV⁻¹ m⁻² s⁻¹ sr⁻¹) at the detector energy of
  the state, both charges summed, decay included (mulder applies exp(−τ/cτ)).  The integrated flux
  is ∫ φ(K) K d ln K over [K_MIN, K_MAX] (the package's k_min/k_max), by the trapezoid rule on
  N_GRID log-spaced energies (converged to < 1e-6 relative).
* mulder's Earth is curved: a layer at constant altitude is a spherical shell, so an inclined line
  of sight is slightly shorter than thickness / cos(zenith) (by ~ h tan²θ / 2R, 1.7e-4 for 500 m at
  60°).  To emulate the package's flat layers, the layer altitudes are adjusted (per zenith) until
  ``EarthGeometry.scan`` gives line-of-sight thicknesses equal to thickness / cos(zenith) to 1e-8.
  What is left of the curvature is the tilt of the local vertical between the detector and the exit
  point (≤ 1.8e-4 rad here), a ≲ 0.03 % effect at 60°.

Single-slab convention (as ``muography.transmitted_flux(opacity_mwe, zenith_deg)``): the opacity is
the grammage along the line of sight, so the rock's vertical thickness is opacity·1000/2650·cos θ.
Self-check: the four CSDA values quoted by the package are reproduced to < 0.1 % (the script fails
if any is off by more than 1 %).

CSDA (``meter.mode = "continuous"``) is deterministic, so "flux_sd" is null.  Mixed mode
(``meter.mode = "mixed"``: stochastic hard losses above the 5 % cutoff, no scattering) is
Monte-Carlo: MIXED_EVENTS backward muons per point, one per detector energy, energies drawn (numpy,
fixed seed) from 0.8 × the CSDA detector spectrum + 0.2 × log-uniform over [K_MIN, K_MAX]
(defensive importance sampling); each event is weighted by mulder's single-event flux over the
sampling density; the mulder PRNG (charge, losses) is seeded too.  "flux_sd" is the standard error
of the mean (relative ≲ 0.08 % with 1e6 events).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True    # leave no __pycache__ in tools/
from generate_material_tables import MATERIALS  # noqa: E402  (the package's material definitions)

K_MIN, K_MAX = 1e-3, 1e6          # GeV, detector-side kinetic-energy range
N_GRID = 2401                     # log-spaced energies for the CSDA integral (~267 per decade)
MIXED_EVENTS = 1_000_000          # Monte-Carlo events per mixed-mode point
MIXED_DEFENSIVE = 0.2             # log-uniform fraction of the importance-sampling density
SEED = 20250611                   # base seed (numpy and mulder PRNGs)
ZENITHS = (0.0, 60.0)
SLAB_OPACITIES = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)   # m.w.e. along the line of sight
ROCK_DENSITY = 2650.0
#: Other materials whose mixed/CSDA ratio the quadrature tabulates (section "slab_materials").
OTHER_SLABS = ("limestone", "water")
OTHER_OPACITIES = (100.0, 1000.0, 3000.0)

#: The package's own CSDA numbers (muography.transmitted_flux, quadrature): (m.w.e., zenith, flux).
PACKAGE_CHECKS = ((1000.0, 0.0, 1.14779e-2), (1000.0, 60.0, 1.76891e-2),
                  (3000.0, 0.0, 2.08942e-4), (3000.0, 60.0, 3.77203e-4))

#: name → layers bottom → top: (material, density kg/m³, vertical thickness m).
STACKS = {
    "rock": [("standard_rock", 2650.0, 300.0)],
    "water_over_rock": [("standard_rock", 2650.0, 200.0), ("water", 1000.0, 300.0)],
    "rock_over_water": [("water", 1000.0, 300.0), ("standard_rock", 2650.0, 200.0)],
    "water_void": [("standard_rock", 2650.0, 100.0), ("water", 1000.0, 30.0), ("standard_rock", 2650.0, 100.0)],
    "air_void": [("standard_rock", 2650.0, 100.0), ("dry_air", 1.205, 30.0), ("standard_rock", 2650.0, 100.0)],
    "ice_over_rock": [("standard_rock", 2650.0, 100.0), ("ice", 918.0, 200.0)],
    "water": [("water", 1000.0, 600.0)],
}
#: Stacks also computed in mixed mode (section "layers_mixed").
MIXED_STACKS = ("water_over_rock", "rock_over_water", "water_void", "air_void")


# ---------------------------------------------------------------------------------------------
# Materials
# ---------------------------------------------------------------------------------------------

_DEFINED: dict[str, str] = {}


def mulder_material(name):
    """The mulder material name for a ``MATERIALS`` entry (defined on first use)."""
    if name in _DEFINED:
        return _DEFINED[name]
    import mulder.materials as mm

    first, composition, mean_excitation_ev = MATERIALS[name]
    if composition is None:          # one of mulder's built-in materials (standard rock: "Rock")
        label = first
    else:                            # same label and arguments as generate_material_tables.py
        label = "ppl_bmc_" + name
        kwargs = {} if mean_excitation_ev is None else {"I": mean_excitation_ev * 1e-9}  # eV → GeV
        mm.Material.define(label, composition=composition, density=first, **kwargs)
    _DEFINED[name] = label
    return label


def check_materials(names):
    """Stopping power of each material vs. the package's table (same definitions → same numbers)."""
    import mulder

    table = os.path.join(HERE, "..", "ppl_bmc", "data", "materials.npz")
    if not os.path.exists(table):
        print("  (no ppl_bmc/data/materials.npz: material cross-check skipped)")
        return None
    data = np.load(table)
    physics = mulder.Physics()
    energies = np.array([1e-2, 1.0, 1e2, 1e4])
    worst = 0.0
    for name in names:
        compiled = physics.compile(mulder_material(name))
        density = float(compiled.definition.density)
        mine = np.asarray(compiled.stopping_power(energies)) / density
        theirs = np.exp(np.interp(np.log(energies), np.log(data["kinetic_energy"]),
                                  np.log(data[f"{name}/stopping_power"])))
        diff = float(np.max(np.abs(mine / theirs - 1.0)))
        worst = max(worst, diff)
        print(f"  {name:14s} S/ρ vs materials.npz: max |rel. diff| = {diff:.1e}")
    if worst > 1e-6:
        raise SystemExit(f"material definitions differ from ppl_bmc/data/materials.npz (max {worst:.2e})")
    return worst


# ---------------------------------------------------------------------------------------------
# Geometry and fluxes
# ---------------------------------------------------------------------------------------------

def make_geometry(stack, zenith_deg, tol=1e-8):
    """EarthGeometry of ``stack`` whose line-of-sight thicknesses at ``zenith_deg`` are flat-earth ones.

    Returns (geometry, detector altitude, line-of-sight thicknesses in m, adjusted vertical thicknesses).
    """
    import mulder

    cos = math.cos(math.radians(zenith_deg))
    target = np.array([t for _, _, t in stack]) / cos
    vertical = np.array([t for _, _, t in stack], dtype=float)
    elevation = 90.0 - zenith_deg
    for _ in range(30):
        tops = -np.concatenate([np.cumsum(vertical[::-1])[::-1][1:], [0.0]])   # top altitude per layer
        z_det = -float(vertical.sum())
        layers = [mulder.Layer(float(z), material=mulder_material(m), density=float(rho))
                  for z, (m, rho, _) in zip(tops, stack)]
        geometry = mulder.EarthGeometry(*layers)
        sight = np.asarray(geometry.scan(altitude=z_det, elevation=elevation), dtype=float).reshape(-1)
        ratio = sight / target
        if np.max(np.abs(ratio - 1.0)) < tol:
            return geometry, z_det, sight, vertical
        vertical = vertical / ratio
    raise RuntimeError(f"line-of-sight thicknesses did not converge: {sight} vs {target}")


def csda_spectrum(geometry, z_det, zenith_deg, energies):
    """Differential CSDA flux (GeV⁻¹ m⁻² s⁻¹ sr⁻¹) at the detector."""
    import mulder

    meter = mulder.Fluxmeter(geometry=geometry)
    meter.mode = "continuous"
    n = energies.size
    return np.asarray(meter.flux(altitude=np.full(n, z_det), elevation=np.full(n, 90.0 - zenith_deg),
                                 energy=energies), dtype=float)


def integrate(energies, spectrum):
    return float(np.trapezoid(spectrum * energies, np.log(energies)))


def csda_flux(geometry, z_det, zenith_deg):
    energies = np.geomspace(K_MIN, K_MAX, N_GRID)
    return integrate(energies, csda_spectrum(geometry, z_det, zenith_deg, energies))


def mixed_flux(geometry, z_det, zenith_deg, events, seed):
    """Mixed-mode integrated flux and its standard error (importance-sampled detector energies)."""
    import mulder

    grid = np.geomspace(K_MIN, K_MAX, N_GRID)
    x = np.log(grid)
    density = csda_spectrum(geometry, z_det, zenith_deg, grid) * grid        # ∝ dN/d ln K
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(x))])
    norm = cdf[-1]
    cdf /= norm
    log_range = math.log(K_MAX / K_MIN)

    rng = np.random.default_rng(seed)
    u, pick = rng.random(events), rng.random(events)
    xs = np.where(pick < MIXED_DEFENSIVE, x[0] + u * log_range, np.interp(u, cdf, x))
    pdf = (1.0 - MIXED_DEFENSIVE) * np.interp(xs, x, density) / norm + MIXED_DEFENSIVE / log_range
    energies = np.exp(xs)

    meter = mulder.Fluxmeter(geometry=geometry)
    meter.mode = "mixed"
    meter.random.seed = seed
    single = np.asarray(meter.flux(altitude=np.full(events, z_det), elevation=np.full(events, 90.0 - zenith_deg),
                                   energy=energies), dtype=float)   # one backward event per state
    weights = single * energies / pdf
    return float(weights.mean()), float(weights.std(ddof=1) / math.sqrt(events))


def slab_stack(opacity_mwe, zenith_deg, material="standard_rock", density=ROCK_DENSITY):
    """Single slab of ``opacity_mwe`` along the line of sight (standard rock unless told)."""
    path = opacity_mwe * 1000.0 / density
    return [(material, density, path * math.cos(math.radians(zenith_deg)))]


def slab_points(material, density, opacities, seed0):
    """CSDA and mixed fluxes through one slab of ``material`` at ``opacities`` × ZENITHS."""
    out = []
    for i, opacity in enumerate(opacities):
        for j, zenith in enumerate(ZENITHS):
            geometry, z_det, _, _ = make_geometry(slab_stack(opacity, zenith, material, density), zenith)
            csda = csda_flux(geometry, z_det, zenith)
            seed = seed0 + 100 * i + j
            t0 = time.time()
            mixed, sd = mixed_flux(geometry, z_det, zenith, MIXED_EVENTS, seed)
            print(f"  {material:14s} {opacity:6.0f} m.w.e. {zenith:4.0f}°  CSDA {csda:.5e}  mixed {mixed:.5e} ± "
                  f"{sd / mixed:.3%}  (mixed/CSDA = {mixed / csda:.4f}, {time.time() - t0:.0f} s)")
            out.append({"opacity_mwe": opacity, "zenith_deg": zenith, "mode": "csda", "flux": csda, "flux_sd": None})
            out.append({"opacity_mwe": opacity, "zenith_deg": zenith, "mode": "mixed", "flux": mixed, "flux_sd": sd,
                        "events": MIXED_EVENTS, "seed": seed})
    return out


# ---------------------------------------------------------------------------------------------

def main(out=None):
    import mulder

    t_start = time.time()
    out = out or os.path.join(HERE, "..", "tests", "data", "mulder_layers.json")
    physics = mulder.Physics()
    reference = mulder.Fluxmeter().reference
    print(f"mulder {mulder.config.VERSION}, physics {physics.bremsstrahlung}/{physics.pair_production}/"
          f"{physics.photonuclear}, cutoff {physics.cutoff}, reference {reference.model} at "
          f"{reference.altitude} m")

    used = sorted({m for stack in STACKS.values() for m, _, _ in stack} | set(OTHER_SLABS))
    print("materials:")
    material_check = check_materials(used)

    print("self-check vs ppl_bmc.muography.transmitted_flux (CSDA, standard rock):")
    checks, failed = [], False
    for opacity, zenith, expected in PACKAGE_CHECKS:
        geometry, z_det, _, _ = make_geometry(slab_stack(opacity, zenith), zenith)
        value = csda_flux(geometry, z_det, zenith)
        rel = value / expected - 1.0
        flag = "" if abs(rel) <= 5e-3 else ("  <-- off by > 0.5 %" if abs(rel) <= 1e-2 else "  <-- FAIL (> 1 %)")
        failed |= abs(rel) > 1e-2
        print(f"  {opacity:6.0f} m.w.e. {zenith:4.0f}°  mulder {value:.5e}  package {expected:.5e}  "
              f"rel. diff {rel:+.3%}{flag}")
        checks.append({"opacity_mwe": opacity, "zenith_deg": zenith, "mulder": value, "package": expected,
                       "rel_diff": rel})
    if failed:
        raise SystemExit("self-check failed: mulder setup does not reproduce the package's single-slab fluxes")

    print("layered stacks (CSDA):")
    layers_out = []
    for name, stack in STACKS.items():
        for zenith in ZENITHS:
            geometry, z_det, sight, vertical = make_geometry(stack, zenith)
            value = csda_flux(geometry, z_det, zenith)
            opacity = float(sum(rho * s for (_, rho, _), s in zip(stack, sight)) / 1000.0)
            print(f"  {name:16s} {zenith:4.0f}°  {value:.6e}  (opacity {opacity:8.2f} m.w.e.)")
            layers_out.append({
                "name": name,
                "layers": [{"material": m, "density": rho, "thickness_m": t} for m, rho, t in stack],
                "zenith_deg": zenith,
                "mode": "csda",
                "flux": value,
                "flux_sd": None,
                "opacity_mwe": opacity,
                "mulder_vertical_thickness_m": [float(v) for v in vertical],
            })

    print(f"layered stacks (mixed, {MIXED_EVENTS} events per point):")
    layers_mixed = []
    for i, name in enumerate(MIXED_STACKS):
        for j, zenith in enumerate(ZENITHS):
            geometry, z_det, _, _ = make_geometry(STACKS[name], zenith)
            seed = SEED + 50_000 + 100 * i + j
            t0 = time.time()
            value, sd = mixed_flux(geometry, z_det, zenith, MIXED_EVENTS, seed)
            print(f"  {name:16s} {zenith:4.0f}°  {value:.6e} ± {sd / value:.3%}  ({time.time() - t0:.0f} s)")
            layers_mixed.append({"name": name, "zenith_deg": zenith, "mode": "mixed", "flux": value, "flux_sd": sd,
                                 "events": MIXED_EVENTS, "seed": seed})

    print(f"single slab of standard rock: CSDA, then mixed ({MIXED_EVENTS} events per point):")
    slab_out = slab_points("standard_rock", ROCK_DENSITY, SLAB_OPACITIES, SEED)
    print(f"single slabs of {', '.join(OTHER_SLABS)} (nominal densities): CSDA, then mixed:")
    other_out = []
    for k, name in enumerate(OTHER_SLABS):
        density = float(MATERIALS[name][0]) if MATERIALS[name][1] is not None else None
        if density is None:
            raise SystemExit(f"{name}: a built-in mulder material, give its density here")
        other_out += [dict(point, material=name, density=density)
                      for point in slab_points(name, density, OTHER_OPACITIES, SEED + 10_000 * (k + 1))]

    result = {
        "generator": (f"mulder {mulder.config.VERSION} (PUMAS), physics {physics.bremsstrahlung}/"
                      f"{physics.pair_production}/{physics.photonuclear}, cutoff {physics.cutoff}; "
                      f"reference flux {reference.model} at altitude {reference.altitude} m (no air crossed); "
                      "decay included; EarthGeometry with layer altitudes adjusted so that line-of-sight "
                      "thicknesses equal thickness/cos(zenith) (flat-layer equivalent)"),
        "command": "python tools/generate_composition_reference.py",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "units": {"flux": "m^-2 s^-1 sr^-1 (integrated over kinetic energy in [k_min, k_max])",
                  "thickness_m": "vertical thickness (m)", "density": "kg/m^3",
                  "opacity_mwe": "grammage along the line of sight / 1000 kg/m^2"},
        "k_min_gev": K_MIN,
        "k_max_gev": K_MAX,
        "energy_grid": {"points": N_GRID, "spacing": "log", "rule": "trapezoid in ln K"},
        "mixed_sampling": {"events": MIXED_EVENTS, "density": f"{1 - MIXED_DEFENSIVE:g} x CSDA detector spectrum "
                           f"+ {MIXED_DEFENSIVE:g} x log-uniform", "base_seed": SEED},
        "materials": {name: {"mulder_name": mulder_material(name), "spec": list(MATERIALS[name])} for name in used},
        "material_check_max_rel_diff": material_check,
        "self_check": checks,
        "layers": layers_out,
        "slab": slab_out,
        "slab_materials": other_out,
        "layers_mixed": layers_mixed,
    }
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    with open(tmp, "w") as stream:
        json.dump(result, stream, indent=1)
        stream.write("\n")
    os.replace(tmp, out)
    print(f"wrote {os.path.abspath(out)} in {time.time() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
