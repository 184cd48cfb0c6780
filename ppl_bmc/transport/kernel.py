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
[0, 1) per step (:class:`ppl_bmc.transport.streams.Streams`), so a replay from the
same key sees the same numbers.  The uniforms do not depend on the parameters.

Gradient strategies need:

* :class:`~ppl_bmc.adjoint.AutodiffAdjoint` and :class:`~ppl_bmc.adjoint.ForwardSensitivity`:
  ``init``, ``step``, ``final``.
* :class:`~ppl_bmc.adjoint.ReplayAdjoint`: the same, plus either
  ``path_depends_on_params = False`` (the state sequence does not depend on the parameters:
  the replay runs forward again) or :meth:`Kernel.inverse` (the replay runs backward,
  reconstructing each state from the next one).

A kernel whose step has one expensive part that its inverse needs as well (a ray segment's
opacity through a voxel field) may declare ``split_step = True`` and define the step in four
pieces instead of ``step`` and ``inverse``:

* :meth:`Kernel.segment` ``(state, params, …) → seg``: the expensive part, reading only the
  *path* leaves of the state (those :meth:`Kernel.rewind` restores);
* :meth:`Kernel.advance` ``(state, seg, params, …) → (new_state, log_w)``;
* :meth:`Kernel.rewind` ``(state_after, params, …) → state``: the state before the step with correct
  path leaves (the others may be anything);
* :meth:`Kernel.inverse_given` ``(state_after, seg, params, …) → state_before``.

Then ``step = advance ∘ segment`` and ``inverse = inverse_given(segment(rewind(·)))``, and the
replay adjoint evaluates the segment once per step on the way back (one ``vjp`` of it serves
both the inverse and the step's cotangent) instead of twice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

__all__ = ["Kernel"]


class Kernel(ABC):
    """Base class of BMC kernels (one particle, one reading, pure functions).

    Attributes
    ----------
    n_init_uniforms : int
        Uniforms drawn for :meth:`init` (may be 0).
    n_step_uniforms : int
        Uniforms drawn for each :meth:`step`.
    path_depends_on_params : bool
        Whether the state sequence (not the weight) depends on the parameters.
    split_step : bool
        Whether the kernel defines its step by :meth:`segment`, :meth:`advance`,
        :meth:`rewind` and :meth:`inverse_given` (see the module docstring).
    """

    n_init_uniforms: int = 0
    n_step_uniforms: int = 1
    path_depends_on_params: bool = True
    split_step: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = lambda name: getattr(cls, name) is not getattr(Kernel, name)
        split = ("segment", "advance", "rewind", "inverse_given")
        if not (own("step") or all(map(own, split))):  # checked when the class is defined
            raise TypeError(f"{cls.__name__} must define step, or split_step = True with {', '.join(split)}")

    @abstractmethod
    def init(self, params, ctx, u):
        """Initial ``(state, log_w0)`` of one particle from its ``n_init_uniforms`` uniforms."""

    def step(self, state, params, ctx, u, k):
        """One backward step ``k`` (1-based, a traced int): returns ``(new_state, log_w_k)``."""
        if self.split_step:
            return self.advance(state, self.segment(state, params, ctx, u, k), params, ctx, u, k)
        raise NotImplementedError

    def inverse(self, state, params, ctx, u, k):
        """The state before step ``k`` given the state after it and the same uniforms."""
        if self.split_step:
            seg = self.segment(self.rewind(state, params, ctx, u, k), params, ctx, u, k)
            return self.inverse_given(state, seg, params, ctx, u, k)
        raise NotImplementedError(
            f"{type(self).__name__} has no inverse step; ReplayAdjoint needs one when "
            "path_depends_on_params is True"
        )

    def segment(self, state, params, ctx, u, k):
        """Split step: the expensive part of step ``k``, from the path leaves of ``state``."""
        raise NotImplementedError

    def advance(self, state, seg, params, ctx, u, k):
        """Split step: ``(new_state, log_w_k)`` from the state before step ``k`` and its segment."""
        raise NotImplementedError

    def rewind(self, state, params, ctx, u, k):
        """Split step: the state before step ``k`` with correct path leaves (others arbitrary)."""
        raise NotImplementedError

    def inverse_given(self, state, seg, params, ctx, u, k):
        """Split step: the state before step ``k`` from the state after it and its segment."""
        raise NotImplementedError

    def check_steps(self, n_steps: int):
        """Raise ``ValueError`` when this kernel cannot walk ``n_steps`` steps (called by
        :func:`~ppl_bmc.adjoint.mean_weight` before tracing); any number by default."""
        del n_steps

    def final(self, state, params, ctx):
        """Log of the final factor (e.g. the known flux at the source); 0 by default."""
        del state, params, ctx
        return 0.0
