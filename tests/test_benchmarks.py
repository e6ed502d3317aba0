"""The benchmarks say what to install before doing any work when a test tool they need is missing."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import REPO

BLOCK_SKIMAGE = """
import sys

class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "skimage" or name.startswith("skimage."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, _Block())
"""


@pytest.mark.parametrize("script", ["occlusion_bench.py", "fast_quality.py"])
def test_benchmark_without_scikit_image_says_what_to_install_at_once(tmp_path, script):
    (tmp_path / "sitecustomize.py").write_text(BLOCK_SKIMAGE)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / script)], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    elapsed = time.perf_counter() - started
    assert done.returncode == 2, done.stderr
    assert "pip install scikit-image==" in done.stderr and "requirements-dev.txt" in done.stderr
    assert elapsed < 20  # it stopped before TensorFlow or any network loaded (a map takes minutes)
    assert "Traceback" not in done.stderr
