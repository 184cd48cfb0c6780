"""Data and results folders: reading ``data.npz`` safely, checking observed values, writing files
atomically, the output-folder rules."""

from __future__ import annotations

import hashlib
import os
import sys

from ppl_bmc.cli.common import CHECKPOINT, UsageError
from ppl_bmc.cli.config import read_toml


def write_text(path, text):
    from ppl_bmc._io import atomic_write

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    atomic_write(path, write)


def check_out(out: str, *, force: bool, resume: bool = False, what="output folder") -> str:
    """Create/validate an output folder: writable, and empty unless ``force``/``resume``."""
    import tempfile

    if not out:
        raise UsageError(f"the {what} is missing: give --out DIR")
    out = os.path.abspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"{what} {out} exists and is not a folder")
    try:
        os.makedirs(out, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".tmp-probe-")
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise UsageError(f"cannot write to {what} {out}: {err.strerror or err}") from None
    entries = [e for e in os.listdir(out) if not e.startswith(".tmp-")]
    if entries and not (force or resume):
        if os.path.exists(os.path.join(out, CHECKPOINT)):
            raise UsageError(f"{what} {out} holds an interrupted fit: add --resume to continue it, or --force to start over")
        raise UsageError(f"{what} {out} is not empty: add --force to overwrite it")
    return out


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def versions() -> dict:
    import arviz
    import jax
    import numpyro

    import ppl_bmc

    return {"ppl_bmc": ppl_bmc.__version__, "jax": jax.__version__, "numpyro": numpyro.__version__,
            "arviz": arviz.__version__, "python": sys.version.split()[0], "backend": jax.default_backend()}


def read_data(folder: str):
    """``(data, config)`` of a data folder: the arrays of ``data.npz`` and the parsed
    ``config.toml`` (``{}`` if absent).

    An empty, truncated or corrupted file, a file of another format (``.npy``, text, pickle) or
    an archive without arrays is a :class:`UsageError` naming the file.
    """
    import zipfile

    import numpy as np

    if not folder:
        raise UsageError("the data folder is missing: give --data DIR")
    if not os.path.isdir(folder):
        raise UsageError(f"data folder {folder} does not exist")
    path = os.path.join(folder, "data.npz")
    if not os.path.isfile(path):
        raise UsageError(f"data folder {folder} has no data.npz (write one with ppl-bmc simulate)")
    if os.path.getsize(path) == 0:
        raise UsageError(f"cannot read {path}: the file is empty (0 bytes)")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"cannot read {path}: not an .npz archive (numpy.savez writes one); "
                         f"the file is truncated, corrupted or of another format")
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: np.asarray(npz[k]) for k in npz.files}
    except Exception as err:  # noqa: BLE001 - zipfile, zlib, numpy format errors: one line each
        reason = " ".join(str(err).split()) or type(err).__name__
        raise UsageError(f"cannot read {path}: {type(err).__name__}: {reason} (truncated or corrupted?)") from None
    if not data:
        raise UsageError(f"{path} holds no arrays")
    cfg_path = os.path.join(folder, "config.toml")
    config = read_toml(cfg_path) if os.path.isfile(cfg_path) else {}
    return data, config


def read_truth(folder: str) -> dict:
    """The arrays of ``truth.npz`` in a data folder (``{}`` when absent or unreadable: the truth
    is optional, only drawn on figures)."""
    import numpy as np

    path = os.path.join(folder, "truth.npz") if folder else ""
    if not path or not os.path.isfile(path):
        return {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: np.asarray(npz[k]) for k in npz.files}
    except Exception:  # noqa: BLE001
        return {}


def check_data(module, data: dict) -> None:
    """Observed sites present, finite, counts ≥ 0, then the model's own ``validate_data``."""
    import numpy as np

    missing = [s for s in module.OBSERVED if s not in data]
    if missing:
        raise UsageError(f"the data lack the observed site(s) {', '.join(missing)} of the model "
                         f"(data.npz holds: {', '.join(sorted(data)) or 'nothing'})")
    for site in module.OBSERVED:
        arr = np.asarray(data[site])
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise UsageError(f"observed {site} must be numeric, got dtype {arr.dtype}")
        if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
            bad = np.argwhere(~np.isfinite(arr))[0]
            raise UsageError(f"observed {site} has non-finite values (e.g. {arr[tuple(bad)]} at index {tuple(int(i) for i in bad)})")
        if np.issubdtype(arr.dtype, np.integer) and np.any(arr < 0):
            bad = np.argwhere(arr < 0)[0]
            raise UsageError(f"observed counts {site} must be >= 0, got {arr[tuple(bad)]} at index {tuple(int(i) for i in bad)}")
    if hasattr(module, "validate_data"):
        try:
            module.validate_data(data)
        except ValueError as err:
            raise UsageError(f"bad data: {err}") from None
