"""The plain-language report of a fit and its verdict: what was fitted, truth vs estimate, whether
the diagnostics pass (a failed check says what is wrong), the files."""

from __future__ import annotations

import os

from ppl_bmc.cli.common import fmt

#: r̂ above this, or bulk ESS below ``ESS_PER_CHAIN`` per chain, fails the MCMC verdict
#: (Vehtari et al. 2021, "Rank-normalization, folding, and localization", Bayesian Analysis 16).
RHAT_MAX = 1.01
ESS_PER_CHAIN = 100
#: Scalar elements listed one by one in the report (larger sites are summarised in one line).
REPORT_ELEMENTS = 10


def verdict(method, report, n_chains, table=None) -> tuple[bool, list[str]]:
    """``(ok, reasons)``: whether the fit's diagnostics pass, and what fails (or what passed).
    MCMC r̂ and ESS come from ``diagnostics.json``, else from the summary ``table``."""
    problems, passed = [], []

    def check(ok, good, bad):  # a failed check says what is wrong, not what was wanted
        (passed if ok else problems).append(good if ok else bad)

    if method in ("nuts", "hmc"):
        diag = report.get("diagnostics") or {}
        rhat, ess, div = diag.get("r_hat_max"), diag.get("ess_bulk_min"), diag.get("divergences", 0)
        if rhat is None and table is not None and "r_hat" in table.columns:
            rhat, ess = float(table["r_hat"].max()), float(table["ess_bulk"].min())
        need = ESS_PER_CHAIN * n_chains
        (passed if rhat is not None and rhat <= RHAT_MAX else problems).append(f"max r̂ {fmt(rhat, 4)} (want ≤ {RHAT_MAX})")
        (passed if ess is not None and ess >= need else problems).append(f"min bulk ESS {fmt(ess, 0)} (want ≥ {need})")
        (passed if not div else problems).append(f"{div} divergent transitions (want 0)")
    elif method == "laplace":
        lap = report.get("laplace") or {}
        check(lap.get("positive_definite"), "Hessian positive definite", "Hessian not positive definite")
        eff = lap.get("importance_efficiency")
        (passed if eff is not None and eff >= 0.5 else problems).append(
            f"importance efficiency {fmt(eff, 2)} (want ≥ 0.5: the posterior is close to Gaussian)")
        check(lap.get("map_converged"), "the MAP optimisation converged", "the MAP optimisation did not converge")
    else:
        point = report.get("map") or {}
        check(point.get("converged"), "the MAP optimisation converged", "the MAP optimisation did not converge")
        curv = point.get("curvature")
        if curv is not None:
            check(curv.get("positive_definite"), "Hessian at the point positive definite",
                  "Hessian at the point not positive definite")
    noise = report.get("mc_noise")
    if noise:
        bins = noise.get("bin_error")
        (passed if not noise.get("flagged") else problems).append(
            f"Monte-Carlo noise ratio {fmt(noise.get('ratio'), 2)} (want ≤ {noise.get('threshold')}), posterior-mean "
            f"shift between likelihood keys {fmt(noise.get('shift'), 2)} sd (want ≤ {noise.get('shift_threshold')})"
            + ("" if bins is None else f", per-bin MC error {fmt(bins, 2)} Poisson sd (want ≤ "
               f"{noise.get('bin_threshold')})"))
    return (not problems), (problems or passed)


