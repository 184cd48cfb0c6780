"""ppl_bmc: differentiable backward Monte-Carlo transport as a likelihood for NumPyro.

Units are SI as in PUMAS (GeV, m, kg/m³, kg/m², m⁻² s⁻¹ sr⁻¹) except in the paper's toy,
whose lengths and weights are dimensionless.

The public names below are imported on first use (PEP 562), so that ``import ppl_bmc`` and the
``ppl-bmc`` command line start without loading JAX; ``from ppl_bmc import Scene`` and
``ppl_bmc.expected_counts`` work as usual.
"""

from __future__ import annotations

import importlib

from ppl_bmc import _xla

__version__ = "0.1.0"

_xla.apply()  # before JAX starts: XLA options for right values and fast step loops on the CPU (ppl_bmc/_xla.py)

#: public name -> (module, attribute or None for the module itself)
_LAZY = {
    "Adjoint": ("ppl_bmc.adjoint", "Adjoint"),
    "AutodiffAdjoint": ("ppl_bmc.adjoint", "AutodiffAdjoint"),
    "ForwardSensitivity": ("ppl_bmc.adjoint", "ForwardSensitivity"),
    "ReplayAdjoint": ("ppl_bmc.adjoint", "ReplayAdjoint"),
    "mean_weight": ("ppl_bmc.adjoint", "mean_weight"),
    "BMC": ("ppl_bmc.estimators", "BMC"),
    "Quadrature": ("ppl_bmc.estimators", "Quadrature"),
    "LineOfSightEnergy": ("ppl_bmc.transport.energy", "LineOfSightEnergy"),
    "LogUniformEnergy": ("ppl_bmc.transport.energy", "LogUniformEnergy"),
    "ParticleBudget": ("ppl_bmc.budget", "ParticleBudget"),
    "particle_budget": ("ppl_bmc.budget", "particle_budget"),
    "Detector": ("ppl_bmc.detectors", "Detector"),
    "Telescope": ("ppl_bmc.telescope", "Telescope"),
    "GravitySurvey": ("ppl_bmc.gravity", "GravitySurvey"),
    "Scene": ("ppl_bmc.geometry", "Scene"),
    "expected_counts": ("ppl_bmc.likelihood", "expected_counts"),
    "detectors": ("ppl_bmc.detectors", None),
    "constants": ("ppl_bmc.physics.constants", None),
    "flux": ("ppl_bmc.physics.flux", None),
    "geometry": ("ppl_bmc.geometry", None),
    "gravity": ("ppl_bmc.gravity", None),
    "materials": ("ppl_bmc.physics.materials", None),
    "muography": ("ppl_bmc.muography", None),
    "nppl": ("ppl_bmc.nppl", None),
    "telescope": ("ppl_bmc.telescope", None),
    "toy": ("ppl_bmc.toy", None),
}

__all__ = sorted(_LAZY) + ["__version__"]


#: Subpackages and modules reachable as attributes (``ppl_bmc.infer``), imported on first use.
_SUBMODULES = ("adjoint", "budget", "cli", "detectors", "estimators", "geometry", "gravity", "infer", "likelihood",
               "muography", "nppl", "physics", "quadrature", "telescope", "toy", "transport")


def __getattr__(name):
    if name not in _LAZY and name in _SUBMODULES:
        return importlib.import_module(f"ppl_bmc.{name}")  # the import binds it on the package
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'ppl_bmc' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
