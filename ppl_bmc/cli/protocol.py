"""Model files: finding them, reading their configuration keys without running them, loading them.

A model is a Python file (see :mod:`ppl_bmc.cli`).  :func:`static_defaults` reads its
``DEFAULTS`` literal from the source (``ast``), so the command line checks ``--set`` keys and
config files before the model (and with it JAX) is imported.
"""

from __future__ import annotations

import ast
import os
import sys

from ppl_bmc.cli.common import PROTOCOL, UsageError


_LOADED = {}  # path -> module: a model file is executed once per process


def static_defaults(path: str):
    """The model file's ``DEFAULTS`` if it is assigned once, to a literal dict, and never changed
    in place (read with ``ast``, nothing run); else ``None`` (the caller imports the model)."""
    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
    except (OSError, SyntaxError, ValueError):
        return None
    assigned = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "DEFAULTS" for t in targets) and node.value is not None:
            assigned.append(node.value)
    changed = any(  # DEFAULTS.update(...), DEFAULTS[k] = v, del DEFAULTS[k], DEFAULTS |= ...
        (isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "DEFAULTS")
        or (isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name) and n.value.id == "DEFAULTS"
            and isinstance(n.ctx, (ast.Store, ast.Del)))
        or (isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name) and n.target.id == "DEFAULTS")
        or (isinstance(n, ast.Global) and "DEFAULTS" in n.names)
        for n in ast.walk(tree))
    if len(assigned) != 1 or changed:
        return None
    try:
        value = ast.literal_eval(assigned[0])
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def models_dir() -> str:
    """The folder bare model names are looked up in: ``$PPL_BMC_MODELS``, else the shipped models
    (the package ``ppl_bmc.models``: the checkout's ``models/`` in an editable install, the
    installed copy otherwise).  Found without importing anything."""
    import importlib.util

    if os.environ.get("PPL_BMC_MODELS"):
        return os.environ["PPL_BMC_MODELS"]
    spec = importlib.util.find_spec("ppl_bmc.models")
    return list(spec.submodule_search_locations)[0] if spec and spec.submodule_search_locations else ""


def _model_names(folder):
    try:
        return sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".py") and not f.startswith("_"))
    except OSError:
        return []


def resolve_model(spec: str) -> str:
    """Path of a model given as a path (``models/paper_toy.py``) or a bare name (``paper_toy``)."""
    if spec.endswith(".py") or os.sep in spec or (os.altsep and os.altsep in spec):
        path = os.path.abspath(spec)
        if not os.path.isfile(path):
            raise UsageError(f"model file {spec} does not exist")
        return path
    folder = models_dir()
    path = os.path.join(folder, spec + ".py")
    if not os.path.isfile(path):
        names = _model_names(folder)
        raise UsageError(f"unknown model {spec!r}; models in {folder}: {', '.join(names) or 'none'}")
    return path


def load_model(spec: str):
    """Import a model file (see the module docstring) and check it defines the protocol."""
    import importlib.util

    path = resolve_model(spec)
    if path in _LOADED:
        return _LOADED[path]
    name = os.path.splitext(os.path.basename(path))[0]
    modname = f"ppl_bmc_model_{name}"
    module_spec = importlib.util.spec_from_file_location(modname, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[modname] = module
    try:
        module_spec.loader.exec_module(module)
    except ImportError as err:
        raise UsageError(f"cannot import model {path}: {err}") from err
    missing = [n for n in PROTOCOL if not hasattr(module, n)]
    if missing:
        raise UsageError(f"{path} is not a ppl-bmc model: it does not define {', '.join(missing)}")
    if not isinstance(module.DEFAULTS, dict):
        raise UsageError(f"{path}: DEFAULTS must be a dict, got {type(module.DEFAULTS).__name__}")
    module.__ppl_bmc_path__ = path
    _LOADED[path] = module
    return module


def models_command(args) -> int:
    folder = models_dir()
    names = _model_names(folder)
    if not names:
        raise UsageError(f"no models in {folder}")
    print(f"models in {folder}:")
    for name in names:
        path = os.path.join(folder, name + ".py")
        try:
            with open(path, encoding="utf-8") as fh:
                tree = ast.parse(fh.read())
        except (OSError, SyntaxError):
            print(f"  {name:20s} (unreadable)")
            continue
        doc = (ast.get_docstring(tree) or "").strip().splitlines()
        defined = set()
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            defined |= {t.id for t in targets if isinstance(t, ast.Name)}
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                defined.add(node.name)
        missing = [n for n in PROTOCOL if n not in defined]
        flag = "" if not missing else f"  [not runnable by ppl-bmc: no {', '.join(missing)}]"
        print(f"  {name:20s} {doc[0] if doc else ''}{flag}")
    return 0


def model_defaults(path: str) -> dict:
    """``DEFAULTS`` of the model file at ``path``: read statically when it is a literal, else by
    importing the model."""
    defaults = static_defaults(path)
    if defaults is None:
        defaults = load_model(path).DEFAULTS
    return defaults
