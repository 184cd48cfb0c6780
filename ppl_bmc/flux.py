"""Public entry point for sky-flux models (see :mod:`ppl_bmc.physics.flux`)."""

from ppl_bmc.physics.flux import (
    MODELS,
    MU_PLUS_OVER_MU_MINUS,
    MUON_MASS,
    TabulatedFlux,
    charge_fraction,
    cos_theta_star,
    gaisser,
    gccly,
)

__all__ = ["MODELS", "MU_PLUS_OVER_MU_MINUS", "MUON_MASS", "TabulatedFlux", "charge_fraction",
           "cos_theta_star", "gaisser", "gccly"]
