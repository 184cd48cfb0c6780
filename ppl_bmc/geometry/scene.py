"""A muography scene: a density field, the material that sets the energy loss, the sky."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ppl_bmc.geometry.fields import Field
from ppl_bmc.physics import flux as sky
from ppl_bmc.physics import materials

__all__ = ["Scene"]


@dataclass(frozen=True, eq=False)
class Scene:
    """Where muons travel: ``field`` inside its box, open sky beyond (air neglected).

    Parameters
    ----------
    field : Field
        Density (kg/m³) in 2-D ``(x, z)`` or 3-D ``(x, y, z)`` coordinates (m).
    material : str
        Energy-loss material (see :func:`ppl_bmc.materials.names`): the CSDA tables per unit
        grammage are this material's, scaled nowhere — the field's density sets the grammage.
        (Mixtures of two compositions change the density; their stopping power per kg/m² is
        taken as this material's.)
    model : {"gccly", "gaisser"}
        Sky flux at the exit point.
    step_m : float or None
        BMC step length (m); default: the box diagonal / 16.
    decay : bool
        Include the muon decay weight.
    k_max : float
        Highest detector-side kinetic energy sampled (GeV), ≤ 1e6.
    """

    field: Field
    material: str = "standard_rock"
    model: str = "gccly"
    step_m: float | None = None
    decay: bool = True
    k_max: float = 1e6

    def __post_init__(self):
        if not isinstance(self.field, Field):
            raise ValueError(f"field must be a ppl_bmc.geometry Field, got {type(self.field).__name__}")
        materials.get(self.material)  # ValueError listing the known materials
        if self.model not in sky.MODELS:
            raise ValueError(f"model must be one of {sorted(sky.MODELS)}, got {self.model!r}")
        if self.step_m is None:
            object.__setattr__(self, "step_m", self.diagonal / 16)
        if not (np.isfinite(self.step_m) and self.step_m > 0):
            raise ValueError(f"step_m must be > 0 m, got {self.step_m}")
        object.__setattr__(self, "step_m", float(self.step_m))
        if not 1.0 < self.k_max <= 1e6:
            raise ValueError(f"k_max must be in (1, 1e6] GeV, got {self.k_max}")

    @property
    def ndim(self) -> int:
        return self.field.ndim

    @property
    def lower(self):
        return self.field.lower

    @property
    def upper(self):
        return self.field.upper

    @property
    def diagonal(self) -> float:
        """Length of the box diagonal (m)."""
        return math.dist(self.field.lower, self.field.upper)

    def get_material(self):
        return materials.get(self.material)

    def get_sky_flux(self):
        return sky.MODELS[self.model]
