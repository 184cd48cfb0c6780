"""NumPyro glue: the ``counts`` observation site, priors over density fields, a model factory.

* :func:`counts_site` — Poisson counts per detector bin, a ``numpyro.sample`` site named
  ``counts`` inside ``detector × bin`` plates (so ``numpyro.infer.Predictive`` simulates data
  and ``log_likelihood`` has one value per bin).
* :class:`Systematics` / :func:`survey_counts` — a survey's nuisances as latent sites (background
  flux floor and efficiency per telescope, sky normalisation and spectral tilt, a density bias),
  the ``counts`` site with them, and open-sky calibration runs (``open_sky_counts``).
* :func:`gravity_site` — Normal gravity anomalies per station (mGal), a site named ``gravity``.
* :class:`GMRF` / :func:`gmrf_field` — a Gaussian Markov random field on a regular grid
  (precision ``κ²·I + Laplacian``, Neumann boundaries), sampled non-centred: white-noise
  latent ``<name>_white`` and the field as a deterministic site ``<name>``.
* :func:`log_density_prior` (voxel densities ``exp(GMRF)``) and :func:`fraction_prior`
  (mixing fractions ``sigmoid(GMRF)`` in (0, 1)).
* :func:`field_model` — a plain NumPyro model ``model(counts=None)`` from a scene, detectors
  and a prior.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ppl_bmc import _checks
from ppl_bmc.estimators import resolve_method
from ppl_bmc.likelihood import expected_counts

__all__ = ["GMRF", "Systematics", "counts_site", "field_model", "fraction_prior", "geometric_factor", "gmrf_field",
           "gravity_site", "log_density_prior", "survey_counts"]


def counts_site(expected, observed=None, *, name: str = "counts", plates=("detector", "bin")):
    """Poisson observation of ``expected`` counts ``(n_detectors, n_bins)``.

    ``observed``: integer-valued counts of the same shape (``None`` to sample).  Concrete
    observed counts must be finite and ≥ 0.  ``plates``: the names of the two plates.  Returns
    the site's value.
    """
    expected = jnp.asarray(expected)
    if expected.ndim != 2:
        raise ValueError(f"expected must have shape (n_detectors, n_bins), got {expected.shape}")
    if observed is not None:
        obs = np.asarray(observed) if _checks.is_concrete(observed) else observed
        if obs.shape != expected.shape:
            raise ValueError(f"observed counts must have shape {expected.shape}, got {obs.shape}")
        if isinstance(obs, np.ndarray) and (not np.all(np.isfinite(obs)) or np.any(obs < 0)
                                            or np.any(obs != np.round(obs))):
            raise ValueError("observed counts must be finite non-negative integers")
    n_det, n_bins = expected.shape
    with numpyro.plate(plates[0], n_det, dim=-2), numpyro.plate(plates[1], n_bins, dim=-1):
        return numpyro.sample(name, dist.Poisson(expected), obs=observed)


def gravity_site(predicted, observed=None, *, noise_mgal, name: str = "gravity"):
    """Normal observation of a gravity anomaly ``predicted`` (mGal, ``(M,)``, e.g. a
    :class:`ppl_bmc.gravity.GravitySurvey` of the same densities plus any offset) with station
    noise ``noise_mgal`` (mGal, > 0; a scalar or ``(M,)``), inside a ``station`` plate.
    ``observed``: ``(M,)`` finite values (``None`` to sample).  Returns the site's value."""
    predicted = jnp.asarray(predicted)
    if predicted.ndim != 1:
        raise ValueError(f"predicted gravity must have shape (n_stations,), got {predicted.shape}")
    if _checks.is_concrete(noise_mgal) and not np.all(np.asarray(noise_mgal) > 0):
        raise ValueError(f"noise_mgal must be > 0 mGal, got {noise_mgal}")
    if observed is not None and _checks.is_concrete(observed):
        obs = np.asarray(observed, dtype=float)
        if obs.shape != predicted.shape or not np.all(np.isfinite(obs)):
            raise ValueError(f"observed gravity must be finite with shape {predicted.shape} (mGal), got {obs.shape}")
    with numpyro.plate("station", predicted.shape[0], dim=-1):
        return numpyro.sample(name, dist.Normal(predicted, noise_mgal), obs=observed)


