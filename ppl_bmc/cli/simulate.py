"""``ppl-bmc simulate``: synthetic data and the truth, written as a data folder."""

from __future__ import annotations

import datetime
import os

from ppl_bmc.cli.common import SIMULATE_DEFAULTS, UsageError, signals_deferred
from ppl_bmc.cli.config import check_type, cli_model_options, config_tables, merge, to_toml
from ppl_bmc.cli.folders import check_out, versions, write_text
from ppl_bmc.cli.protocol import load_model, model_defaults, resolve_model


def simulate_command(args) -> int:
    """``ppl-bmc simulate``: options and model keys are checked before the model (and JAX) loads."""
    tables = config_tables(args.config, ("model", "simulate"))
    sim = merge("[simulate]", SIMULATE_DEFAULTS, tables.get("simulate", {}), SIMULATE_DEFAULTS)
    for key in SIMULATE_DEFAULTS:
        if getattr(args, key, None) is not None:
            sim[key] = check_type("--" + key, key, getattr(args, key), SIMULATE_DEFAULTS[key])
    path = resolve_model(args.model)
    defaults = model_defaults(path)
    model_cfg = merge("[model]", defaults, tables.get("model", {}), defaults)
    model_cfg = merge("model option", model_cfg, cli_model_options(args), defaults)
    out = check_out(sim["out"], force=args.force, what="data folder")
    from ppl_bmc._cache import enable_compilation_cache

    enable_compilation_cache()
    module = load_model(path)

    import jax
    import numpy as np

    try:
        data, truth = module.simulate(dict(model_cfg), key=jax.random.key(sim["seed"]))
    except ValueError as err:
        raise UsageError(f"simulate: {err}") from None
    from ppl_bmc._io import atomic_write

    def npz(path, arrays):
        def write(tmp):
            with open(tmp, "wb") as fh:
                np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})

        atomic_write(path, write)

    meta = {"model": os.path.splitext(os.path.basename(module.__ppl_bmc_path__))[0],
            "model_path": module.__ppl_bmc_path__, "seed": sim["seed"],
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **versions()}
    with signals_deferred():
        npz(os.path.join(out, "data.npz"), data)
        npz(os.path.join(out, "truth.npz"), truth)
        write_text(os.path.join(out, "config.toml"),
                    to_toml({"simulate": meta, "model": model_cfg}, header="written by ppl-bmc simulate"))
    shapes = ", ".join(f"{k} {tuple(np.shape(v))}" for k, v in data.items())
    print(f"wrote {out}: data.npz ({shapes}), truth.npz, config.toml")
    return 0
