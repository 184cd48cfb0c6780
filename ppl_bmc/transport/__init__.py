"""Backward Monte-Carlo transport kernels and the step loop.

A *kernel* describes one particle's backward walk as pure, unbatched functions of the
state, the material parameters, the per-reading context and the uniforms of one step
(see :class:`~ppl_bmc.transport.kernel.Kernel`).  :mod:`ppl_bmc.transport.loop` batches a
kernel over readings and particles with ``vmap`` and runs it over a static number of
steps with ``lax.scan``.  Gradient strategies live one layer up, in :mod:`ppl_bmc.adjoint`.
"""

from ppl_bmc.transport.kernel import Kernel
from ppl_bmc.transport.toy import ToyKernel

__all__ = ["Kernel", "ToyKernel"]
