"""Configuration: ``--set`` values, TOML files, the ``[fit]`` options and the model's keys.

Needs no JAX: every configuration error is reported before JAX starts.
"""

from __future__ import annotations

import json
import math

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python >= 3.11 has tomllib
    tomllib = None

from ppl_bmc.cli.common import FIT_DEFAULTS, METHODS, UsageError, progress_enabled


def parse_value(text: str):
    """A ``--set`` value: a TOML literal (number, bool, string in quotes, list), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _type_name(value):
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)


def check_type(where: str, key: str, value, default):
    """``value`` must have the type of ``default`` (ints are accepted for floats)."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise UsageError(f"{where} {key} must be {_type_name(default)} (default {default!r}), got {value!r}")
    return value


def merge(where: str, base: dict, updates: dict, defaults: dict) -> dict:
    out = dict(base)
    for key, value in updates.items():
        if key == "progress" and defaults is FIT_DEFAULTS and isinstance(value, bool):
            value = "true" if value else "false"
        if key not in defaults:
            raise UsageError(f"unknown {where} key {key!r}; valid keys: {', '.join(sorted(defaults))}")
        out[key] = check_type(where, key, value, defaults[key])
    return out


def read_toml(path) -> dict:
    """Parse a TOML file; errors become one-line :class:`UsageError`."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except OSError as err:
        raise UsageError(f"cannot read config file {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"config file {path} is not valid TOML: {err}") from None


def config_tables(path, allowed) -> dict:
    if not path:
        return {}
    doc = read_toml(path)
    bad = [k for k in doc if k not in allowed]
    if bad:
        raise UsageError(f"config file {path}: unknown table or key {bad[0]!r}; valid tables: "
                         f"{', '.join('[' + a + ']' for a in allowed)}")
    for name, table in doc.items():
        if not isinstance(table, dict):
            raise UsageError(f"config file {path}: {name} must be a table [{name}]")
    return doc


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items() if x is not None) + " }"
    if hasattr(v, "tolist"):  # numpy scalars and arrays
        return _toml_value(v.tolist())
    return json.dumps(str(v))


def to_toml(doc: dict, header: str = "") -> str:
    """A TOML document from ``{table: {key: value}}`` (scalars, lists, inline tables; ``None``
    values are written as comments)."""
    lines = [f"# {line}" for line in header.splitlines()]
    for table, values in doc.items():
        lines += ["", f"[{table}]"]
        for k, v in values.items():
            lines.append(f"# {k} = None" if v is None else f"{json.dumps(k) if not k.isidentifier() else k} = {_toml_value(v)}")
    return "\n".join(lines).lstrip("\n") + "\n"


def cli_model_options(args) -> dict:
    opts = {}
    for item in getattr(args, "set", None) or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        opts[key.strip()] = parse_value(value.strip())
    if getattr(args, "n_particles", None) is not None:
        opts["n_particles"] = args.n_particles
    return opts


def check_fit_options(fit: dict) -> None:
    def need(cond, key, rng):
        if not cond:
            raise UsageError(f"{key} must be {rng}, got {fit[key]!r}")

    need(fit["method"] in METHODS, "method", f"one of {', '.join(METHODS)}")
    need(fit["chains"] >= 1, "chains", "an integer >= 1")
    need(fit["warmup"] >= 0, "warmup", "an integer >= 0")
    need(fit["samples"] >= (2 if fit["method"] == "laplace" else 1), "samples", "an integer >= 1 (>= 2 for laplace)")
    need(fit["block"] >= 0, "block", "an integer >= 0 (0: automatic)")
    need(fit["chain_method"] in ("auto", "parallel", "vectorized", "sequential"), "chain_method",
         "auto, parallel, vectorized or sequential")
    need(0 < fit["target_accept"] < 1, "target_accept", "in (0, 1)")
    need(fit["max_tree_depth"] >= 1, "max_tree_depth", "an integer >= 1")
    need(fit["hmc_steps"] >= 0, "hmc_steps", "an integer >= 0 (0: trajectory length 2π)")
    need(fit["map_steps"] >= 10, "map_steps", "an integer >= 10")
    need(fit["learning_rate"] > 0, "learning_rate", "> 0")
    need(isinstance(fit["map_sd"], bool), "map_sd", "true or false")
    need(fit["mc_noise_draws"] == 0 or fit["mc_noise_draws"] >= 3, "mc_noise_draws", "0 (skip) or an integer >= 3")
    need(fit["mc_noise_keys"] >= 1, "mc_noise_keys", "an integer >= 1")
    need(fit["mc_noise_threshold"] > 0, "mc_noise_threshold", "> 0")
    need(fit["batch_size"] >= 0, "batch_size", "an integer >= 0 (0: all draws at once)")
    progress_enabled(fit["progress"])


def resolve_fit_config(args, defaults: dict, data_config: dict):
    """``(fit, model, explicit)``: the ``[fit]`` options, the model configuration (the model's
    ``defaults``, then the data folder's ``[model]``, the config file, ``--set``), and the
    options given explicitly (config file or flags) as ``{"fit": {...}, "model": {...}}``."""
    tables = config_tables(args.config, ("model", "fit"))
    fit_file = tables.get("fit", {})
    fit = merge("[fit]", FIT_DEFAULTS, fit_file, FIT_DEFAULTS)
    explicit_fit = dict(fit_file)
    for key, default in FIT_DEFAULTS.items():
        value = getattr(args, key, None)
        if key == "progress" and isinstance(value, bool):
            value = "true" if value else "false"
        if value is not None:
            fit[key] = check_type("--" + key.replace("_", "-"), key, value, default)
            explicit_fit[key] = fit[key]
    fit["progress"] = fit["progress"].lower()
    check_fit_options(fit)
    data_model = data_config.get("model", {}) if isinstance(data_config.get("model", {}), dict) else {}
    data_model = {k: v for k, v in data_model.items() if k in defaults}  # a renamed key is not an error here
    model_cfg = merge("[model] (data folder)", defaults, data_model, defaults)
    model_file = tables.get("model", {})
    model_cfg = merge("[model]", model_cfg, model_file, defaults)
    cli_opts = cli_model_options(args)
    model_cfg = merge("model option", model_cfg, cli_opts, defaults)
    return fit, model_cfg, {"fit": explicit_fit, "model": {**model_file, **cli_opts}}
