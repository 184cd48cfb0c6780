"""Physics: constants, materials and their energy-loss tables, sky flux models.

Modules: :mod:`~ppl_bmc.physics.constants` (muon mass, cτ, m.w.e.),
:mod:`~ppl_bmc.physics.materials` (``Material``, the tables; ``ppl_bmc.materials``),
:mod:`~ppl_bmc.physics.flux` (``SkyFlux`` and the models; ``ppl_bmc.flux``).
"""

from ppl_bmc.physics import constants, flux, materials

__all__ = ["constants", "flux", "materials"]
