"""Fail fast when a benchmark's extra packages are missing: say what to install before doing any work.

The benchmarks run from the README's environment (``bash run.sh`` makes ``.venv``) plus the test tools
(``requirements-dev.txt``: scikit-image for SSIM). Each script calls :func:`require` before it imports
TensorFlow or loads a network, so a missing package costs seconds, not minutes.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

DEV_REQUIREMENTS = Path(__file__).resolve().parents[1] / "requirements-dev.txt"


def _pinned(distribution: str) -> str:
    """``distribution==version`` as pinned in requirements-dev.txt, else the bare name."""
    pattern = re.compile(rf"^{re.escape(distribution)}\s*==\s*(\S+)", re.IGNORECASE | re.MULTILINE)
    found = pattern.search(DEV_REQUIREMENTS.read_text()) if DEV_REQUIREMENTS.is_file() else None
    return f"{distribution}=={found.group(1)}" if found else distribution


def require(modules: dict[str, str]) -> None:
    """Exit with status 2 and an install line unless every module (import name → distribution) is importable."""
    missing = []
    for module, dist in modules.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(dist)
    if not missing:
        return
    pins = " ".join(_pinned(dist) for dist in missing)
    print(
        f"this benchmark needs {', '.join(missing)}, which is not installed.\n"
        f"Install it into the README's environment first:\n"
        f"    .venv/bin/pip install {pins}\n"
        f"(or install every test tool: .venv/bin/pip install -r requirements-dev.txt)",
        file=sys.stderr,
    )
    raise SystemExit(2)