@dataclass(frozen=True)
class Systematics:
    """Priors of a muon survey's nuisances, each a NumPyro distribution or ``None`` (fixed at
    its nominal value).  Used by :func:`survey_counts`; every one is a latent site.

    Parameters
    ----------
    background : Distribution or None
        Per telescope (site ``background``, ``(n_detectors,)``): an opacity-independent flux
        floor (m⁻² s⁻¹ sr⁻¹) added to every line of sight's transmitted flux — soft
        electromagnetic particles, upward and accidental coincidences (the excess measured at
        the Puy de Dôme).  Counts gain ``background × acceptance × exposure × efficiency``.
    efficiency : Distribution or None
        Per telescope (site ``efficiency``): a factor on its nominal efficiency (1 = nominal).
    sky_norm : Distribution or None
        One factor on the sky flux (site ``sky_norm``), shared by all telescopes.
    tilt : Distribution or None
        A spectral-index shift δ of the sky flux, ``× ((K + m_μ)/pivot_gev)^δ`` (site ``tilt``);
        the counts at δ are interpolated (quadratically in log) from three fluxes at
        ``δ ∈ {−tilt_step, 0, tilt_step}``, exact to ~1e-4 for |δ| ≤ tilt_step.
    density_bias : Distribution or None
        A constant (kg/m³, site ``density_bias``) added to the densities the muons see (not to
        gravity's): the muography–gravity offset found at La Soufrière.
    pivot_gev, tilt_step : float
        The tilt's pivot energy (GeV) and interpolation step.
    """

    background: object = None
    efficiency: object = None
    sky_norm: object = None
    tilt: object = None
    density_bias: object = None
    pivot_gev: float = 10.0
    tilt_step: float = 0.05

    def __post_init__(self):
        for name in ("background", "efficiency", "sky_norm", "tilt", "density_bias"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, dist.Distribution):
                raise ValueError(f"{name} must be a numpyro Distribution or None, got {v!r}")
        if not (self.pivot_gev > 0 and self.tilt_step > 0):
            raise ValueError(f"pivot_gev and tilt_step must be > 0, got {self.pivot_gev}, {self.tilt_step}")


def geometric_factor(detectors):
    """Per detector and bin (or line of sight), ``exposure × efficiency × acceptance`` (m² s sr):
    the counts of a flux of 1 m⁻² s⁻¹ sr⁻¹ — ``(n_detectors, n_bins)``."""
    from ppl_bmc.telescope import Telescope

    rows = []
    for det in detectors:
        acc = det.acceptance() if isinstance(det, Telescope) else det.area_m2 * det.bins()[2]
        rows.append(det.exposure_s * det.efficiency * np.asarray(acc))
    return np.stack(rows)


def _with_tilt(scene, params, detectors, systematics, tilt, method_kw):
    """Expected counts at the tilt δ (quadratic interpolation of log counts in δ), or at δ = 0."""
    import dataclasses

    from ppl_bmc.physics.flux import Tilted

    if tilt is None:
        return expected_counts(scene, params, detectors, **method_kw)
    h = systematics.tilt_step
    at = lambda d: expected_counts(dataclasses.replace(scene, sky=Tilted(scene.sky, d, systematics.pivot_gev)),
                                   params, detectors, **method_kw)
    tiny = jnp.finfo(jnp.result_type(float)).tiny
    lm, l0, lp = (jnp.log(jnp.maximum(at(d), tiny)) for d in (-h, 0.0, h))
    slope, curve = (lp - lm) / (2 * h), (lp - 2 * l0 + lm) / (2 * h * h)
    return jnp.exp(l0 + tilt * slope + tilt * tilt * curve)


