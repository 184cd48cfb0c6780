"""``ppl-bmc summarize``: the summary table, the figures, the diagnostics and a plain-language
report of a results folder.

A figure that cannot be drawn is a warning naming it; the other files are still written.
"""

from __future__ import annotations

import json
import os

from ppl_bmc.cli.common import SUMMARY_ROWS, UsageError, fmt, signals_deferred, warn
from ppl_bmc.cli.config import read_toml
from ppl_bmc.cli.folders import read_truth, write_text
from ppl_bmc.cli.protocol import load_model
from ppl_bmc.cli.report import RHAT_MAX, plain_report, verdict

def summarize_command(args) -> int:
    folder = os.path.abspath(args.folder)
    if not os.path.isdir(folder):
        raise UsageError(f"results folder {args.folder} does not exist")
    if not os.path.isfile(os.path.join(folder, "posterior.nc")):
        raise UsageError(f"results folder {args.folder} has no posterior.nc (run ppl-bmc fit first)")
    if args.rows < 0:
        raise UsageError(f"--rows must be >= 0 (0 prints every row), got {args.rows}")
    summarize_folder(folder, module=_model_of_results(folder), var_names=args.var_names, max_rows=args.rows)
    return 0


def _fit_doc(folder) -> dict:
    path = os.path.join(folder, "fit.toml")
    try:
        return read_toml(path) if os.path.isfile(path) else {}
    except UsageError:
        return {}


def _model_of_results(folder):
    """The model module named in ``fit.toml`` (None if it cannot be loaded)."""
    model_path = _fit_doc(folder).get("paths", {}).get("model")
    if not model_path or not os.path.isfile(model_path):
        return None
    try:
        return load_model(model_path)
    except Exception:  # noqa: BLE001 - the figures fall back to all variables
        return None


def _var_names(module, post, requested=None):
    if requested:
        bad = [v for v in requested if v not in post.data_vars]
        if bad:
            raise UsageError(f"unknown variable(s) {', '.join(bad)}; the posterior has {', '.join(post.data_vars)}")
        return list(requested)
    names = [v for v in (getattr(module, "VAR_NAMES", None) or []) if v in post.data_vars]
    return names or list(post.data_vars)


def _draw_table(post, items):
    """mean, sd, 94 % equal-tailed interval of each element from its draws (Laplace)."""
    import numpy as np
    import pandas as pd

    rows = []
    for label, site, idx in items:
        x = np.asarray(post[site].values)[(slice(None), slice(None)) + idx].ravel()
        lo, hi = np.quantile(x, [0.03, 0.97])
        rows.append((x.mean(), x.std(ddof=1), lo, hi))
    return pd.DataFrame(rows, index=[i[0] for i in items], columns=["mean", "sd", "ci_lower", "ci_upper"])


def _map_table(post, items, curvature):
    """The MAP point and its curvature sd and 94 % interval (``diagnostics.json``)."""
    import numpy as np
    import pandas as pd

    sites = (curvature or {}).get("sites", {})
    rows = []
    for label, site, idx in items:
        value = float(np.asarray(post[site].values)[(0, 0) + idx])
        part = sites.get(site)
        if part:
            sd, lo, hi = (float(np.asarray(part[k])[idx]) for k in ("sd", "ci_lower", "ci_upper"))
        else:
            sd = lo = hi = float("nan")
        rows.append((value, sd, lo, hi))
    return pd.DataFrame(rows, index=[i[0] for i in items], columns=["map", "sd", "ci_lower", "ci_upper"])


def _column(table, items, column):
    import numpy as np

    if column not in table.columns:
        return np.full(len(items), np.nan)
    return np.array([float(table[column].get(label, np.nan)) for label, _, _ in items])


def _inside_masks(module, config, post, items):
    """Per element, whether it lies inside its site's ``MAPS`` mask (cells outside the scene carry
    only the prior: never worth a panel); True where a site has no mask."""
    import numpy as np

    keep = np.ones(len(items), dtype=bool)
    for site, spec in (getattr(module, "MAPS", None) or {}).items():
        if not callable(spec.get("mask")) or site not in post:
            continue
        shape = tuple(post[site].shape[2:])
        try:
            mask = np.asarray(spec["mask"](config, shape), dtype=bool)
        except Exception:  # noqa: BLE001 - the map figure names the failure
            continue
        for i, (_, s, idx) in enumerate(items):
            if s == site and mask.shape == shape and len(idx) == mask.ndim:
                keep[i] = bool(mask[idx])
    return keep


