"""Streamlit's command line with slow photo reading, for the browser test of the upload race.

    python tests/slow_reading_server.py run app.py --server.port 8501 …

Every photo the dashboard reads (:func:`sensmap.ui.photo_store.prepare_photo`, which uploads run in a background
thread) first sleeps ``SENSMAP_TEST_READ_DELAY_S`` seconds (default 3), so a page opened right after an upload is
sent finds it still being read. Only tests start the server this way (``streamlit_server(..., launcher=...)``): the
dashboard itself has no such hook.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DELAY_S = float(os.environ.get("SENSMAP_TEST_READ_DELAY_S", "3"))


def slow_reading() -> None:
    """Patch the image reader the upload threads call with one that sleeps ``DELAY_S`` first."""
    from sensmap.ui import photo_store

    read = photo_store.load_image

    def load_image_slowly(*args, **kwargs):
        time.sleep(DELAY_S)
        return read(*args, **kwargs)

    photo_store.load_image = load_image_slowly


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # this checkout's sensmap, as `python -m streamlit` from the repository gets it
    slow_reading()
    from streamlit.web import cli

    sys.exit(cli.main(prog_name="streamlit"))
