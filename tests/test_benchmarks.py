"""The benchmarks say what to install before doing any work when a test tool they need is missing; the many-clients
benchmark runs end to end, small."""

from __future__ import annotations

import json
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


@pytest.mark.slow
@pytest.mark.browser
def test_many_clients_benchmark_runs_with_two_clients_on_the_server_alone(tmp_path):
    """``benchmarks/many_clients.py`` end to end, small: two browser clients upload at once, open the Map page 0.3 s
    after their photo reached the server (before the server read it) and map at once. Each shows its own photo
    without a reload, never "add a photo", and gets its map; the report says so."""
    out = tmp_path / "many_clients.json"
    command = [sys.executable, str(REPO / "benchmarks" / "many_clients.py"), "--clients", "2", "--scenario", "local",
               "--wait-for-transfer", "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout[-4000:] + done.stderr[-4000:]
    rows = json.loads(out.read_text())["scenarios"]["local"]["clients"]
    assert [row["photo"] for row in rows] == ["cat_720p.jpg", "chelsea.png"]
    assert "click → final map: " in done.stdout and "server memory: " in done.stdout
    for row in rows:
        assert not row["saw_stale_page"] and row["saw_own_photo"] and not row["error"], row
        assert row["click_to_final_map_s"] > 0 and row["queue_lines"] is not None, row