def _deviation_scores(table, items, centre_col):
    """|value − median of its site| / sd: the elements that stand out of a field."""
    import numpy as np

    values = _column(table, items, centre_col)
    sd = _column(table, items, "sd")
    scores = np.zeros(len(items))
    for site in {s for _, s, _ in items}:
        sel = np.array([s == site for _, s, _ in items])
        med = np.nanmedian(values[sel])
        scores[sel] = np.abs(values[sel] - med) / np.where(sd[sel] > 0, sd[sel], np.inf)
    return scores


def summarize_folder(folder, *, module=None, var_names=None, quiet_warnings=False, max_rows=SUMMARY_ROWS):
    """Write summary.csv, the figures and report.txt of ``folder/posterior.nc``; print the table
    (at most ``max_rows`` rows, worst r̂ first; 0 = all), the diagnostics and the report."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    import pandas as pd

    from ppl_bmc import infer
    from ppl_bmc._io import atomic_write
    from ppl_bmc.infer import figures

    try:
        data_tree = infer.from_netcdf(os.path.join(folder, "posterior.nc"))
    except Exception as err:  # noqa: BLE001 - a damaged file: one line
        raise UsageError(f"cannot read {os.path.join(folder, 'posterior.nc')}: {err}") from None
    post = infer.group(data_tree, "posterior")
    fit_doc = _fit_doc(folder)
    report_path = os.path.join(folder, "diagnostics.json")
    try:
        report = json.load(open(report_path, encoding="utf-8")) if os.path.isfile(report_path) else {}
    except (OSError, ValueError):
        report = {}
    method = report.get("method") or fit_doc.get("fit", {}).get("method") or post.attrs.get("method", "nuts")
    config = fit_doc.get("model", {})
    data_dir = fit_doc.get("paths", {}).get("data", "")
    truth = read_truth(data_dir)
    names = _var_names(module, post, var_names)
    items = figures.elements(post, names)
    labels, units = getattr(module, "LABELS", None), getattr(module, "UNITS", None)
    mcmc = method in ("nuts", "hmc")
    inside = _inside_masks(module, config, post, items)  # elements outside the scene come last
    if mcmc:
        table = infer.summary(data_tree, var_names=names)
        chosen = figures.pick_elements(items, np.where(inside, _column(table, items, "r_hat"), np.nan))
        what = "the sites with the largest r̂" if len(chosen) < len(items) else ""
    elif method == "laplace":
        table = _draw_table(post, items)
        chosen = figures.pick_elements(items, np.where(inside, _deviation_scores(table, items, "mean"), np.nan))
        what = "the sites farthest from their field's median" if len(chosen) < len(items) else ""
    else:
        table = _map_table(post, items, (report.get("map") or {}).get("curvature"))
        chosen = figures.pick_elements(items, np.where(inside, _deviation_scores(table, items, "map"), np.nan))
        what = "the sites farthest from their field's median" if len(chosen) < len(items) else ""
    shown_note = f" ({len(chosen)} of {len(items)} elements: {what})" if what else ""
    written = []

    def figure(name, make):
        """Draw and write one figure; a failure is a warning naming it.  Signals wait only while
        the file is written (drawing may take seconds; a scheduler's SIGTERM must not wait)."""
        import matplotlib.pyplot as plt

        try:
            fig = make()
            with signals_deferred():
                atomic_write(os.path.join(folder, name), lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
            written.append(name)
        except Exception as err:  # noqa: BLE001 - a figure must never cost the fit's other outputs
            warn(f"figure {name} was not drawn: {type(err).__name__}: {' '.join(str(err).split())}")
        finally:
            plt.close("all")

    with signals_deferred():
        atomic_write(os.path.join(folder, "summary.csv"), lambda tmp: table.to_csv(tmp))
    if mcmc:
        figure("trace.png", lambda: figures.trace_figure(
            post, chosen, truth=truth, labels=labels, units=units,
            title=f"{method}: posterior per chain{shown_note}"))
        if post.sizes["chain"] >= 2 and post.sizes["draw"] >= 4:
            figure("rank.png", lambda: figures.rank_figure(post, chosen, labels=labels, units=units,
                                                           title=f"rank histograms per chain{shown_note}"))
    elif method == "laplace":
        figure("trace.png", lambda: figures.trace_figure(
            post, chosen, truth=truth, labels=labels, units=units,
            title=f"laplace: independent draws of the Gaussian at the mode{shown_note}"))
    else:
        pts = [(label, site, idx, row["map"], _nan_none(row["sd"]), _nan_none(row["ci_lower"]),
                _nan_none(row["ci_upper"])) for (label, site, idx), (_, row) in
               zip(chosen, table.loc[[c[0] for c in chosen]].iterrows())]
        figure("trace.png", lambda: figures.point_figure(
            pts, truth=truth, labels=labels, units=units,
            title=f"MAP point, curvature sd and 94 % interval{shown_note}"))
    for site, spec in (getattr(module, "MAPS", None) or {}).items():
        if site in post.data_vars:
            _site_maps(figure, figures, site, spec, post, table, method, config, truth, report)

    shown = table
    if max_rows and len(table) > max_rows:
        sort_cols = ["r_hat", "ess_bulk"] if "r_hat" in table.columns else ["sd"]
        order = table.sort_values(sort_cols, ascending=[False, True][: len(sort_cols)], na_position="last").index
        shown = table.loc[order[:max_rows]]
        by = "largest r_hat" if "r_hat" in table.columns else "largest sd"
        print(f"{len(table)} rows; the {max_rows} with the {by} (all in summary.csv; --rows 0 prints all):")
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        print(shown.round(4).to_string())
    _print_diagnostics(report)
    text = plain_report(folder, method, post, items, table, report, truth, fit_doc, labels, units,
                        description=((getattr(module, "__doc__", None) or "").strip().splitlines() or [""])[0])
    write_text(os.path.join(folder, "report.txt"), text)
    written.append("report.txt")
    print(text, end="")
    if not quiet_warnings:
        for line in report.get("warnings", []):
            warn(line)
    print(f"wrote {', '.join(['summary.csv'] + written)} in {folder}")
    return written


def _nan_none(x):
    import math

    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _site_maps(figure, figures, site, spec, post, table, method, config, truth, report):
    """mean/sd (or MAP point/sd) maps of one site in physical units, and r̂/ESS maps (MCMC)."""
    import numpy as np

    values = np.asarray(post[site].values, dtype=float)
    full_shape, cut = values.shape[2:], (lambda a: a)
    if values.ndim == 5 and spec.get("section"):  # a 3-D site: one section of it
        axis = int(spec["section"]["axis"])
        n_axis = full_shape[axis]
        index = int(spec["section"].get("index", min(n_axis - 1, int(spec["section"].get("at", 0.5) * n_axis))))
        cut = lambda a: None if a is None else np.take(a, index, axis=np.ndim(a) - 3 + axis)
        values = cut(values)
    if values.ndim != 4:
        warn(f"MAPS[{site!r}]: the site is not 2-D (shape {values.shape[2:]}) and has no 'section'; no map drawn")
        return
    shape = values.shape[2:]
    exp = spec.get("transform") == "exp"
    qty, unit = spec.get("label", site), spec.get("unit", "")
    unit_txt = f" ({unit})" if unit else ""
    mask = None
    if callable(spec.get("mask")):
        try:
            mask = cut(np.asarray(spec["mask"](config, full_shape), dtype=bool))
        except Exception as err:  # noqa: BLE001
            warn(f"MAPS[{site!r}]: the mask could not be computed ({err}); the whole grid is drawn")
    t = truth.get(spec.get("truth")) if spec.get("truth") else None
    common = dict(extent=spec.get("extent"), xlabel=spec.get("xlabel", "x (m)"), ylabel=spec.get("ylabel", "z (m)"),
                  mask=mask, truth=t, truth_extent=spec.get("truth_extent"))
    flat = values.reshape((-1,) + shape)
    phys = np.exp(flat) if exp else flat
    if method == "map":
        centre, centre_name = phys[0], "MAP"
        part = ((report.get("map") or {}).get("curvature") or {}).get("sites", {}).get(site)
        sd = cut(np.asarray(part["sd"], dtype=float)) if part else None
        if sd is not None and exp:
            sd = centre * sd  # delta method: sd(exp x) ≈ exp(x)·sd(x)
        sd_name = "curvature sd at the MAP" + (" (delta method)" if exp else "")
    else:
        centre, centre_name = phys.mean(0), "posterior mean"
        sd, sd_name = phys.std(0, ddof=1), "posterior sd"
    title = spec.get("title", qty)
    figure(f"mean_{site}.png", lambda: figures.map_figure(
        centre, title=f"{centre_name} of {title}", colorbar_label=f"{qty}{unit_txt}", **common))
    if sd is not None:
        figure(f"sd_{site}.png", lambda: figures.map_figure(
            sd, title=f"{sd_name} of {title}", colorbar_label=f"sd of {qty}{unit_txt}", cmap="magma", **common))
    if method in ("nuts", "hmc") and "r_hat" in table.columns:
        grids = {}
        for col in ("r_hat", "ess_bulk"):
            grid = np.full(full_shape, np.nan)
            for label, value in table[col].items():
                parsed = figures.parse_label(label)
                if parsed and parsed[0] == site and len(parsed[1]) == len(full_shape):
                    grid[parsed[1]] = value
            grids[col] = cut(grid)
        common_nt = dict(common, truth=None)
        figure(f"rhat_{site}.png", lambda: figures.map_figure(
            grids["r_hat"], title=f"r̂ per cell of {site} (≤ {RHAT_MAX} is good)", colorbar_label="r̂",
            cmap="RdYlGn_r", vmin=1.0, vmax=max(1.05, float(np.nanmax(grids["r_hat"]))), **common_nt))
        figure(f"ess_{site}.png", lambda: figures.map_figure(
            grids["ess_bulk"], title=f"bulk ESS per cell of {site}", colorbar_label="effective sample size",
            cmap="RdYlGn", vmin=0.0, **common_nt))


def _print_diagnostics(report):
    diag = report.get("diagnostics") or {}
    if diag:
        print(f"diagnostics: r_hat max {fmt(diag.get('r_hat_max'))}, ESS bulk/tail min "
              f"{fmt(diag.get('ess_bulk_min'), 0)}/{fmt(diag.get('ess_tail_min'), 0)}, "
              f"{diag.get('divergences', 0)} divergences, BFMI {', '.join(fmt(b, 2) for b in diag.get('bfmi', []))}"
              + (f", tree depth max {diag['tree_depth_max']} (limit {diag['max_tree_depth']}, "
                 f"{diag['max_tree_depth_hits']} hits)" if diag.get("tree_depth_max") is not None else ""))
    lap = report.get("laplace")
    if lap:
        print(f"laplace: Hessian {'positive definite' if lap['positive_definite'] else 'NOT positive definite'}, "
              f"importance efficiency {fmt(lap['importance_efficiency'], 2)}, MAP converged: {lap['map_converged']}")
    point = report.get("map")
    if point:
        print(f"map: converged: {point['converged']}, final loss {fmt(point['final_loss'], 4)}")
    noise = report.get("mc_noise")
    if noise:
        bins = noise.get("bin_error")
        print(f"MC noise: ratio {fmt(noise['ratio'], 3)} (threshold {noise['threshold']}), sd(l1 - l2) "
              f"{fmt(noise['sd_diff'], 3)} nats, sd(l) {fmt(noise['sd_loglik'], 3)} nats over "
              f"{noise['num_draws']} draws; posterior-mean shift between keys {fmt(noise.get('shift'), 3)} posterior sd "
              f"(threshold {noise.get('shift_threshold')})"
              + ("" if bins is None else f"; per-bin MC error {fmt(bins, 3)} Poisson sd (worst bin "
                 f"{fmt(noise.get('bin_error_max'), 3)}, threshold {noise.get('bin_threshold')})")
              + f" -> {'FLAGGED' if noise['flagged'] else 'ok'}")


__all__ = ["plain_report", "summarize_command", "summarize_folder", "verdict"]  # the last two from cli.report
