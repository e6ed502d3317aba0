"""The README's cluster path: `sensmap audit --address` against a separately started Ray cluster.

A head node is started with ``ray start --head`` on 127.0.0.1 in its own temporary folder (as an operator would
on the head machine), the audit runs as the CLI in a separate process with ``--address HOST:PORT`` and with
``--address auto`` (the README's way on a node of the cluster, and what ``ray job submit`` runs), and the cluster
is stopped at the end (by killing its own processes: ``ray stop`` would end every Ray on the
machine). Its maps must equal ``sensitivity_map`` run here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import WEIGHTS, shared_photo
from ray_clusters import local_cluster

MOBILENET_025 = WEIGHTS / "mobilenet_v1_0.25_128.weights.h5"
PHOTOS = ("coffee.png", "chelsea.png", "owl.jpg")


@pytest.fixture(scope="module")
def cluster():
    """A one-node Ray cluster (3 CPUs) started with ``ray start --head`` on 127.0.0.1 in its own temporary folder
    with its own token (:func:`ray_clusters.local_cluster`); stopped at the end."""
    with local_cluster(cpus=3) as (address, env, _):
        yield address, env


def _audit(photos: Path, out: Path, address: str, env: dict) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "sensmap", "audit", str(photos), "-m", "MobileNet", "--weights",
               str(MOBILENET_025), "--sizes", "0.5", "0.25", "--out", str(out), "--address", address,
               "--workers", "1", "--quiet"]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)


@pytest.mark.slow
def test_audit_runs_on_a_separately_started_cluster(cluster, tmp_path):
    import sensmap
    from sensmap import audit

    address, env = cluster
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in PHOTOS:
        shutil.copy(shared_photo(name), photos / name)
    done = _audit(photos, tmp_path / "out", address, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Ray cluster {address}" in done.stdout and "3 processed now" in done.stdout
    index = audit.open_audit(tmp_path / "out")
    assert len(index.frame) == 3 and index.frame["error"].isna().all()

    network = sensmap.load_model("MobileNet", weights=MOBILENET_025)
    row = index.frame[index.frame["image_id"] == "owl.jpg"].iloc[0]
    remote = audit.load_image_result(index, row["image_id"], row["model"])
    local = sensmap.sensitivity_map(network, sensmap.load_image(photos / "owl.jpg"), sizes=(0.5, 0.25))
    np.testing.assert_allclose(remote.support, local.support, atol=1e-5)

    # On a node of the cluster (or inside `ray job submit ... -- sensmap audit ...`): --address auto.
    (photos / "coffee.png").unlink()
    shutil.copy(shared_photo("parrot.jpg"), photos / "parrot.jpg")
    again = _audit(photos, tmp_path / "auto", "auto", env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "3 processed now" in again.stdout
