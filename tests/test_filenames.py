"""Safe download file names (sensmap.filenames): ASCII only, generated, never from an uploaded file."""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone

import pytest

from sensmap import filenames, report

WHEN = datetime(2026, 11, 26, 14, 15, 0, tzinfo=timezone.utc)
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def test_report_module_keeps_the_names_the_dashboard_and_audit_import():
    assert report.report_filename is filenames.report_filename and report.safe_name is filenames.safe_name


def test_ascii_text_folds_names_for_file_names():
    assert filenames.ascii_text("MobileNet α0.75 224×224 − Réseau 猫") == "MobileNet a0.75 224x224 - Reseau ?"


def test_report_filename_example():
    name = filenames.report_filename("report", ["MobileNetV2", "MobileNet α0.75 192px"], "png", when=WHEN)
    assert name == "sensmap-report-MobileNetV2-vs-MobileNet_a0.75_192px-20261126-141500.png"


@pytest.mark.parametrize(
    "models",
    [
        ["../../etc/passwd"],
        ["my model v2", "  "],
        ["Réseau 猫 ✓", "..", "/", "\\\\server\\share"],
        ["a" * 500] * 9,
        [],
    ],
)
@pytest.mark.parametrize("kind, ext", [("report", "png"), ("../html", ".ht/ml"), ("", "")])
def test_report_filename_is_safe(models, kind, ext):
    name = filenames.report_filename(kind, models, ext, when=WHEN)
    assert SAFE_NAME.match(name), name
    assert name.startswith("sensmap-") and ".." not in name and os.path.basename(name) == name
    assert len(name) <= 255
    assert name.endswith("-20261126-141500." + (re.sub(r"[^A-Za-z0-9]", "", ext) or "bin"))


def test_report_filename_uses_current_utc_time():
    name = filenames.report_filename("report", ["Net"], "png")
    stamp = datetime.strptime(name.split("-Net-")[1].removesuffix(".png"), "%Y%m%d-%H%M%S")
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    assert abs((now - stamp).total_seconds()) < 60