def survey_counts(scene, params, detectors, systematics=Systematics(), *, observed=None, open_sky=None,
                  open_observed=None, method="quadrature", key=None, n_particles=None, n_steps=None,
                  name: str = "counts"):
    """The muon observation of a survey with its nuisances: samples the latent sites of
    ``systematics``, then the Poisson ``counts`` (and ``open_sky_counts``) sites.

    Expected counts of telescope i, line of sight j:
    ``ε_i · (s · S_ij(ρ + b; δ) + β_i · G_ij)`` with S the transmitted counts
    (:func:`~ppl_bmc.likelihood.expected_counts`, nominal efficiency), ε the relative
    efficiency, s the sky normalisation, δ the tilt, b the density bias, β the background
    flux floor and G :func:`geometric_factor`.

    Parameters
    ----------
    scene, params, detectors : as :func:`~ppl_bmc.likelihood.expected_counts`.
    systematics : Systematics
    observed : counts ``(n_detectors, n_bins)`` or None.
    open_sky : detectors or None
        One calibration run per detector (same order): telescopes pointed at open sky in the
        same scene (their lines of sight see no matter: densities 0), sharing detector i's
        efficiency and background; site ``open_sky_counts``.
    open_observed : their counts or None.
    method, key, n_particles, n_steps : the likelihood's estimator (default the quadrature).

    Returns a dict of the expected counts (``"counts"``, ``"open_sky_counts"``).
    """
    if not isinstance(systematics, Systematics):
        raise ValueError(f"systematics must be a ppl_bmc.nppl.Systematics, got {systematics!r}")
    dets = tuple(detectors) if isinstance(detectors, (list, tuple)) else (detectors,)
    n_det = len(dets)
    kw = dict(method=resolve_method(method, key=key, n_particles=n_particles, n_steps=n_steps))
    sy = systematics

    def site(name, prior, shape=()):
        if prior is None:
            return None
        if shape:
            with numpyro.plate(f"{name}_detector", shape[0], dim=-1):
                return numpyro.sample(name, prior)
        return numpyro.sample(name, prior)

    bkg = site("background", sy.background, (n_det,))
    eff = site("efficiency", sy.efficiency, (n_det,))
    norm = site("sky_norm", sy.sky_norm)
    tilt = site("tilt", sy.tilt)
    bias = site("density_bias", sy.density_bias)
    mu_params = params if bias is None else jax.tree_util.tree_map(lambda p: p + bias, params)

    def expected(dets_, params_):
        signal = _with_tilt(scene, params_, dets_, sy, tilt, kw)
        if norm is not None:
            signal = norm * signal
        if bkg is not None:
            signal = signal + bkg[:, None] * jnp.asarray(geometric_factor(dets_), signal.dtype)
        return signal if eff is None else eff[:, None] * signal

    out = {name: expected(dets, mu_params)}
    counts_site(out[name], observed, name=name)
    if open_sky is not None:
        opens = tuple(open_sky) if isinstance(open_sky, (list, tuple)) else (open_sky,)
        if len(opens) != n_det:
            raise ValueError(f"open_sky must have one calibration run per detector ({n_det}), got {len(opens)}")
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        out["open_sky_counts"] = expected(opens, zeros)
        counts_site(out["open_sky_counts"], open_observed, name="open_sky_counts", plates=("open_detector", "open_bin"))
    return out


class GMRF:
    """A Gaussian Markov random field on a grid of ``shape`` (any number of axes).

    Precision ``Q ∝ κ²·I + L`` with ``L`` the grid graph Laplacian (nearest neighbours,
    Neumann boundaries) and ``κ = 1/length`` (``length`` in voxels: the correlation length);
    scaled so that the mean marginal variance is 1.  :meth:`transform` maps white noise
    ``z ~ N(0, I)`` of ``shape`` to a field ``Q^{-1/2} z`` (one small matrix product per axis).
    """

    def __init__(self, shape, length: float = 2.0):
        self.shape = tuple(_checks.positive_int(n, "shape entry") for n in shape)
        if not (np.isfinite(length) and length > 0):
            raise ValueError(f"length must be > 0 voxels, got {length}")
        self.length = float(length)
        eig, vecs = [], []
        for n in self.shape:
            lap = np.diag(np.r_[1.0, 2.0 * np.ones(max(n - 2, 0)), 1.0][:n]) if n > 1 else np.zeros((1, 1))
            if n > 1:
                lap -= np.eye(n, k=1) + np.eye(n, k=-1)
            w, v = np.linalg.eigh(lap)
            eig.append(np.clip(w, 0.0, None))
            vecs.append(v)
        total = sum(np.meshgrid(*eig, indexing="ij"))
        amp = 1.0 / np.sqrt(1.0 / self.length**2 + total)
        # marginal variance of voxel i: Σ_k (Π_a V_a[i_a, k_a]²) amp_k², averaged over i → normalise to 1
        mean_var = np.mean(amp**2) if len(self.shape) else 1.0
        self._amp = amp / math.sqrt(mean_var)
        self._vecs = vecs

    def transform(self, white):
        """Field (shape ``self.shape``) with covariance ∝ Q⁻¹ from white noise of the same shape."""
        x = jnp.asarray(white)
        dt = x.dtype
        for a, v in enumerate(self._vecs):  # to the eigenbasis
            x = jnp.moveaxis(jnp.tensordot(jnp.asarray(v.T, dt), x, axes=([1], [a])), 0, a)
        x = x * jnp.asarray(self._amp, dt)
        for a, v in enumerate(self._vecs):  # back
            x = jnp.moveaxis(jnp.tensordot(jnp.asarray(v, dt), x, axes=([1], [a])), 0, a)
        return x


