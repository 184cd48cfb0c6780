"""``ppl-bmc fit``: check everything, then fit (MAP, Laplace, NUTS, HMC), then write the results.

Order matters: options, config files, model keys, the data file and the output folder are
checked before JAX is imported, so that a mistake costs well under a second; the host device
count for parallel chains is set before JAX starts.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os

from ppl_bmc.cli.common import (
    CHECKPOINT,
    FIT_DEFAULTS,
    MAP_PREFIXES,
    EXIT_SIGTERM,
    RESULT_FILES,
    Terminated,
    UsageError,
    note,
    progress_enabled,
    signals_deferred,
    stderr,
    warn,
)
from ppl_bmc.cli.config import config_tables, resolve_fit_config, to_toml
from ppl_bmc.cli.folders import check_data, check_out, read_data, sha256, versions, write_text
from ppl_bmc.cli.protocol import load_model, model_defaults, resolve_model


def check_support(model, kwargs: dict) -> None:
    """Observed values must lie in the support of their site's distribution (e.g. counts ≥ 0
    for a Poisson site)."""
    import numpy as np
    from numpyro.distributions import constraints

    from ppl_bmc.infer.predictive import trace_model

    tr = trace_model(model, **kwargs)
    for name, site in tr.items():
        if site["type"] != "sample" or not site["is_observed"]:
            continue
        support = site["fn"].support
        while isinstance(support, constraints.independent):  # check element by element
            support = support.base_constraint
        value = np.asarray(site["value"])
        try:
            inside = np.broadcast_to(np.asarray(support(value)), value.shape)
        except (ValueError, NotImplementedError, TypeError):  # e.g. a dependent constraint: no check
            continue
        if not np.all(inside):
            idx = tuple(int(i) for i in np.argwhere(~inside)[0])
            raise UsageError(f"observed {name} is outside the support of its {type(site['fn']).__name__} distribution "
                             f"(e.g. {value[idx]} at index {idx})")


def _host_devices_for_chains(n: int) -> None:
    """Ask XLA for ``n`` CPU devices (parallel chains) through ``XLA_FLAGS``, as
    ``numpyro.set_host_device_count`` does, without importing anything: read when JAX starts."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    os.environ["XLA_FLAGS"] = " ".join([f"--xla_force_host_platform_device_count={n}"] + flags)


def _check_hosts(args, fit, defaults, model_cfg, explicit) -> bool:
    """Several hosts (``--coordinator``, ``--num-processes``, ``--process-id``): checked before JAX
    starts; the model's BMC likelihood is split over all of them (its ``devices`` option, 'all'
    unless given).  Returns whether this is a several-host fit."""
    from ppl_bmc._hosts import check_hosts

    try:
        hosts = check_hosts(args.coordinator, args.num_processes, args.process_id,
                            names=("--coordinator", "--num-processes", "--process-id"))
    except ValueError as err:
        raise UsageError(f"{err} (several hosts need all three)") from None
    if not hosts or args.num_processes == 1:
        return hosts
    if "devices" not in defaults:
        raise UsageError("several hosts: the model has no 'devices' option, so its likelihood cannot be split "
                         "over hosts; run it in one process")
    if fit["method"] in ("nuts", "hmc") and fit["chain_method"] == "parallel":
        raise UsageError("several hosts: --chain-method parallel is not available (the chains run vectorised in "
                         "every process; the likelihood is what is split)")
    if "devices" not in explicit["model"]:
        model_cfg["devices"] = "all"
    return hosts


