"""The one place that knows ArviZ versions apart.

ArviZ 0.23 (Python 3.11) returns ``InferenceData``; ArviZ 1.x (Python ≥ 3.12) returns an
``xarray.DataTree``.  Callers use these functions and never touch the difference.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import numpy as np

# NumPyro must be imported before ArviZ: arviz_base binds ``numpyro`` lazily at import time,
# and if that lazy module is the first import of NumPyro, ``numpyro.infer.initialization`` is
# missing later in ``from_numpyro``.
import numpyro.infer  # noqa: F401  (isort: skip)
import arviz as az  # noqa: E402

from ppl_bmc._io import atomic_write

ARVIZ_MAJOR = int(az.__version__.split(".")[0])

#: Column names of :func:`summary` on both versions.
SUMMARY_COLUMNS = ("mean", "sd", "ci_lower", "ci_upper", "ess_bulk", "ess_tail", "r_hat")


def from_datasets(datasets: dict, *, attrs: dict | None = None):
    """ArviZ object from ``xarray.Dataset`` groups (``{"posterior": ds, ...}``); ``attrs`` go on
    every group (netCDF-compatible values: str, int, float)."""
    datasets = {name: ds.assign_attrs(**(attrs or {})) for name, ds in datasets.items()}
    if ARVIZ_MAJOR >= 1:
        import xarray as xr

        return xr.DataTree.from_dict({f"/{name}": ds for name, ds in datasets.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # group-name warnings of InferenceData
        return az.InferenceData(**datasets)


def groups(data) -> list[str]:
    """Names of the groups present (``posterior``, ``sample_stats``, …)."""
    if ARVIZ_MAJOR >= 1:
        return [name.strip("/") for name in data.children]
    return list(data.groups())


def group(data, name: str):
    """One group as an ``xarray.Dataset``."""
    if ARVIZ_MAJOR >= 1:
        return data[name].to_dataset()
    return getattr(data, name)


def summary(data, *, var_names=None, ci_prob: float = 0.94):
    """``pandas.DataFrame`` with the columns :data:`SUMMARY_COLUMNS` (equal-tailed interval).

    A posterior of a single draw (a MAP point) gets ``sd`` 0, the point as its interval and NaN
    ESS and r̂.
    """
    post = group(data, "posterior")
    if post.sizes["chain"] * post.sizes["draw"] < 4:
        return _point_summary(post, var_names)
    if ARVIZ_MAJOR >= 1:
        table = az.summary(data, var_names=var_names, ci_prob=ci_prob, ci_kind="eti", round_to="none")
        pct = f"{ci_prob * 100:g}"
        table = table.rename(columns={f"eti{pct}_lb": "ci_lower", f"eti{pct}_ub": "ci_upper"})
    else:
        table = az.summary(data, var_names=var_names, hdi_prob=ci_prob, stat_focus="mean", round_to="none")
        # ArviZ 0.23 reports an HDI; recompute an equal-tailed interval to match ArviZ 1.x.
        post = data.posterior
        lo, hi = (1 - ci_prob) / 2, 1 - (1 - ci_prob) / 2
        q = post.quantile([lo, hi], dim=("chain", "draw"))
        lower, upper = [], []
        for label in table.index:
            name, _, rest = label.partition("[")
            idx = tuple(int(i) for i in rest.rstrip("]").split(",")) if rest else ()
            values = q[name].values
            lower.append(float(values[(0,) + idx]))
            upper.append(float(values[(1,) + idx]))
        table = table.assign(ci_lower=lower, ci_upper=upper)
    return table[list(SUMMARY_COLUMNS)].astype(float)


def _point_summary(post, var_names):
    import pandas as pd

    rows, index = [], []
    for name in var_names or list(post.data_vars):
        values = np.asarray(post[name].values)
        flat = values.reshape(values.shape[:2] + (-1,))
        for j in range(flat.shape[-1]):
            idx = np.unravel_index(j, values.shape[2:]) if values.ndim > 2 else ()
            index.append(name + (f"[{', '.join(str(int(i)) for i in idx)}]" if idx else ""))
            x = flat[..., j].ravel()
            rows.append((x.mean(), x.std(), x.min(), x.max(), np.nan, np.nan, np.nan))
    return pd.DataFrame(rows, index=index, columns=list(SUMMARY_COLUMNS)).astype(float)


@contextlib.contextmanager
def _quiet_plots():
    """Silence the plotting noise of ArviZ 0.23 on matplotlib ≥ 3.11 and of one-draw posteriors."""
    import matplotlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", matplotlib.MatplotlibDeprecationWarning)
        warnings.filterwarnings("ignore", message="Your data appears to have a single value")
        warnings.filterwarnings("ignore", message="Attempting to set identical low and high xlims")
        yield


def _figure(v1_plot, v0_plot, data, var_names):
    """Run an ArviZ plot (``v1_plot`` on 1.x, ``v0_plot`` on 0.23) and return its Figure."""
    with _quiet_plots():
        if ARVIZ_MAJOR >= 1:
            return v1_plot(data, var_names=var_names, backend="matplotlib").viz["figure"].item()
        return np.ravel(v0_plot(data, var_names=var_names))[0].figure


def plot_trace(data, *, var_names=None):
    """Trace plot; returns the matplotlib ``Figure``."""
    v1 = getattr(az, "plot_trace_dist", None)
    return _figure(v1, az.plot_trace, data, var_names)


def plot_rank(data, *, var_names=None):
    """Rank plot (ECDF-difference ranks on ArviZ 1.x, rank histograms on 0.23; needs ≥ 2
    chains on 1.x); returns the matplotlib ``Figure``."""
    return _figure(az.plot_rank, az.plot_rank, data, var_names)


def to_netcdf(data, path) -> str:
    """Write ``data`` to ``path`` (netCDF4 through h5netcdf) atomically."""
    return atomic_write(path, lambda tmp: data.to_netcdf(tmp, engine="h5netcdf"))


def from_netcdf(path):
    """Read what :func:`to_netcdf` wrote (fully loaded, the file closed)."""
    if ARVIZ_MAJOR >= 1:
        import xarray as xr

        with xr.open_datatree(os.fspath(path), engine="h5netcdf") as tree:
            return tree.load()
    return az.from_netcdf(os.fspath(path), engine="h5netcdf")
