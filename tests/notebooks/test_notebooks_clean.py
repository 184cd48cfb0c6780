"""Committed notebook outputs are free of local paths and warnings (what a reader sees on GitHub)."""

import glob
import json
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
LOCAL_PATH = re.compile(r"(/work/|/root/|/home/|/tmp/|/Users/|[A-Z]:\\\\)")


def _texts(path):
    nb = json.load(open(path, encoding="utf-8"))
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            text = out.get("text", "")
            text = "".join(text) if isinstance(text, list) else text
            for mime, value in out.get("data", {}).items():
                if mime.startswith("text/"):  # not base64 images
                    text += "".join(value) if isinstance(value, list) else value
            yield i, out.get("name", out.get("output_type")), text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_outputs_have_no_local_paths_or_warnings(path):
    for i, name, text in _texts(path):
        assert not LOCAL_PATH.search(text), f"cell {i}: local path in output: {LOCAL_PATH.search(text).group(0)}"
        assert "Warning" not in text, f"cell {i} ({name}): {text[:200]}"


def test_the_check_finds_a_local_path():
    assert LOCAL_PATH.search("see /work/main/.venv/lib/python3.12/tqdm/auto.py")