def fit_command(args) -> int:
    """``ppl-bmc fit``: returns the exit status (0, 130 on Ctrl-C, 143 on SIGTERM)."""
    # Options, config files, model keys, the data file and the output folder are checked before
    # JAX is imported, so mistakes answer at once; the host device count (parallel chains on CPU)
    # is set before anything can start JAX (a model file that builds arrays at import would).
    tables = config_tables(args.config, ("model", "fit"))
    probe = tables.get("fit", {})
    model_path = resolve_model(args.model)
    data_dir = args.data if args.data is not None else probe.get("data", "")
    data_dir = data_dir if isinstance(data_dir, str) else ""
    data, data_config = read_data(data_dir)
    chains = args.chains if args.chains is not None else probe.get("chains", FIT_DEFAULTS["chains"])
    out_probe = args.out if args.out is not None else probe.get("out", "")
    if args.resume and isinstance(out_probe, str) and os.path.isfile(os.path.join(out_probe, CHECKPOINT)):
        from ppl_bmc.infer.checkpoint import Checkpoint  # imports JAX without starting it: XLA_FLAGS still apply

        with contextlib.suppress(Exception):
            chains = Checkpoint.load(os.path.join(out_probe, CHECKPOINT)).num_chains
    defaults = model_defaults(model_path)
    fit, model_cfg, explicit = resolve_fit_config(args, defaults, data_config)
    hosts = _check_hosts(args, fit, defaults, model_cfg, explicit)
    if isinstance(chains, int) and not isinstance(chains, bool) and chains > 1 and not hosts:
        _host_devices_for_chains(chains)  # no effect once JAX has started (e.g. in-process tests)
    primary = not hosts or args.process_id == 0  # the process that writes (several hosts: process 0)
    out_existed = bool(fit["out"]) and os.path.exists(fit["out"])
    out = check_out(fit["out"], force=args.force, resume=args.resume) if primary else fit["out"]
    if hosts:  # after the folder's checks: a refused command leaves before joining
        from ppl_bmc.transport.sharding import join_hosts

        join_hosts(args.coordinator, args.num_processes, args.process_id)
    ckpt_path = os.path.join(out, CHECKPOINT)
    try:
        if args.resume and not os.path.isfile(ckpt_path):
            raise UsageError(f"nothing to resume in {out}: no {CHECKPOINT} (the fit finished, or never saved a block)")
        from ppl_bmc._cache import enable_compilation_cache

        enable_compilation_cache()  # a second fit of the same model and sizes compiles nothing
        module = load_model(model_path)
        check_data(module, data)  # the observed sites and the model's own checks need the model
    except UsageError:
        if not out_existed and os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)  # leave no empty folder behind a refused command
        raise
    data_hash = sha256(os.path.join(data_dir, "data.npz"))

    from ppl_bmc import infer

    resume = None
    if args.resume:
        try:
            resume = infer.Checkpoint.load(ckpt_path)
        except Exception as err:  # noqa: BLE001 - a damaged file: one line, no traceback
            raise UsageError(f"cannot read the checkpoint {ckpt_path}: {err}") from None
        fit, model_cfg = _resume_config(resume, fit, model_cfg, explicit, module, data_hash)

    import jax

    seed = fit["seed"]
    k_lik, k_run, k_pred, k_noise = jax.random.split(jax.random.key(seed), 4)
    try:
        model, kwargs = module.build(dict(model_cfg), data, key=k_lik)
    except ValueError as err:
        raise UsageError(f"build: {err}") from None
    check_support(model, kwargs)
    progress = progress_enabled(fit["progress"])
    meta = {"fit": fit, "model": model_cfg, "model_path": module.__ppl_bmc_path__,
            "data": os.path.abspath(data_dir), "data_sha256": data_hash}
    method = fit["method"]
    batch = fit["batch_size"] or None
    t0 = _now()
    resume_cmd = _resume_command(args, out)
    saved = [resume is not None]  # a checkpoint of this run exists

    def save_checkpoint(ckpt):
        if primary:  # several hosts: every process holds the same chains; process 0 saves them
            ckpt.save(ckpt_path)
            saved[0] = True

    try:
        if method in ("nuts", "hmc"):
            note(f"{method}: {fit['chains']} chain(s) × ({fit['warmup']} warmup + {fit['samples']} draws)"
                  + (f", resuming after {resume.iteration} iterations" if resume else ""))
            result = infer.run_mcmc(
                model, rng_key=k_run, num_warmup=fit["warmup"], num_samples=fit["samples"], num_chains=fit["chains"],
                chain_method=None if fit["chain_method"] == "auto" else fit["chain_method"], kernel=method,
                dense_mass=fit["dense_mass"], target_accept_prob=fit["target_accept"],
                max_tree_depth=fit["max_tree_depth"], num_steps=fit["hmc_steps"] or None,
                block_size=fit["block"] or None, checkpoint=save_checkpoint, resume=resume,
                progress_bar=progress, meta=meta, **kwargs)
            draws = {k: result.samples[k] for k in result.z}
        elif method == "laplace":
            note(f"laplace: MAP ({fit['map_steps']} SVI steps), Hessian, {fit['samples']} draws")
            result = infer.laplace(model, rng_key=k_run, num_samples=fit["samples"], num_steps=fit["map_steps"],
                                   learning_rate=fit["learning_rate"], progress_bar=progress, batch_size=batch, **kwargs)
            draws = {k: v[None] for k, v in result.samples.items() if k in result.z}
        else:
            note(f"map: {fit['map_steps']} SVI steps" + (", then the curvature sd at the point" if fit["map_sd"] else ""))
            result = infer.fit_map(model, rng_key=k_run, num_steps=fit["map_steps"], learning_rate=fit["learning_rate"],
                                   progress_bar=progress, **kwargs)
            draws = None
        data_tree = infer.to_inference_data(result, rng_key=k_pred, batch_size=batch, dims=getattr(module, "DIMS", None),
                                            attrs={"model": os.path.basename(module.__ppl_bmc_path__), "seed": seed})
        report = _fit_report(infer, method, result, data_tree, draws, module, model_cfg, data, model, kwargs,
                             k_noise, fit, batch)
    except KeyboardInterrupt as err:
        how = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
        stderr(f"ppl-bmc: {how}; the earlier files in {out} are untouched.")
        if saved[0] and method in ("nuts", "hmc") and os.path.isfile(ckpt_path):
            try:
                done = infer.Checkpoint.load(ckpt_path)
                stderr(f"ppl-bmc: {min(done.num_draws, done.num_samples)} of {done.num_samples} draws per chain "
                        f"({done.iteration} iterations with warmup) are saved in {os.path.join(out, '.resume')}.")
            except Exception:  # noqa: BLE001
                pass
            stderr(f"ppl-bmc: resume with: {resume_cmd}")
        else:
            stderr("ppl-bmc: nothing was saved to resume from: run the same command again to start over.")
        return EXIT_SIGTERM if isinstance(err, Terminated) else 130
    except ValueError as err:
        raise UsageError(f"{method}: {err}") from None
    report["elapsed_s"] = round(_now() - t0, 3)
    if not primary:
        print(f"{method} fit of {os.path.basename(module.__ppl_bmc_path__)}: process {args.process_id} of "
              f"{args.num_processes} done in {report['elapsed_s']:.1f} s; process 0 writes the results to {out}")
        return 0
    try:
        # A signal while these files are written is held until they all are (signals_deferred),
        # then lands here: the fit is saved, only the summary and figures are skipped.
        _write_fit_outputs(out, data_tree, report, fit, model_cfg, module, data_dir, data_hash)
        for line in report["warnings"]:
            warn(line)
        print(f"{method} fit of {os.path.basename(module.__ppl_bmc_path__)} in {report['elapsed_s']:.1f} s -> {out}")
        from ppl_bmc.cli.summarize import summarize_folder

        summarize_folder(out, module=module, quiet_warnings=True)
    except KeyboardInterrupt as err:
        how = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
        stderr(f"ppl-bmc: {how} after the fit: its results are in {out}; the summary and figures were skipped "
               f"(write them with: ppl-bmc summarize {out})")
        return EXIT_SIGTERM if isinstance(err, Terminated) else 130
    return 0


