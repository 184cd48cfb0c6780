"""What every subcommand shares: constants, the one-line error, messages on stderr, signals.

Nothing here imports JAX, NumPyro or ArviZ: the parser and the checks of the command line run
before any of them (``ppl-bmc --help`` answers in a fraction of a second).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading

#: Options of ``ppl-bmc fit`` (TOML ``[fit]`` keys; flags ``--<key with - for _>``).
FIT_DEFAULTS = {
    "method": "nuts",  # map | nuts | hmc | laplace
    "chains": 2,  # MCMC chains
    "warmup": 500,  # warmup iterations per chain
    "samples": 1000,  # draws per chain (MCMC) or draws of the Gaussian (laplace)
    "seed": 0,  # seeds the likelihood key, the sampler and the replicated data
    "block": 0,  # MCMC iterations per checkpointed block (0: (warmup + samples) / 20)
    "chain_method": "auto",  # auto | parallel | vectorized | sequential
    "dense_mass": False,  # dense mass matrix (else diagonal)
    "target_accept": 0.8,  # step-size adaptation target in (0, 1)
    "max_tree_depth": 10,  # NUTS
    "hmc_steps": 0,  # HMC leapfrog steps per draw (0: trajectory length 2π)
    "map_steps": 2000,  # SVI steps (map, laplace)
    "learning_rate": 0.01,  # Adam step (map, laplace)
    "map_sd": True,  # map: the curvature (Laplace) sd at the MAP point
    "mc_noise_draws": 200,  # posterior draws for the MC-noise diagnostic (0: skip it)
    "mc_noise_keys": 4,  # independent likelihood keys it re-evaluates with
    "mc_noise_threshold": 0.5,  # flag when sd(l1 - l2) / sd(l1) exceeds this
    "batch_size": 0,  # draws per vectorised predictive/log-likelihood pass (0: all)
    "progress": "auto",  # auto | true | false
    "data": "",  # data folder
    "out": "",  # results folder
}
METHODS = ("map", "nuts", "hmc", "laplace")
SIMULATE_DEFAULTS = {"seed": 0, "out": ""}
SUMMARY_ROWS = 30  # rows `summarize` prints by default (worst r_hat first)
#: Files every fit writes (``rank.png`` only for MCMC fits of >= 2 chains; maps per model).
RESULT_FILES = ("posterior.nc", "summary.csv", "trace.png", "rank.png", "diagnostics.json", "fit.toml", "report.txt")
#: File-name prefixes of the per-site map figures (``mean_<site>.png``, ...).
MAP_PREFIXES = ("mean_", "sd_", "rhat_", "ess_")
CHECKPOINT = os.path.join(".resume", "checkpoint.pkl")
PROTOCOL = ("DEFAULTS", "simulate", "build", "OBSERVED", "VAR_NAMES")
#: Exit status of a run ended by SIGTERM (128 + 15, as a shell reports it).
EXIT_SIGTERM = 143


class UsageError(ValueError):
    """Bad input: reported as one line ``ppl-bmc: error: ...``, exit status 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch scheduler's stop): handled as Ctrl-C, exit status 143."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``ppl-bmc: error: ...``) instead of usage + message."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def stderr(msg):
    print(msg, file=sys.stderr, flush=True)


def warn(msg):
    stderr(f"ppl-bmc: warning: {msg}")


def note(msg):
    stderr(f"ppl-bmc: {msg}")


def progress_enabled(setting) -> bool:
    if isinstance(setting, bool):
        return setting
    if setting not in ("auto", "true", "false"):
        raise UsageError(f"progress must be auto, true or false, got {setting!r}")
    if setting != "auto":
        return setting == "true"
    return sys.stderr.isatty() and "CI" not in os.environ


def _raise_terminated(signum, frame):
    raise Terminated


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While the command runs, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def signals_deferred():
    """Hold Ctrl-C and SIGTERM while a group of files is written; re-raise afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    old_int = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    old_term = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    if signal.SIGTERM in received:
        raise Terminated
    if received:
        raise KeyboardInterrupt


def fmt(x, digits=3):
    return "n/a" if x is None else f"{x:.{digits}f}"
