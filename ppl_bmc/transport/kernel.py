"""The contract every backward Monte-Carlo kernel follows.

A kernel is a small, immutable, hashable object (it is a static argument of ``jit``)
whose methods are pure functions of **one** particle.  The estimator of a reading is the
mean over particles of the weight ``W = exp(Λ)`` with

    Λ = log_w0 + Σ_k log_w_k + log_final,

where ``log_w0`` comes from :meth:`Kernel.init`, ``log_w_k`` from :meth:`Kernel.step`
(k = 1 … n_steps) and ``log_final`` from :meth:`Kernel.final` (e.g. the sky flux at the
exit).  A weight of exactly zero is a log-weight of ``-inf``; kernels must keep the
*gradients* of their log-weights finite in that case (double ``where``).

Randomness never enters a kernel as a key: the loop draws ``n_step_uniforms`` uniforms in
[0, 1) per step (:class:`ppl_bmc.transport.loop.Streams`), so a replay from the
same key sees the same numbers.  The uniforms do not depend on the parameters.

Gradient strategies need:

* :class:`~ppl_bmc.adjoint.AutodiffAdjoint` and :class:`~ppl_bmc.adjoint.ForwardSensitivity`:
  ``init``, ``step``, ``final``.
* :class:`~ppl_bmc.adjoint.ReplayAdjoint`: the same, plus either
  ``path_depends_on_params = False`` (the state sequence does not depend on the parameters:
  the replay runs forward again) or :meth:`Kernel.inverse` (the replay runs backward,
  reconstructing each state from the next one).
"""

from __future__ import annotations


class Kernel:
    """Base class of BMC kernels (one particle, one reading, pure functions).

    Attributes
    ----------
    n_init_uniforms : int
        Uniforms drawn for :meth:`init` (may be 0).
    n_step_uniforms : int
        Uniforms drawn for each :meth:`step`.
    path_depends_on_params : bool
        Whether the state sequence (not the weight) depends on the parameters.
    """

    n_init_uniforms: int = 0
    n_step_uniforms: int = 1
    path_depends_on_params: bool = True

    def init(self, params, ctx, u):
        """Initial ``(state, log_w0)`` of one particle from its ``n_init_uniforms`` uniforms."""
        raise NotImplementedError

    def step(self, state, params, ctx, u, k):
        """One backward step ``k`` (1-based, a traced int): returns ``(new_state, log_w_k)``."""
        raise NotImplementedError

    def inverse(self, state, params, ctx, u, k):
        """The state before step ``k`` given the state after it and the same uniforms."""
        raise NotImplementedError(
            f"{type(self).__name__} has no inverse step; ReplayAdjoint needs one when "
            "path_depends_on_params is True"
        )

    def final(self, state, params, ctx):
        """Log of the final factor (e.g. the known flux at the source); 0 by default."""
        del state, params, ctx
        return 0.0
