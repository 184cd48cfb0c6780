"""Inference runners, ArviZ outputs and diagnostics.

Runners: :func:`fit_map` (SVI + AutoDelta), :func:`laplace` (Gaussian at the mode, Hessian by
reverse-over-reverse AD), :func:`run_nuts` / :func:`run_hmc` / :func:`run_mcmc` (NUTS/HMC in
checkpointed, resumable blocks; one return type, :class:`McmcResult`).
Outputs: :func:`to_inference_data` (posterior, sample_stats, observed_data,
posterior_predictive, log_likelihood), :func:`to_netcdf` / :func:`from_netcdf`,
:func:`summary`, :func:`plot_trace`, :func:`plot_rank`, :func:`write_results`.
Vectorised passes: :func:`posterior_predictive`, :func:`log_likelihood`.
Diagnostics: :func:`diagnostics` (r̂, ESS, divergences, BFMI, tree depth) and
:func:`mc_noise` (the simulated likelihood's Monte-Carlo noise).
"""

from __future__ import annotations

from ppl_bmc.infer._arviz import (
    SUMMARY_COLUMNS,
    from_netcdf,
    group,
    groups,
    plot_rank,
    plot_trace,
    summary,
    to_netcdf,
)
from ppl_bmc.infer.diagnostics import Diagnostics, DiagnosticWarning, bfmi, diagnostics
from ppl_bmc.infer.noise import MCNoise, MCNoiseWarning, mc_noise
from ppl_bmc.infer.checkpoint import Checkpoint
from ppl_bmc.infer.laplace import LaplaceResult, laplace
from ppl_bmc.infer.map import MapResult, fit_map
from ppl_bmc.infer.kernels import default_chain_method, make_kernel
from ppl_bmc.infer.mcmc import (
    McmcResult,
    run_hmc,
    run_mcmc,
    run_nuts,
)
from ppl_bmc.infer.predictive import log_likelihood, map_draws, posterior_predictive, total_log_likelihood
from ppl_bmc.infer.results import inference_data, to_inference_data, write_results

__all__ = [
    "Checkpoint",
    "DiagnosticWarning",
    "Diagnostics",
    "LaplaceResult",
    "MCNoise",
    "MCNoiseWarning",
    "MapResult",
    "McmcResult",
    "SUMMARY_COLUMNS",
    "bfmi",
    "default_chain_method",
    "diagnostics",
    "fit_map",
    "from_netcdf",
    "group",
    "groups",
    "inference_data",
    "laplace",
    "log_likelihood",
    "make_kernel",
    "map_draws",
    "mc_noise",
    "plot_rank",
    "plot_trace",
    "posterior_predictive",
    "run_hmc",
    "run_mcmc",
    "run_nuts",
    "summary",
    "to_inference_data",
    "to_netcdf",
    "total_log_likelihood",
    "write_results",
]
