"""A muography scene: a density field, the material that sets the energy loss, the sky."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ppl_bmc.geometry.composition import Composition
from ppl_bmc.geometry.field import Field
from ppl_bmc.physics import flux as sky_flux
from ppl_bmc.physics import materials
from ppl_bmc.physics import mixed as mixed_tables

__all__ = ["Scene"]


@dataclass(frozen=True)
class Scene:
    """Where muons travel: ``field`` inside its box, open sky beyond (air neglected).

    A value: scenes with the same field object, material, sky and settings are equal (and share
    compiled code).

    Parameters
    ----------
    field : Field
        Density (kg/m³) in 2-D ``(x, z)`` or 3-D ``(x, y, z)`` coordinates (m).
    material : Material or str or None
        Energy-loss material: a :class:`ppl_bmc.materials.Material` (a tabulated one, or
        :func:`ppl_bmc.materials.custom`) or a name from :func:`ppl_bmc.materials.names`; default
        standard rock.  The CSDA tables per unit grammage are this material's, scaled nowhere —
        the field's density sets the grammage.  A
        :class:`~ppl_bmc.geometry.composition.Composition` field carries its own materials (each
        loses energy by its own tables): leave ``material`` unset, and the scene's
        material is their :class:`~ppl_bmc.materials.Blend`.  (A :class:`Mixture` changes the
        density only; its stopping power per kg/m² is this material's.)
    sky : SkyFlux or str
        Open-sky flux at the exit point: a :class:`ppl_bmc.flux.SkyFlux` (``flux.gccly``,
        ``flux.gaisser``, a ``TabulatedFlux``, your own subclass) or a name ``"gccly"``, ``"gaisser"``.
    step_m : float or None
        BMC step length (m); default: the box diagonal / 16.
    decay : bool
        Include the muon decay weight.
    scattering : bool
        BMC only: multiple scattering — each step of ``step_m`` deflects the muon by D − 1
        projected angles of variance ρ·step_m/λ(K), ρ the density at the step's end and λ the
        material's transport path at the energy reached (in the plane in 2-D, both transverse
        directions in 3-D).  The quadrature follows straight lines and refuses such a scene.
        Choose ``step_m`` short against the density's structure (voxels, the surface).
    k_max : float
        Highest detector-side kinetic energy sampled (GeV), ≤ 1e6.
    physics : "csda", "mixed" or ppl_bmc.physics.mixed.Mixed(cut=...)
        Energy loss: continuous (CSDA), or PUMAS's mixed mode — soft losses plus discrete hard
        events (:mod:`ppl_bmc.transport.stochastic`): BMC walks each particle's straight line
        (no ``scattering`` yet; materials with mixed tables, a Composition's included); the
        quadrature scales each ray's CSDA flux by the tabulated mixed/CSDA ratio (one material
        of ``ppl_bmc.physics.mixed.ratio_names()``: standard rock, limestone, water; GCCLY sky;
        a Composition needs BMC).
    """

    field: Field
    material: materials.Material | materials.Blend | str | None = None
    sky: sky_flux.SkyFlux | str = "gccly"
    step_m: float | None = None
    decay: bool = True
    k_max: float = 1e6
    scattering: bool = False
    physics: str | mixed_tables.Mixed = "csda"

    def __post_init__(self):
        if not isinstance(self.field, Field):
            raise ValueError(f"field must be a ppl_bmc.geometry Field, got {type(self.field).__name__}")
        if isinstance(self.field, Composition):
            if self.material is not None and self.material != self.field.blend:
                raise ValueError(f"material must be left unset for a Composition field (it carries its materials: "
                                 f"{', '.join(m.name for m in self.field.materials)}); got {self.material!r}")
            object.__setattr__(self, "material", self.field.blend)
        else:
            material = "standard_rock" if self.material is None else self.material
            object.__setattr__(self, "material", materials.get(material, "material"))
        object.__setattr__(self, "sky", sky_flux.get(self.sky, "sky"))
        if self.step_m is None:
            object.__setattr__(self, "step_m", self.diagonal / 16)
        if not (np.isfinite(self.step_m) and self.step_m > 0):
            raise ValueError(f"step_m must be > 0 m, got {self.step_m}")
        object.__setattr__(self, "step_m", float(self.step_m))
        if not 1.0 < self.k_max <= 1e6:
            raise ValueError(f"k_max must be in (1, 1e6] GeV, got {self.k_max}")
        for name in ("decay", "scattering"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
            object.__setattr__(self, name, bool(getattr(self, name)))
        if isinstance(self.physics, str) and self.physics in ("csda", "mixed"):
            if self.physics == "mixed":
                object.__setattr__(self, "physics", mixed_tables.Mixed())
        elif not isinstance(self.physics, mixed_tables.Mixed):
            raise ValueError(f"physics must be 'csda', 'mixed' or a ppl_bmc.physics.mixed.Mixed, got {self.physics!r}")
        if self.mixed_material is not None and self.scattering:
            raise ValueError("physics='mixed' walks straight lines: build the Scene with scattering=False")

    @property
    def mixed_material(self):
        """The :class:`~ppl_bmc.physics.mixed.MixedMaterial` of a mixed-mode scene (a
        :class:`~ppl_bmc.physics.mixed.MixedBlend` for a Composition), else ``None``."""
        if self.physics == "csda":
            return None
        if isinstance(self.field, Composition):
            return mixed_tables.blend(self.material, "field.materials", self.physics.cut)
        return mixed_tables.get(self.material, "material", self.physics.cut)

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