def _now():
    import time

    return time.perf_counter()


def _resume_command(args, out) -> str:
    import shlex

    argv = list(getattr(args, "_argv", []))
    if not argv:
        return f"ppl-bmc fit ... --out {out} --resume"
    argv = [a for a in argv if a not in ("--force", "--resume")]
    return "ppl-bmc " + " ".join(shlex.quote(a) for a in argv) + " --resume"


def _resume_config(ckpt, fit, model_cfg, explicit, module, data_hash):
    meta = ckpt.meta or {}
    saved_fit, saved_model = dict(meta.get("fit", {})), dict(meta.get("model", {}))
    if meta.get("model_path") and os.path.abspath(meta["model_path"]) != os.path.abspath(module.__ppl_bmc_path__):
        raise UsageError(f"--resume: the interrupted fit used the model {meta['model_path']}, not {module.__ppl_bmc_path__}")
    if meta.get("data_sha256") and meta["data_sha256"] != data_hash:
        raise UsageError("--resume: the data changed since the interrupted fit (data.npz differs); start over with --force")
    changeable = {"samples", "progress", "data", "out", "batch_size", "mc_noise_draws", "mc_noise_keys",
                  "mc_noise_threshold"}
    for key, value in explicit["fit"].items():
        if key not in changeable and key in saved_fit and saved_fit[key] != value:
            raise UsageError(f"--resume: {key} = {value!r} differs from the interrupted fit's {saved_fit[key]!r}; "
                             f"only samples may change (or start over with --force)")
    for key, value in explicit["model"].items():
        if key in saved_model and saved_model[key] != value:
            raise UsageError(f"--resume: model option {key} = {value!r} differs from the interrupted fit's "
                             f"{saved_model[key]!r}; start over with --force")
    new_fit = dict(saved_fit or fit)
    for key in changeable:
        new_fit[key] = fit[key]
    return new_fit, (saved_model or model_cfg)


