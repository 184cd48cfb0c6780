"""Backward Monte-Carlo transport kernels and the step loop.

The muon physics is written once (:mod:`~ppl_bmc.transport.muon`) and run by one kernel,
:class:`~ppl_bmc.transport.csda.MuonKernel`, along a :class:`~ppl_bmc.transport.paths.Path` (a
slab's line of sight or a density field); stochastic hard events (PUMAS's mixed mode) by
:class:`~ppl_bmc.transport.stochastic.MixedKernel` along a straight line.  A *kernel* describes one particle's backward walk as pure, unbatched functions of the
state, the material parameters, the per-reading context and the uniforms of one step
(see :class:`~ppl_bmc.transport.kernel.Kernel`).  :mod:`ppl_bmc.transport.loop` batches a
kernel over readings and particles with ``vmap`` and runs it over a static number of
steps with ``lax.scan``; :mod:`ppl_bmc.transport.sharding` splits the readings over devices.  Gradient strategies live one layer up, in :mod:`ppl_bmc.adjoint`.
"""

from ppl_bmc.transport.csda import MuonKernel
from ppl_bmc.transport.energy import EnergySampling, LineOfSightEnergy, LogUniformEnergy
from ppl_bmc.transport.kernel import Kernel
from ppl_bmc.transport.muon import MuonState
from ppl_bmc.transport.paths import FieldPath, LineOfSight, Path
from ppl_bmc.transport.sharding import join_hosts, readings_mesh
from ppl_bmc.transport.stochastic import MixedKernel
from ppl_bmc.transport.toy import ToyKernel

__all__ = ["Kernel", "MuonKernel", "MixedKernel", "MuonState", "EnergySampling", "LineOfSightEnergy", "LogUniformEnergy", "Path", "LineOfSight", "FieldPath", "ToyKernel",
           "readings_mesh", "join_hosts"]
