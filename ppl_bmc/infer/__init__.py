"""Inference runners and ArviZ outputs: MAP (SVI), NUTS/HMC, InferenceData, files."""

from __future__ import annotations

import os


from ppl_bmc._io import atomic_write
from ppl_bmc.infer import _arviz
from ppl_bmc.infer._arviz import SUMMARY_COLUMNS, from_netcdf, group, groups, plot_trace, summary, to_netcdf
from ppl_bmc.infer.map import MapResult, fit_map
from ppl_bmc.infer.mcmc import default_chain_method, run_nuts


def to_inference_data(mcmc, **kwargs):
    """ArviZ data (``InferenceData`` on ArviZ 0.23, ``DataTree`` on 1.x) from a finished MCMC,
    with the groups posterior, sample_stats and observed_data (and log_likelihood)."""
    return _arviz.from_numpyro(mcmc, **kwargs)


def write_results(data, folder, *, var_names=None, ci_prob: float = 0.94):
    """Write ``posterior.nc``, ``summary.csv`` and ``trace.png`` to ``folder`` (each atomically).

    Returns the summary ``DataFrame`` (columns :data:`SUMMARY_COLUMNS`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    to_netcdf(data, os.path.join(folder, "posterior.nc"))
    table = summary(data, var_names=var_names, ci_prob=ci_prob)
    atomic_write(os.path.join(folder, "summary.csv"), lambda tmp: table.to_csv(tmp))
    fig = plot_trace(data, var_names=var_names)
    atomic_write(os.path.join(folder, "trace.png"), lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    plt.close("all")
    return table


__all__ = [
    "MapResult",
    "SUMMARY_COLUMNS",
    "default_chain_method",
    "fit_map",
    "from_netcdf",
    "group",
    "groups",
    "plot_trace",
    "run_nuts",
    "summary",
    "to_inference_data",
    "to_netcdf",
    "write_results",
]
