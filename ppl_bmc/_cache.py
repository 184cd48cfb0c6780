"""JAX's persistent compilation cache: where it lives and how the command line switches it on.

A fit compiles its log-density, gradient and predictive passes once per model, data shape and
size; with the cache, a second run of the same command (or a test run again) reads the
executables back instead of compiling them (on 2 CPU cores: the CLI test files 337 s cold, 175 s
warm).  The folder is ``$PPL_BMC_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/ppl_bmc/jax`` (by
default ``~/.cache/ppl_bmc/jax``), with one sub-folder per Python version (each stack has its own
JAX).  ``PPL_BMC_CACHE_DIR=off`` switches it off; ``JAX_COMPILATION_CACHE_DIR``, when set, wins.
"""

from __future__ import annotations

import os
import sys

#: Compilations shorter than this (s) are not written to the cache.
MIN_COMPILE_TIME_S = "0.2"


def cache_dir() -> str | None:
    """The compilation-cache folder, or None when switched off."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    base = os.environ.get("PPL_BMC_CACHE_DIR")
    if base and base.lower() in ("off", "0", "false", "none"):
        return None
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "ppl_bmc", "jax")
    return os.path.join(base, "py%d%d" % sys.version_info[:2])


def enable_compilation_cache(environ=os.environ) -> str | None:
    """Point JAX (this process, if JAX is not imported yet, and every child process: notebook
    kernels, subprocesses) at :func:`cache_dir` through environment variables.  Returns the
    folder (None when switched off)."""
    folder = cache_dir()
    if folder is None:
        return None
    environ.setdefault("JAX_COMPILATION_CACHE_DIR", folder)
    environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", MIN_COMPILE_TIME_S)
    if "jax" in sys.modules:  # already imported: the variables were read; set the options too
        import jax

        jax.config.update("jax_compilation_cache_dir", environ["JAX_COMPILATION_CACHE_DIR"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs",
                          float(environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
    return folder
