"""Laplace approximation: a Gaussian at the posterior mode in the unconstrained space.

The Hessian of the potential (−log joint density in the unconstrained space) is computed by
reverse-over-reverse differentiation, ``jax.jacrev(jax.jacrev(U))``: the simulated likelihood
is a ``jax.custom_vjp`` primitive (the replay adjoint), which has no forward mode, so
``jax.hessian`` (forward-over-reverse) is not available in general.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.infer import init_to_median, init_to_value
from numpyro.infer.util import initialize_model

from ppl_bmc import _checks
from ppl_bmc.infer.map import MapResult, fit_map
from ppl_bmc.infer.predictive import map_draws


@dataclass
class LaplaceResult:
    """Result of :func:`laplace`.

    Attributes
    ----------
    samples : dict[str, numpy.ndarray (num_samples, ...)]
        Draws of the latent sites (constrained space) and of the deterministic sites.
    z : dict[str, numpy.ndarray (num_samples, ...)]
        The same draws in the unconstrained space.
    mode : dict[str, numpy.ndarray]
        The mode in the unconstrained space (the Gaussian's mean), per latent site.
    cov : numpy.ndarray (d, d)
        Covariance of the Gaussian over the flattened unconstrained parameters (``d`` entries,
        in the order of ``jax.flatten_util.ravel_pytree(mode)``).
    hessian : numpy.ndarray (d, d)
        Hessian of the potential at the mode.
    log_density : numpy.ndarray (num_samples,)
        Log joint density (nats, unconstrained space: Jacobians included) at the draws.
    log_q : numpy.ndarray (num_samples,)
        Log density of the Gaussian at the draws.
    positive_definite : bool
        False when the Hessian had non-positive eigenvalues (they were raised to a floor and a
        warning was issued): the mode is a saddle or the posterior is flat in some direction.
    map : MapResult
        The SVI MAP fit the mode was refined from.
    """

    samples: dict
    z: dict
    mode: dict
    cov: np.ndarray
    hessian: np.ndarray
    log_density: np.ndarray
    log_q: np.ndarray
    positive_definite: bool
    map: MapResult

    @property
    def importance_efficiency(self) -> float:
        """Relative effective sample size of importance weights p/q in (0, 1]: ≈ 1 when the
        posterior is close to the Gaussian, small when the approximation is poor."""
        log_w = self.log_density - self.log_q
        w = np.exp(log_w - np.max(log_w))
        return float(w.sum() ** 2 / (len(w) * np.sum(w**2)))


def laplace(
    model,
    *,
    rng_key,
    num_samples: int = 1000,
    map_result: MapResult | None = None,
    num_steps: int = 2000,
    learning_rate: float = 0.01,
    newton_steps: int = 5,
    init_strategy=init_to_median,
    progress_bar: bool = False,
    batch_size: int | None = None,
    **model_kwargs,
) -> LaplaceResult:
    """Laplace approximation of the posterior of ``model(**model_kwargs)``, and draws from it.

    1. MAP by :func:`ppl_bmc.infer.fit_map` (SVI, ``num_steps`` Adam steps), unless
       ``map_result`` is given;
    2. up to ``newton_steps`` damped Newton steps on the unconstrained potential ``U`` (the SVI
       MAP is the mode in the constrained space; the Gaussian lives in the unconstrained one);
    3. ``H = jacrev(jacrev(U))`` at the mode, covariance ``H⁻¹`` (eigenvalues ≤ 0 are raised to
       ``1e-8·max(λ)`` with a warning);
    4. ``num_samples`` draws ``z ~ N(mode, H⁻¹)`` mapped to the constrained space with the
       model's deterministic sites (one vectorised pass).

    ``rng_key`` seeds the SVI state and the draws; the likelihood's key is in ``model_kwargs``.
    """
    rng_key = _checks.prng_key(rng_key, "rng_key")
    num_samples = _checks.positive_int(num_samples, "num_samples", minimum=2)
    newton_steps = _checks.positive_int(newton_steps, "newton_steps", minimum=0)
    k_map, k_init, k_draw = jax.random.split(rng_key, 3)
    if map_result is None:
        map_result = fit_map(model, rng_key=k_map, num_steps=num_steps, learning_rate=learning_rate,
                             init_strategy=init_strategy, progress_bar=progress_bar, **model_kwargs)
    if map_result.model is None:
        map_result.model, map_result.model_kwargs = model, dict(model_kwargs)
    info = initialize_model(k_init, model, init_strategy=init_to_value(values=map_result.params), model_kwargs=model_kwargs)
    flat, unravel = ravel_pytree(info.param_info.z)
    potential = jax.jit(lambda f: info.potential_fn(unravel(f)))
    value_and_grad = jax.jit(jax.value_and_grad(lambda f: info.potential_fn(unravel(f))))
    hess = jax.jit(jax.jacrev(jax.jacrev(lambda f: info.potential_fn(unravel(f)))))

    u, g = value_and_grad(flat)
    h = hess(flat)
    for _ in range(newton_steps):
        lam, vec = jnp.linalg.eigh(0.5 * (h + h.T))
        if not bool(jnp.all(lam > 0)):
            break
        step = vec @ ((vec.T @ g) / lam)
        if float(g @ step) < 1e-10:  # Newton decrement²: converged
            break
        for damping in (1.0, 0.5, 0.25, 0.125):
            trial = flat - damping * step
            u_trial = potential(trial)
            if bool(jnp.isfinite(u_trial)) and float(u_trial) <= float(u):
                break
        else:
            break
        flat = trial
        u, g = value_and_grad(flat)
        h = hess(flat)

    h = np.asarray(0.5 * (h + h.T), dtype=np.float64)
    lam, vec = np.linalg.eigh(h)
    positive_definite = bool(np.all(lam > 0))
    if not positive_definite:
        floor = 1e-8 * max(float(np.max(np.abs(lam))), 1e-30)
        warnings.warn(
            f"laplace: the Hessian of the potential at the mode is not positive definite (eigenvalues "
            f"{np.array2string(lam, precision=3)}); non-positive ones raised to {floor:.3g}: the Gaussian is "
            f"not a faithful approximation", RuntimeWarning, stacklevel=2)
        lam = np.maximum(lam, floor)
    cov = (vec / lam) @ vec.T
    scale = vec / np.sqrt(lam)  # cov = scale @ scale.T
    eps = np.asarray(jax.random.normal(k_draw, (num_samples, flat.shape[0])), dtype=np.float64)
    mode = np.asarray(flat, dtype=np.float64)
    z_flat = (mode + eps @ scale.T).astype(np.asarray(flat).dtype)
    z = jax.vmap(unravel)(jnp.asarray(z_flat))
    log_density = -np.asarray(map_draws(lambda zz: {"u": info.potential_fn(zz)}, z, batch_ndims=1,
                                        batch_size=batch_size)["u"])
    d = flat.shape[0]
    log_q = -0.5 * np.sum(eps**2, axis=1) - 0.5 * d * np.log(2 * np.pi) + 0.5 * np.sum(np.log(lam))
    samples = map_draws(info.postprocess_fn, z, batch_ndims=1, batch_size=batch_size)
    return LaplaceResult(
        samples=samples,
        z={k: np.asarray(v) for k, v in z.items()},
        mode={k: np.asarray(v) for k, v in unravel(jnp.asarray(mode, dtype=flat.dtype)).items()},
        cov=cov,
        hessian=h,
        log_density=log_density,
        log_q=log_q,
        positive_definite=positive_definite,
        map=map_result,
    )


__all__ = ["LaplaceResult", "laplace"]
