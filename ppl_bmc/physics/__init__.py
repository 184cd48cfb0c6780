"""Physics: constants, materials and their energy-loss tables, sky flux models.

Modules: :mod:`~ppl_bmc.physics.constants` (muon mass, cτ, m.w.e.),
:mod:`~ppl_bmc.physics.materials` (``Material``, the tables; ``ppl_bmc.materials``),
:mod:`~ppl_bmc.physics.flux` (``SkyFlux`` and the models; ``ppl_bmc.flux``),
:mod:`~ppl_bmc.physics.mixed` (the mixed mode's hard-event tables, ``Mixed(cut=...)``),
:mod:`~ppl_bmc.physics.electrons` (close collisions with atomic electrons, numpy only).

The modules are imported on first use, so that the table generators under ``tools/`` import
:mod:`~ppl_bmc.physics.constants` and :mod:`~ppl_bmc.physics.electrons` without JAX.
"""

import importlib

__all__ = ["constants", "electrons", "flux", "materials", "mixed"]


def __getattr__(name):
    if name in __all__:
        return importlib.import_module(f"ppl_bmc.physics.{name}")
    raise AttributeError(f"module 'ppl_bmc.physics' has no attribute {name!r}")
