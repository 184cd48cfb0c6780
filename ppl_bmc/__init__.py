"""ppl_bmc: differentiable backward Monte-Carlo transport as a likelihood for NumPyro.

Units are SI as in PUMAS (GeV, m, kg/m³, kg/m², m⁻² s⁻¹ sr⁻¹) except in the paper's toy,
whose lengths and weights are dimensionless.
"""

from ppl_bmc import flux, materials, muography, toy
from ppl_bmc.adjoint import Adjoint, AutodiffAdjoint, ForwardSensitivity, ReplayAdjoint, mean_weight

__version__ = "0.1.0"

__all__ = [
    "Adjoint",
    "AutodiffAdjoint",
    "ForwardSensitivity",
    "ReplayAdjoint",
    "flux",
    "materials",
    "mean_weight",
    "muography",
    "toy",
    "__version__",
]
