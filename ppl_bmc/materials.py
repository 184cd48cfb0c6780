"""Public entry point for materials: ``ppl_bmc.materials.get("standard_rock")``.

See :mod:`ppl_bmc.physics.materials` for units and the origin of the tables.
"""

from ppl_bmc.physics.materials import Material, custom, get, names

__all__ = ["Material", "custom", "get", "names"]