def gmrf_field(name: str, shape, *, mean=0.0, scale: float = 1.0, length: float = 2.0):
    """Sample a smooth field ``mean + scale · GMRF`` of ``shape`` (non-centred).

    Sites: ``<name>_white`` (standard normal latent, the one NUTS moves) and ``<name>``
    (deterministic, the field).  ``scale``: prior standard deviation of each voxel (mean over
    voxels); ``length``: correlation length in voxels.
    """
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be > 0, got {scale}")
    gm = GMRF(shape, length)
    white = numpyro.sample(f"{name}_white", dist.Normal(0.0, 1.0).expand(gm.shape).to_event(len(gm.shape)))
    return numpyro.deterministic(name, mean + scale * gm.transform(white))


def log_density_prior(shape, *, mean_density: float, sd_log: float = 0.3, length: float = 2.0,
                      name: str = "log_density"):
    """A prior for voxel densities: ``exp(GMRF)`` around ``mean_density`` (kg/m³).

    Returns a callable ``prior() -> densities`` (array of ``shape``, kg/m³) for
    :func:`field_model`; the log-density field is the deterministic site ``name``.
    """
    if not (np.isfinite(mean_density) and mean_density > 0):
        raise ValueError(f"mean_density must be > 0 kg/m³, got {mean_density}")

    def prior():
        return jnp.exp(gmrf_field(name, shape, mean=math.log(mean_density), scale=sd_log, length=length))

    return prior


def fraction_prior(shape, *, mean_fraction: float = 0.5, sd_logit: float = 1.0, length: float = 2.0,
                   name: str = "fraction_logit"):
    """A prior for mixing fractions in (0, 1): ``sigmoid(GMRF)`` around ``mean_fraction``.

    Returns ``prior() -> fractions`` (array of ``shape``); the fractions are also recorded as
    the deterministic site ``"fraction"``.
    """
    if not 0 < mean_fraction < 1:
        raise ValueError(f"mean_fraction must be in (0, 1), got {mean_fraction}")

    def prior():
        logit = gmrf_field(name, shape, mean=math.log(mean_fraction / (1 - mean_fraction)), scale=sd_logit,
                           length=length)
        return numpyro.deterministic("fraction", jax.nn.sigmoid(logit))

    return prior


def field_model(scene, detectors, prior, *, method="quadrature", key=None, n_particles: int | None = None,
                n_steps: int | None = None, adjoint=None, record_expected: bool = True):
    """A NumPyro model ``model(counts=None)`` of muon counts through ``scene``.

    ``prior()`` returns the field's params (e.g. :func:`log_density_prior`); the likelihood is
    :func:`ppl_bmc.expected_counts` with ``method`` (``Quadrature()``, ``BMC(key=...)`` — a fixed key:
    common random numbers — or their names with the keywords ``key``, ``n_particles``, ``n_steps``,
    ``adjoint``), observed through :func:`counts_site`.  With ``record_expected`` the expected
    counts are the deterministic site ``"expected"``.
    """
    method = resolve_method(method, key=key, n_particles=n_particles, n_steps=n_steps, adjoint=adjoint)

    def model(counts=None):
        params = prior()
        mu = expected_counts(scene, params, detectors, method=method)
        if record_expected:
            numpyro.deterministic("expected", mu)
        return counts_site(mu, counts)

    return model
