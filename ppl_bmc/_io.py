"""Atomic file writes: write to a temporary file in the target folder, then rename."""

from __future__ import annotations

import os
import tempfile


def atomic_write(path, write) -> str:
    """Call ``write(tmp_path)`` then move ``tmp_path`` onto ``path``.

    ``path`` either keeps its old contents (if ``write`` fails or is interrupted) or gets the
    complete new ones.  Returns ``path`` as a string.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates 0600 files; give the result the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
