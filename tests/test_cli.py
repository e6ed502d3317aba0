"""CLI tests: models, classify and map on real networks; user errors exit 2 without a traceback."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, WEIGHTS, shared_photo
from PIL import Image

import sensmap
from sensmap.cli import main

MOBILENET_025 = str(WEIGHTS / "mobilenet_v1_0.25_128.weights.h5")


def test_models_lists_every_network_and_local_weights(capsys, monkeypatch, shared_weights_dir):
    monkeypatch.setenv("SENSMAP_WEIGHTS_DIR", str(shared_weights_dir))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "MobileNetV2" in out and "ConvNeXtXLarge" in out and "local" in out
    assert "MobileNet α0.25 128px" in out
    assert main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["networks"]) == len(sensmap.REGISTRY) and len(data["local_weights"]) == 4


def test_classify_prints_top_classes(capsys):
    code = main(["classify", str(shared_photo("coffee.png")), "--model", "MobileNet", "--weights", MOBILENET_025])
    assert code == 0
    out = capsys.readouterr().out
    assert "espresso" in out and "%" in out
    assert main(["classify", str(shared_photo("coffee.png")), "-m", "MobileNet", "--weights", MOBILENET_025,
                 "--json", "--top", "2"]) == 0  # fmt: skip
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_map_writes_npz_and_png(tmp_path, capsys):
    npz, png = tmp_path / "map.npz", tmp_path / "map.png"
    code = main([
        "map", str(shared_photo("wolf_snow.webp")), "--model", "MobileNet", "--weights", MOBILENET_025,
        "--sizes", "0.5", "0.25", "--stride", "0.5", "--fill", "blur", "--target", "timber wolf",
        "--out-npz", str(npz), "--out-png", str(png), "--quiet",
    ])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "timber_wolf" in out and "58 forward passes" in out
    result = sensmap.SensitivityResult.load(npz)
    assert result.target_name == "timber_wolf" and result.passes == 58 and result.fill == "blur"
    with Image.open(png) as image:
        image.load()
        assert image.format == "PNG" and image.width >= 200


@pytest.mark.parametrize(
    ("mode", "engine", "passes", "words"),
    [
        ("fast", None, 19, "approximate: 19 of 58"),
        ("incremental", None, 58, "exact"),
        ("fast", "incremental", 19, "approximate: 19 of 58"),
        ("exact", "auto", 58, "exact"),
    ],
)
def test_map_modes_and_engines(mode, engine, passes, words, tmp_path, capsys):
    npz = tmp_path / "map.npz"
    code = main([
        "map", str(shared_photo("wolf_snow.webp")), "--model", "MobileNet", "--weights", MOBILENET_025,
        "--sizes", "0.5", "0.25", "--mode", mode, *(["--engine", engine] if engine else []),
        "--out-npz", str(npz), "--quiet",
    ])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    result = sensmap.SensitivityResult.load(npz)
    requested = "incremental" if mode == "incremental" else engine or "dense"
    assert f"{passes} forward passes" in out and words in out and f"engine {result.engine}" in out
    assert result.passes == passes and result.approximate == (mode == "fast")
    assert result.mode == result.metadata["mode"] == ("fast" if mode == "fast" else "exact")
    assert result.engine_requested == requested and result.metadata["engine_requested"] == requested
    groups = result.metadata.get("incremental_groups", [])
    assert len(groups) == (0 if requested == "dense" else 2)  # one record per cover size
    assert [g["ran"] for g in groups] == ([] if requested == "dense" else ["incremental"] * 2)
    assert result.engine == requested.replace("auto", "incremental")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["classify", "missing.jpg", "--model", "MobileNetV2"], "no such file"),
        (["classify", "{photo}", "--model", "NoSuchNet"], "unknown network"),
        (["map", "{photo}", "--model", "MobileNet", "--weights", MOBILENET_025, "--sizes", "1.5"], "cover size"),
        (["map", "{photo}", "--model", "MobileNet", "--weights", MOBILENET_025, "--fill", "plaid"], "unknown fill"),
        (["map", "{photo}", "-m", "MobileNet", "--weights", MOBILENET_025, "--target", "unicorn"], "unknown target"),
        (["map", "{photo}", "--model", "MobileNet", "--weights", MOBILENET_025, "--max-passes", "10"], "budget"),
        (["map", "{photo}", "-m", "MobileNet", "--mode", "incremental", "--engine", "dense"], "exact mode with the"),
        (["classify", "{photo}", "--model", "MobileNetV2", "--weights", "/nonexistent.weights.h5"], "no such weights"),
    ],
)
def test_user_errors_exit_2_with_one_line(argv, message, capsys):
    argv = [a.replace("{photo}", str(shared_photo("coffee.png"))) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.startswith("sensmap: error:")


def test_bad_image_file_exits_2(tmp_path, capsys):
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is text, not a photo")
    assert main(["classify", str(fake), "--model", "MobileNetV2"]) == 2
    assert "not an image" in capsys.readouterr().err


@pytest.mark.slow
def test_python_dash_m_runs_as_a_process(tmp_path):
    photo = tmp_path / "tiny.png"
    Image.fromarray(np.full((9, 13, 3), 200, np.uint8)).save(photo)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "sensmap", "map", str(photo), "--model", "MobileNet", "--weights", MOBILENET_025,
         "--sizes", "0.5", "--out-png", str(tmp_path / "out.png")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "passes" in done.stderr  # the progress bar
    with Image.open(io.BytesIO((tmp_path / "out.png").read_bytes())) as image:
        assert image.size[0] > 0
    bad = subprocess.run([sys.executable, "-m", "sensmap", "map", str(photo), "--model", "Nope"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty, quiet, shown", [(True, False, True), (False, False, False), (True, True, False)])
def test_progress_bar_only_on_a_terminal_and_not_when_quiet(monkeypatch, tty, quiet, shown):
    from types import SimpleNamespace

    from sensmap.cli import _TerminalProgress

    stream = _Terminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    bar = _TerminalProgress(not quiet, "passes")
    for done in (0, 40, 283):
        bar.passes(done, 283)
    audit = _TerminalProgress(not quiet, "images")
    for done, errors in ((0, 0), (3, 1), (12, 1)):
        audit.images(SimpleNamespace(done=done, total=12, errors=errors))
    text = stream.getvalue()
    if not shown:
        assert text == ""
        return
    assert "283/283" in text and "passes" in text and "/s" in text  # count, unit and rate
    assert "12/12" in text and "images" in text and "1 error" in text
    assert bar.bar is None and audit.bar is None  # closed at the end