def plain_report(folder, method, post, items, table, report, truth, fit_doc, labels=None, units=None,
                 description="") -> str:
    """The plain-language report: what was fitted, truth vs estimate, the verdict, the files."""
    import numpy as np

    from ppl_bmc.infer.figures import _label

    model_name = os.path.splitext(os.path.basename(fit_doc.get("paths", {}).get("model", "") or "model"))[0]
    fit = fit_doc.get("fit", {})
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    how = {"nuts": f"NUTS, {n_chain} chain(s) × {n_draw} draws after {fit.get('warmup', '?')} warmup",
           "hmc": f"HMC, {n_chain} chain(s) × {n_draw} draws after {fit.get('warmup', '?')} warmup",
           "laplace": f"Laplace approximation, {n_draw} draws of the Gaussian at the mode",
           "map": "MAP point (SVI)" + (" with its curvature sd" if (report.get("map") or {}).get("curvature")
                                       else " (no uncertainty: curvature sd not computed)")}.get(method, method)
    lines = ["", f"Report: {model_name} fitted by {how}"] + ([f"  model: {description}"] if description else []) + [
             f"  data: {fit_doc.get('paths', {}).get('data', '?')}"
             + (f"; wall time {fit_doc['run']['elapsed_s']:.1f} s" if fit_doc.get("run", {}).get("elapsed_s") else "")]
    centre = "map" if method == "map" else "mean"
    lines.append(f"  {'parameter':<28} {'truth':>10} {'estimate ± sd':>22} {'94 % interval':>24}  truth inside")
    per_site = {}
    for label, site, idx in items:
        per_site.setdefault(site, []).append((label, idx))
    for site, elems in per_site.items():
        t_site = truth.get(site) if truth else None
        if len(elems) <= REPORT_ELEMENTS:
            for label, idx in elems:
                row = table.loc[label] if label in table.index else None
                if row is None:
                    continue
                t = None
                if t_site is not None:
                    tv = np.asarray(t_site, dtype=float)
                    try:
                        t = float(tv[idx]) if idx else float(tv.reshape(-1)[0])
                    except (IndexError, ValueError):
                        t = None
                has_ci = bool(np.isfinite(row["ci_lower"]) and np.isfinite(row["ci_upper"]))
                inside = "" if t is None or not np.isfinite(t) or not has_ci else \
                    ("yes" if row["ci_lower"] <= t <= row["ci_upper"] else "NO")
                est = f"{row[centre]:.4g}" + (f" ± {row['sd']:.2g}" if np.isfinite(row["sd"]) else "")
                ci = f"[{row['ci_lower']:.4g}, {row['ci_upper']:.4g}]" if has_ci else "n/a"
                name = _label(label, labels, units, site, idx)
                lines.append(f"  {name:<28} {('' if t is None else f'{t:.4g}'):>10} {est:>22} {ci:>24}  {inside}")
        else:
            rows = table.loc[[label for label, _ in elems if label in table.index]]
            text = (f"  {site}: {len(elems)} cells, estimate {rows[centre].min():.4g} … {rows[centre].max():.4g}, "
                    f"sd {rows['sd'].median():.2g} (median)")
            if t_site is not None and np.shape(t_site) == post[site].shape[2:]:
                tv = np.asarray(t_site, dtype=float)
                t = np.array([tv[idx] for _, idx in elems])
                lo, hi = rows["ci_lower"].to_numpy(), rows["ci_upper"].to_numpy()
                ok = np.isfinite(t) & np.isfinite(lo) & np.isfinite(hi)
                inside = (lo <= t) & (t <= hi)
                if ok.any():
                    text += f"; truth inside the 94 % interval in {100 * inside[ok].mean():.0f} % of {int(ok.sum())} cells"
            lines.append(text)
    ok, reasons = verdict(method, report, n_chain, table)
    lines.append(f"  verdict: {'GOOD' if ok else 'NEEDS ATTENTION'}: " + "; ".join(reasons))
    if not ok and method in ("nuts", "hmc"):
        lines.append("  (run longer: raise --warmup/--samples, or --target-accept 0.9 for divergences)")
    files = sorted({f for f in os.listdir(folder) if not f.startswith(".")} | {"report.txt"})
    lines.append(f"  files in {folder}: {', '.join(files)}")
    return "\n".join(lines) + "\n"


__all__ = ["RHAT_MAX", "ESS_PER_CHAIN", "verdict", "plain_report"]