def _fit_report(infer, method, result, data_tree, draws, module, model_cfg, data, model, kwargs, k_noise, fit, batch):
    import jax
    import numpy as np

    report = {"method": method, "warnings": []}
    if method in ("nuts", "hmc"):
        from ppl_bmc.cli.summarize import _var_names

        diag = infer.diagnostics(data_tree, var_names=_var_names(module, infer.group(data_tree, "posterior")),
                                 max_tree_depth=fit["max_tree_depth"] if method == "nuts" else None)
        report["diagnostics"] = diag.as_dict()
        report["warnings"] += diag.warnings
        report["chain_method"] = result.chain_method
    elif method == "laplace":
        report["laplace"] = {"positive_definite": result.positive_definite,
                             "importance_efficiency": result.importance_efficiency,
                             "map_converged": result.map.converged}
        if not result.positive_definite:
            report["warnings"].append("laplace: the Hessian at the mode is not positive definite")
        if result.importance_efficiency < 0.5:
            report["warnings"].append(f"laplace: importance efficiency {result.importance_efficiency:.2f} < 0.5: the "
                                      f"posterior is far from Gaussian; use nuts")
        if not result.map.converged:
            report["warnings"].append("laplace: the SVI MAP did not converge (raise map_steps)")
    else:
        report["map"] = {"converged": result.converged, "final_loss": float(result.losses[-1]),
                         "params": {k: np.asarray(v).tolist() for k, v in result.params.items()}}
        if not result.converged:
            report["warnings"].append("map: SVI did not converge (raise map_steps or learning_rate)")
        if fit["map_sd"]:
            try:
                report["map"]["curvature"] = _map_curvature(infer, model, result, kwargs, k_noise, batch,
                                                            report["warnings"])
            except Exception as err:  # noqa: BLE001 - optional: the MAP point itself is still written
                report["map"]["curvature"] = None
                report["warnings"].append(f"map: the curvature sd could not be computed "
                                          f"({type(err).__name__}: {' '.join(str(err).split())})")
    report["mc_noise"] = None
    if draws is not None and fit["mc_noise_draws"]:
        ll = infer.group(data_tree, "log_likelihood")
        total = sum(np.asarray(ll[v].values).reshape(ll[v].shape[:2] + (-1,)).sum(-1) for v in ll.data_vars)
        alts = []
        for k in jax.random.split(k_noise, fit["mc_noise_keys"]):
            alts.append(module.build(dict(model_cfg), data, key=k))
        noise = infer.mc_noise(model, draws, model_kwargs=kwargs, alt_model=[m for m, _ in alts],
                               alt_model_kwargs=[kw for _, kw in alts], loglik=total,
                               threshold=fit["mc_noise_threshold"], max_draws=fit["mc_noise_draws"],
                               batch_size=batch, warn=False)
        report["mc_noise"] = noise.as_dict()
        if noise.flagged:
            report["warnings"].append(noise.message)
    return report


def _map_curvature(infer, model, result, kwargs, key, batch, warnings_out, num_samples=400):
    """The MAP point's uncertainty from the curvature: the Laplace Gaussian at the point (no Newton
    polish), summarised per site by ``{"sd", "ci_lower", "ci_upper"}`` (94 % equal-tailed) of
    ``num_samples`` draws, plus ``positive_definite``."""
    import warnings

    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a non-positive-definite Hessian: reported below
        lap = infer.laplace(model, rng_key=key, num_samples=num_samples, map_result=result, newton_steps=0,
                            batch_size=batch, **kwargs)
    out = {"positive_definite": lap.positive_definite, "num_samples": num_samples, "sites": {}}
    if not lap.positive_definite:
        warnings_out.append("map: the Hessian at the MAP point is not positive definite: its curvature sd is not "
                            "a faithful uncertainty (use laplace or nuts)")
    for name, draws in lap.samples.items():
        draws = np.asarray(draws, dtype=float)
        if not np.all(np.isfinite(draws)):
            continue
        lo, hi = np.quantile(draws, [0.03, 0.97], axis=0)
        out["sites"][name] = {"sd": draws.std(0).tolist(), "ci_lower": lo.tolist(), "ci_upper": hi.tolist()}
    return out


def _write_fit_outputs(out, data_tree, report, fit, model_cfg, module, data_dir, data_hash):
    from ppl_bmc import infer

    stale = [f for f in os.listdir(out) if f in RESULT_FILES or (f.endswith(".png") and f.startswith(MAP_PREFIXES))]
    fit_doc = {
        "fit": {k: v for k, v in fit.items() if k not in ("data", "out")},
        "model": model_cfg,
        "paths": {"model": module.__ppl_bmc_path__, "data": os.path.abspath(data_dir), "data_sha256": data_hash},
        "run": {"elapsed_s": report.get("elapsed_s"),
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **versions()},
    }
    with signals_deferred():
        for name in stale:  # outputs of an earlier fit that this one does not rewrite
            if name not in ("posterior.nc", "diagnostics.json", "fit.toml"):
                os.remove(os.path.join(out, name))
        infer.to_netcdf(data_tree, os.path.join(out, "posterior.nc"))
        write_text(os.path.join(out, "diagnostics.json"), json.dumps(report, indent=1, ensure_ascii=False) + "\n")
        write_text(os.path.join(out, "fit.toml"), to_toml(fit_doc, header="written by ppl-bmc fit"))
        ckpt = os.path.join(out, CHECKPOINT)
        if os.path.exists(ckpt):
            os.remove(ckpt)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(ckpt))
