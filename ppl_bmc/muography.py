"""Muography helpers: the flux transmitted through matter.

``transmitted_flux`` is the integrated muon flux (m⁻² s⁻¹ sr⁻¹) above ``k_min`` at a
detector behind a uniform slab of a given opacity along a given zenith angle, with the open
sky (GCCLY by default) at the slab's far side and no air.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp

from ppl_bmc import _checks
from ppl_bmc.adjoint import Adjoint, ReplayAdjoint, check_run_args, mean_weight
from ppl_bmc.physics import flux as sky
from ppl_bmc.physics import materials
from ppl_bmc.transport.csda import MWE, SlabKernel, straight_line_flux

def _quadrature(material, sky_flux, opacity_mwe, zenith, k_min, k_max, decay):
    grammage = MWE * opacity_mwe
    return straight_line_flux(material, sky_flux, grammage, grammage / material.density, jnp.cos(zenith),
                              k_min, k_max, decay=decay)


@partial(jax.jit, static_argnames=("material", "model", "k_min", "k_max", "method", "n_particles", "n_steps",
                                   "adjoint", "decay", "scattering"))
def _transmitted(opacity_mwe, zenith, key, material, model, k_min, k_max, method, n_particles, n_steps, adjoint,
                 decay, scattering):
    mat, sky_flux = materials.get(material), sky.MODELS[model]
    if method == "quadrature":
        return _quadrature(mat, sky_flux, opacity_mwe, zenith, k_min, k_max, decay)
    kernel = SlabKernel(mat, sky_flux, k_min, k_max, n_steps, decay, scattering)
    return mean_weight(kernel, opacity_mwe, zenith[None], key, n_particles=n_particles, n_steps=n_steps, adjoint=adjoint)[0]


def transmitted_flux(
    opacity_mwe,
    zenith_deg,
    *,
    material: str = "standard_rock",
    k_min: float = 1e-3,
    k_max: float = 1e6,
    model: str = "gccly",
    method: str = "quadrature",
    key=None,
    n_particles: int = 100_000,
    n_steps: int = 4,
    adjoint: Adjoint = ReplayAdjoint(),
    decay: bool = True,
    scattering: bool = False,
):
    """Integrated flux (m⁻² s⁻¹ sr⁻¹) of muons with K in [k_min, k_max] GeV behind a slab.

    Parameters
    ----------
    opacity_mwe : float (scalar, ≥ 0)
        Opacity ∫ρ dl along the line of sight, in metres water equivalent (1 m.w.e. = 1000 kg/m²).
        Differentiable (``jax.grad``) for both methods.
    zenith_deg : float in [0, 90)
        Zenith angle of the line of sight (degrees).
    material : str
        A name from :func:`ppl_bmc.materials.names`.
    k_min, k_max : float
        Detector-side kinetic-energy range (GeV), 1e-3 ≤ k_min < k_max ≤ 1e6.
    model : {"gccly", "gaisser"}
        Open-sky flux at the slab's far side.
    method : {"quadrature", "bmc"}
        Deterministic CSDA integral, or backward Monte-Carlo (straight line, no scattering,
        ``n_steps`` equal steps; needs ``key``).
    decay : bool
        Include the muon decay weight exp(−c·Δτ/cτ) (significant in air, negligible in rock).
    scattering : bool
        BMC only: multiple scattering in the plane of view (each step deflects the direction;
        the path grammage grows as 1/cos of the angle; the sky flux is taken at the exit zenith).

    Returns
    -------
    Scalar array: the integrated flux in m⁻² s⁻¹ sr⁻¹.
    """
    opacity = _checks.float_array(opacity_mwe, "opacity_mwe", shape=())
    if _checks.is_concrete(opacity) and float(opacity) < 0:
        raise ValueError(f"opacity_mwe must be >= 0 m.w.e., got {float(opacity)}")
    zenith = float(zenith_deg)
    if not 0.0 <= zenith < 90.0:
        raise ValueError(f"zenith_deg must be in [0, 90) degrees, got {zenith_deg}")
    mat = materials.get(material)  # ValueError listing the known materials
    if not (mat.k_min * (1 - 1e-9) <= k_min < k_max <= 1e6):
        raise ValueError(f"need {mat.k_min:g} <= k_min < k_max <= 1e6 GeV, got k_min={k_min}, k_max={k_max}")
    if model not in sky.MODELS:
        raise ValueError(f"model must be one of {sorted(sky.MODELS)}, got {model!r}")
    if method not in ("quadrature", "bmc"):
        raise ValueError(f"method must be 'quadrature' or 'bmc', got {method!r}")
    if scattering and method != "bmc":
        raise ValueError("scattering=True needs method='bmc' (the quadrature follows straight lines)")
    if method == "bmc":
        key, n_particles, n_steps = check_run_args(key, n_particles, n_steps, adjoint)
    else:
        key = jax.random.key(0)  # unused by the quadrature
    zenith_rad = jnp.asarray(math.radians(zenith), dtype=opacity.dtype)
    return _transmitted(opacity, zenith_rad, key, material, model, float(k_min), float(k_max), method,
                        int(n_particles), int(n_steps), adjoint, bool(decay), bool(scattering))


__all__ = ["transmitted_flux", "MWE"]
