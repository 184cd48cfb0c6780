"""ppl_bmc: differentiable backward Monte-Carlo transport as a likelihood for NumPyro.

Units are SI as in PUMAS (GeV, m, kg/m³, kg/m², m⁻² s⁻¹ sr⁻¹) except in the paper's toy,
whose lengths and weights are dimensionless.
"""

from ppl_bmc import detectors, flux, geometry, materials, muography, nppl, toy
from ppl_bmc.adjoint import Adjoint, AutodiffAdjoint, ForwardSensitivity, ReplayAdjoint, mean_weight
from ppl_bmc.detectors import Detector
from ppl_bmc.geometry import Scene
from ppl_bmc.likelihood import expected_counts

__version__ = "0.1.0"

__all__ = [
    "Adjoint",
    "AutodiffAdjoint",
    "Detector",
    "ForwardSensitivity",
    "ReplayAdjoint",
    "Scene",
    "detectors",
    "expected_counts",
    "flux",
    "geometry",
    "materials",
    "mean_weight",
    "muography",
    "nppl",
    "toy",
    "__version__",
]
