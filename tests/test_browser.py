"""The dashboard in a real browser: Streamlit server + Debian Chromium driven by Playwright.

Upload a photo through the file input, pick two networks, run a map (drawn as it refines, then its
faithfulness check), compare, see the three methods side by side, download the PNG report, stop a map while it
refines. Screenshots of every step go to ``test-artifacts/browser/NN-step.png`` (gitignored); the times from Run map
to the first overlay, the final map and the faithfulness numbers to ``test-artifacts/browser/timings.json``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, shared_photo

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts" / "browser"
START_TIMEOUT_S = 90
VIEWPORT = {"width": 1440, "height": 1000}
STEP_TIMEOUT_MS = 120_000  # a step may load TensorFlow and a network, then run a map on a small CPU
SLOW_READING_SERVER = Path(__file__).with_name("slow_reading_server.py")  # every photo read takes 3 s more
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(
    weights_dir: Path,
    log_name: str = "server.log",
    models_dir: Path | None = None,
    *,
    env: dict[str, str] | None = None,
    launcher: Path | None = None,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``streamlit run app.py`` on a free port of 127.0.0.1 with the shared weights (and the operator's own models in
    ``models_dir``, if given): ``(url, process)``; stopped afterwards. The process is the server itself (its RSS is
    the dashboard's memory). ``env``: more environment variables for the server; ``launcher``: a Python script run
    instead of ``-m streamlit`` with the same arguments (a test's bootstrap that patches something, then runs
    Streamlit's CLI, e.g. :mod:`slow_reading_server`)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server_env = {**os.environ, "SENSMAP_WEIGHTS_DIR": str(weights_dir), "TF_CPP_MIN_LOG_LEVEL": "2"}
    server_env.pop("SENSMAP_MODELS_DIR", None)
    if models_dir is not None:
        server_env["SENSMAP_MODELS_DIR"] = str(models_dir)
    server_env.update(env or {})
    start = [str(launcher)] if launcher is not None else ["-m", "streamlit"]
    command = [sys.executable, *start, "run", "app.py", "--server.address", "127.0.0.1",
               "--server.port", str(port), "--server.headless", "true"]  # fmt: skip
    log = open(ARTIFACTS / log_name, "w")  # noqa: SIM115 - closed in finally
    process = subprocess.Popen(command, cwd=REPO, env=server_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"streamlit exited with code {process.returncode}; see {ARTIFACTS / log_name}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer {url}/_stcore/health within {START_TIMEOUT_S} s")
            time.sleep(0.5)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()


def wait_idle(page) -> None:
    """Wait until the script run started by the last action is over."""
    from playwright.sync_api import expect

    page.wait_for_timeout(500)  # the rerun request reaches the server
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning")


def open_page_in(page, title: str) -> None:
    """Open a dashboard page from the sidebar and wait for its script run."""
    from playwright.sync_api import expect

    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    expect(page.get_by_role("heading", level=1).first).to_contain_text(title)
    wait_idle(page)


def choose_in(page, label: str, option: str) -> None:
    """Pick ``option`` in the select box labelled ``label`` (typing to search) and wait for the rerun."""
    box = page.get_by_test_id("stSelectbox").filter(has_text=label)
    box.locator("input").click()
    page.keyboard.type(option)
    page.get_by_role("option", name=re.compile(re.escape(option))).first.click()
    wait_idle(page)


@pytest.fixture
def server(shared_weights_dir: Path):
    """The dashboard's URL (see :func:`streamlit_server`)."""
    with streamlit_server(shared_weights_dir) as (url, _process):
        yield url


@contextlib.contextmanager
def launch_chromium() -> Iterator:
    """Debian's Chromium under Playwright with this workplace's flags; fails clearly when it is missing."""
    if not CHROMIUM.exists():
        pytest.fail(f"Debian chromium is missing ({CHROMIUM}): install it with `apt-get install chromium`")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=STEP_TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


# Marks the moments a map run shows itself, in the page's own clock (a MutationObserver: no polling delay).
WATCH_RUN = """() => {
  const marks = {click: performance.now()};
  const main = () => document.querySelector('[data-testid="stMain"]');
  const mark = (name) => { if (!(name in marks)) marks[name] = performance.now(); };
  const look = () => {
    const chart = main()?.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot .main-svg');
    const text = main()?.innerText || '';
    if (chart && text.includes(' — refining: ')) mark('overlay');
    if (chart && text.includes('percentage points') && !text.includes(' — refining: ')) mark('final');
    if ('final' in marks && text.includes('(faithfulness check)')) mark('checking');
    if ('checking' in marks && !text.includes('(faithfulness check)')) mark('checked');
  };
  window.__runMarks = marks;
  window.__runWatch?.disconnect();
  window.__runWatch = new MutationObserver(look);
  window.__runWatch.observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


# What one client sees on its page from now on, in the page's own clock (a MutationObserver: no polling delay; it lives
# as long as the document, so a reload loses it). Times (performance.now(), ms) of the first "First add a photo"
# (stale), "Reading your upload" spinner (spinner) and own photo with its Run map button (photo); the queue lines
# seen ("2nd of 3 in the queue (1 job computing), about 14 s"); error boxes; once ``window.__client.click`` is set:
# the final map (final: overlay chart drawn, nothing refining) and the last moment the page went quiet after it
# (done: no progress bar, script not running; null again while a progress bar shows, e.g. the faithfulness check).
WATCH_CLIENT = """(name) => {
  const w = {stale: null, spinner: null, photo: null, waits: [], errors: [], click: null, final: null, done: null};
  const look = () => {
    const main = document.querySelector('[data-testid="stMain"]');
    if (!main) return;
    const now = performance.now(), text = main.innerText;
    if (w.stale === null && text.includes('First add a photo')) w.stale = now;
    if (w.spinner === null && text.includes('Reading your upload')) w.spinner = now;
    const captions = [...main.querySelectorAll('[data-testid="stImageCaption"]')].map(c => c.innerText.trim());
    if (w.photo === null && captions.includes(name) && text.includes('Run map')) w.photo = now;
    for (const m of text.matchAll(/waiting for its turn — ([^\\n]*)/g)) if (!w.waits.includes(m[1])) w.waits.push(m[1]);
    for (const box of main.querySelectorAll('[data-testid="stException"], [data-testid="stAlertContentError"]')) {
      const said = box.innerText.slice(0, 300);
      if (!w.errors.includes(said)) w.errors.push(said);
    }
    if (w.click === null) return;
    const chart = main.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot .main-svg');
    const drawn = chart && text.includes('percentage points') && !text.includes(' — refining: ');
    if (w.final === null && drawn) w.final = now;
    const running = document.querySelector('[data-testid="stApp"]')?.dataset.testScriptState === 'running';
    const quiet = w.final !== null && drawn && !main.querySelector('[data-testid="stProgress"]') && !running;
    if (!quiet) w.done = null; else if (w.done === null) w.done = now;
  };
  window.__client = w;
  window.__clientWatch?.disconnect();
  window.__clientWatch = new MutationObserver(look);
  window.__clientWatch.observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true,
                                               attributeFilter: ['data-test-script-state']});
  look();
}"""


def timed_run(page, idle) -> dict[str, float]:
    """Click Run map and wait for the map and its faithfulness check. Seconds from the click to the first overlay
    (a partial map, captioned "refining"), to the final map (drawn with its colour key, nothing refining) and to
    the end of its faithfulness check; asserts the order: overlay, final map, then the check."""
    page.evaluate(WATCH_RUN)
    page.get_by_role("button", name=re.compile("Run map")).click()
    page.get_by_text("percentage points").first.wait_for(state="visible")
    page.wait_for_function("'checked' in window.__runMarks", timeout=STEP_TIMEOUT_MS)
    idle()
    marks = page.evaluate("window.__runMarks")
    seconds = {name: round((marks[name] - marks["click"]) / 1000, 2) for name in marks if name != "click"}
    assert set(seconds) == {"overlay", "final", "checking", "checked"}, seconds
    assert seconds["overlay"] < seconds["final"] <= seconds["checking"] < seconds["checked"], seconds
    return {
        "click_to_first_overlay_s": seconds["overlay"],
        "click_to_final_map_s": seconds["final"],
        "click_to_faithfulness_done_s": seconds["checked"],
    }


def test_upload_map_compare_and_download_the_report(server: str):
    from PIL import Image
    from playwright.sync_api import expect

    with launch_chromium() as browser:
        page = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
        page.set_default_timeout(STEP_TIMEOUT_MS)
        steps = iter(range(1, 100))

        idle, open_page, choose = (functools.partial(step, page) for step in (wait_idle, open_page_in, choose_in))

        def shot(name: str) -> None:
            """Screenshot the whole page: Streamlit scrolls inside its main area, so grow the viewport."""
            idle()
            height = page.evaluate(
                "Math.max(...['stMain', 'stAppViewContainer'].map("
                "id => document.querySelector(`[data-testid=${id}]`)?.scrollHeight || 0))"
            )
            page.set_viewport_size({"width": VIEWPORT["width"], "height": min(max(height, 600), 6000)})
            page.wait_for_timeout(800)  # Plotly redraws at the new size
            page.screenshot(path=ARTIFACTS / f"{next(steps):02d}-{name}.png", full_page=True)
            page.set_viewport_size(VIEWPORT)

        page.goto(server)
        expect(page.get_by_role("heading", level=1).first).to_contain_text("sensmap")
        expect(page.get_by_text("MobileNet α0.75 192px").first).to_be_visible()
        shot("home")

        open_page("Photos")
        page.get_by_test_id("stFileUploader").locator("input[type=file]").set_input_files(
            str(shared_photo("hot_dog.jpg"))
        )
        expect(page.get_by_test_id("stAlertContentSuccess")).to_contain_text("added hot_dog.jpg")
        expect(page.get_by_test_id("stImage").first).to_be_visible()
        shot("photos")

        open_page("Networks")
        choose("Network A", "MobileNetV2")  # already the default (the first ready network): not loaded yet
        page.get_by_role("button", name="Load MobileNetV2 now").click()
        expect(page.get_by_text("MobileNetV2: loaded, input 224×224 px")).to_be_visible()
        choose("Network B", "MobileNet α0.75 192px")  # a new choice loads at once
        expect(page.get_by_text("MobileNet α0.75 192px: loaded, input 192×192 px")).to_be_visible()
        expect(page.get_by_text("MobileNetV2: loaded, input 224×224 px")).to_be_visible()
        shot("networks")

        # A fresh server: the first map (the incremental engine is still being prepared: auto runs it dense).
        opened = time.perf_counter()
        open_page("Map")
        expect(page.get_by_text("forward passes").first).to_be_visible()
        expect(
            page.get_by_text(re.compile(r"Cost: 1,244 forward passes for the map \(exact, auto engine"))
        ).to_be_visible()
        ready_s = time.perf_counter() - opened
        fresh = timed_run(page, idle)
        timings = {"load_average_1min": round(os.getloadavg()[0], 2), "map_page_ready_s": round(ready_s, 2),
                   "fresh_server_first_map": fresh}  # fmt: skip
        print("fresh server, first map:", fresh)
        shot("map")
        page.get_by_role("tab", name="Faithfulness").click()
        idle()
        expect(page.get_by_test_id("stMetric").filter(has_text="Deletion AUC").first).to_be_visible()
        for view in ("Brightness", "Per cover size", "Label flip"):  # lazy tabs: each click reruns the page
            page.get_by_role("tab", name=view).click()
            idle()
            expect(page.get_by_test_id("stPlotlyChart").locator(".js-plotly-plot .main-svg").first).to_be_visible()
            shot(f"map-{view.lower().replace(' ', '-')}")
        page.get_by_role("tab", name="Overlay").click()
        idle()

        # The network loaded and its incremental engine prepared: a map of another photo with the defaults.
        open_page("Photos")
        page.get_by_test_id("stFileUploader").locator("input[type=file]").set_input_files(
            str(shared_photo("coffee.png"))
        )
        expect(page.get_by_test_id("stAlertContentSuccess")).to_contain_text("added coffee.png")
        page.locator("button:enabled", has_text="Use").click()  # the new photo becomes the active one
        expect(
            page.get_by_test_id("stMarkdown").filter(has_text=re.compile(r"coffee\.png\s*·\s*active"))
        ).to_be_visible()
        idle()
        prepared = re.compile(r"Cost: 1,244 forward passes for the map \(exact, auto engine: incremental\)")
        deadline = time.monotonic() + STEP_TIMEOUT_MS / 1000
        while True:  # the cost line says how the engine stands when the page is drawn
            open_page("Map")
            if page.get_by_text(prepared).count() or time.monotonic() > deadline:
                break
            page.wait_for_timeout(2000)
        expect(page.get_by_text(prepared)).to_be_visible()
        warm = timed_run(page, idle)
        timings["network_loaded_and_prepared"] = warm
        print("network loaded and prepared:", warm)
        (ARTIFACTS / "timings.json").write_text(json.dumps(timings, indent=2))
        print("timings:", json.dumps(timings))
        shot("map-coffee")

        open_page("Compare")
        page.get_by_role("button", name=re.compile("Run comparison")).click()
        expect(page.get_by_test_id("stMetric").filter(has_text="Spearman rank correlation")).to_be_visible()
        expect(page.get_by_test_id("stMetric").filter(has_text="IoU")).to_be_visible()
        expect(page.get_by_test_id("stPlotlyChart").locator(".js-plotly-plot .main-svg").first).to_be_visible()
        shot("compare")

        # Methods: occlusion (the Map page's map), Grad-CAM and RISE (fewest masks) side by side, with a verdict.
        open_page("Methods")
        masks = page.get_by_test_id("stSlider").filter(has_text="RISE masks").get_by_role("slider")
        masks.focus()
        page.keyboard.press("Home")  # the fewest masks offered
        idle()
        expect(page.get_by_text(re.compile(r"Cost: [\d,]+ forward passes \(101 for the maps"))).to_be_visible()
        page.get_by_role("button", name=re.compile("Run methods")).click()
        figure = page.get_by_test_id("stPlotlyChart").locator(".js-plotly-plot").first
        for title in ("occlusion (pp)", "Grad-CAM (relative)", "RISE (pp, approximate)"):
            expect(figure.get_by_text(title, exact=True)).to_be_visible()
        expect(figure.locator(".heatmaplayer .hm")).to_have_count(3)  # three maps over the photo
        verdict = re.compile(r"MobileNetV2 follows the (occlusion|Grad-CAM|RISE) map best|No map beats random orders")
        expect(page.get_by_test_id("stAlert").filter(has_text=verdict)).to_be_visible()
        shot("methods")

        open_page("Report")
        expect(page.get_by_test_id("stImage").first).to_be_visible()
        with page.expect_download() as download_info:
            page.get_by_test_id("stDownloadButton").filter(has_text="PNG report").locator("button").click()
        download = download_info.value
        name = download.suggested_filename
        assert re.fullmatch(r"sensmap-report-MobileNetV2-vs-MobileNet_a0\.75_192px-\d{8}-\d{6}\.png", name), name
        data = Path(download.path()).read_bytes()
        with Image.open(io.BytesIO(data)) as report:
            report.load()
            assert report.format == "PNG" and report.width >= 800 and report.height >= 600
        with page.expect_download() as download_info:
            page.get_by_test_id("stDownloadButton").filter(has_text="HTML report").locator("button").click()
        html = Path(download_info.value.path()).read_text(encoding="utf-8")
        assert html.startswith("<!DOCTYPE html>") and "coffee.png" in html
        shot("report")

        # Stop while the map refines (another fill: a new map): its partial map stays, marked; Run map completes it.
        open_page("Map")
        choose("Fill of the covered patch", "blurred photo")
        page.get_by_role("button", name=re.compile("Run map")).click()
        expect(page.get_by_text(re.compile(" — refining: "))).to_be_visible()
        page.get_by_role("button", name="Stop").click()
        expect(page.get_by_text(re.compile("Stopped: the map of MobileNetV2 on coffee.png"))).to_be_visible()
        idle()
        partial = page.get_by_text(re.compile(r"Partial map: the run was stopped with \d of 4 cover sizes done: 1/2"))
        expect(partial).to_be_visible()
        expect(page.get_by_test_id("stPlotlyChart").locator(".js-plotly-plot .main-svg").first).to_be_visible()
        shot("stopped")
        page.get_by_role("button", name=re.compile("Run map")).click()
        expect(page.get_by_text(re.compile("this map is ready"))).to_be_visible()
        idle()
        expect(partial).to_have_count(0)
        expect(page.get_by_text("percentage points").first).to_be_visible()


def test_audit_page_opens_the_image_where_two_networks_differ_most(shared_weights_dir, monkeypatch, tmp_path):
    """An operator's two-network audit (written as the previous version did: no pair table), opened in the browser:
    the run in words, the comparison, and the side-by-side view of the most different image; no server path."""
    from playwright.sync_api import expect
    from test_audit import fake_audit

    from sensmap import audit

    folder = fake_audit(tmp_path / "audits" / "pets", count=12, models=("toy", "toy2"))
    index = audit.rebuild_index(folder)
    most_different = audit.pairs_of(audit.pair_table(index, write=False), "toy", "toy2")["image_id"].iloc[0]
    monkeypatch.setenv("SENSMAP_AUDITS_DIR", str(tmp_path / "audits"))
    with streamlit_server(shared_weights_dir, "audit-server.log") as (url, _), launch_chromium() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(STEP_TIMEOUT_MS)
        page.goto(url)
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Audit", exact=True).click()
        expect(page.get_by_role("heading", name="Two networks compared")).to_be_visible()
        expect(page.get_by_test_id("stMetric").filter(has_text="Mean Spearman")).to_be_visible()
        expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning")
        compare = page.get_by_test_id("stPlotlyChart").filter(has_text="Two networks, one colour scale")
        # the chart below the select box is drawn first: its layout settling would close an open drop-down
        expect(compare.locator(".js-plotly-plot .main-svg").first).to_be_visible()
        page.wait_for_timeout(500)
        box = page.get_by_test_id("stSelectbox").filter(has_text="Open an image")
        box.locator("input").click()
        page.keyboard.type(most_different)
        page.get_by_role("option").filter(has_text=f"{most_different} —").first.click()
        page.wait_for_timeout(500)  # the rerun request reaches the server
        expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning")
        assert box.locator("input").input_value().startswith(f"{most_different} — Spearman")
        expect(compare.locator(".js-plotly-plot .main-svg").first).to_be_visible()
        compare.scroll_into_view_if_needed()
        page.screenshot(path=ARTIFACTS / "audit-compare.png")
        assert str(tmp_path) not in page.content()


def test_an_onnx_model_from_the_operators_folder_is_mapped_and_compared_with_a_keras_network(
    shared_weights_dir, tmp_path
):
    """An ONNX export (NCHW input, sidecar) beside its Keras original in SENSMAP_MODELS_DIR: chosen as network A in
    the browser, compared with the Keras network on one colour scale."""
    from conftest import build_random_cnn
    from onnx_builders import keras_to_onnx, write_sidecar
    from playwright.sync_api import expect

    shapes = ["circle", "square", "triangle"]
    model = build_random_cnn(48, 64, classes=3, seed=4)
    model.save(tmp_path / "shapes.keras")
    (tmp_path / "shapes.txt").write_text("\n".join(shapes) + "\n", encoding="utf-8")
    keras_to_onnx(model, tmp_path / "shapes_torch.onnx", nchw=True)
    write_sidecar(tmp_path / "shapes_torch.onnx", preprocess="none", output="classes", labels=shapes)
    with streamlit_server(shared_weights_dir, "onnx-server.log", tmp_path) as (url, _), launch_chromium() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(STEP_TIMEOUT_MS)

        idle, open_page, choose = (functools.partial(step, page) for step in (wait_idle, open_page_in, choose_in))
        page.goto(url)
        expect(page.get_by_role("heading", level=1).first).to_contain_text("sensmap")
        open_page("Photos")
        page.get_by_test_id("stFileUploader").locator("input[type=file]").set_input_files(str(shared_photo("owl.jpg")))
        expect(page.get_by_test_id("stAlertContentSuccess")).to_contain_text("added owl.jpg")
        idle()
        open_page("Networks")
        choose("Network A", "shapes_torch (own model, ONNX)")
        expect(page.get_by_text(re.compile(r"shapes_torch \(own model, ONNX\): loaded"))).to_be_visible()
        choose("Network B", "shapes (own model)")
        expect(page.get_by_text(re.compile(r"shapes \(own model\): loaded"))).to_be_visible()
        open_page("Compare")
        page.get_by_role("button", name=re.compile("Run comparison")).click()
        expect(page.get_by_test_id("stMetric").filter(has_text="Spearman rank correlation")).to_be_visible()
        chart = page.get_by_test_id("stPlotlyChart").filter(has_text="Two networks, one colour scale")
        expect(chart.locator(".js-plotly-plot .main-svg").first).to_be_visible()
        page.screenshot(path=ARTIFACTS / "onnx-compare.png", full_page=True)
        assert not page.get_by_test_id("stException").count()


def big_jpeg(path: Path, width: int = 6000, height: int = 4000) -> Path:
    """A 6000×4000 JPEG (about 8 MB: gradients and noise), like a camera's photo."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], -1)
    noise = np.random.default_rng(0).integers(-20, 20, pixels.shape)
    Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


@pytest.mark.parametrize("case", ["slow reading", "6000x4000 JPEG"])
def test_a_page_opened_while_an_upload_is_read_waits_for_the_photo(shared_weights_dir, tmp_path, case):
    """The upload race: a photo sent on the Photos page and the Map page opened 0.3 s later, while the server still
    reads it: owl.jpg with every read 3 s slower (:mod:`slow_reading_server`), or a real 6000×4000 JPEG on the plain
    server, as the issue's user did. The Map page never says "First add a photo": it shows "Reading your upload"
    with a spinner, then the photo and its Run map button, without a reload."""
    from playwright.sync_api import expect

    slow = case == "slow reading"
    photo = shared_photo("owl.jpg") if slow else big_jpeg(tmp_path / "camera.jpg")
    launcher = SLOW_READING_SERVER if slow else None
    launched = streamlit_server(shared_weights_dir, f"upload-race-server-{len(case)}.log", launcher=launcher)
    with launched as (url, _), launch_chromium() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(STEP_TIMEOUT_MS)
        page.goto(url)
        expect(page.get_by_role("heading", level=1).first).to_contain_text("sensmap")
        open_page_in(page, "Photos")
        page.evaluate(WATCH_CLIENT, photo.name)
        page.get_by_test_id("stFileUploader").locator("input[type=file]").set_input_files(str(photo))
        sent = time.perf_counter()
        page.wait_for_timeout(300)
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Map", exact=True).click()
        expect(page.get_by_role("heading", level=1).first).to_contain_text("Map")
        if slow:
            assert time.perf_counter() - sent < 2.5, "the Map page opened after the slow read was over: no race tested"
        page.wait_for_function("window.__client?.photo !== null", timeout=STEP_TIMEOUT_MS)
        wait_idle(page)
        seen = page.evaluate("window.__client")  # the watcher is still there: the page was never reloaded
        assert seen is not None, "the page was reloaded"
        assert seen["stale"] is None, "the Map page said 'First add a photo' while the upload was being read"
        if slow:
            assert seen["spinner"] is not None and seen["spinner"] < seen["photo"], seen
        assert seen["errors"] == [], seen["errors"]
        expect(page.get_by_test_id("stImageCaption").filter(has_text=photo.name)).to_be_visible()
        expect(page.get_by_role("button", name=re.compile("Run map"))).to_be_enabled()
        expect(page.get_by_text("First add a photo")).to_have_count(0)
        page.screenshot(path=ARTIFACTS / f"upload-race-map-{'slow' if slow else 'camera'}.png", full_page=True)


def test_the_map_page_opened_while_the_photo_is_still_transferring_comes_to_the_photo(shared_weights_dir):
    """The upload's transfer to the server is held for 3 s (Playwright delays the PUT), and the user opens the Map
    page 0.3 s after choosing the file, before the server has anything. When the transfer ends, the Map page comes
    to the photo by itself: no reload, no click, no error."""
    from playwright.sync_api import expect

    held: list[float] = []

    def hold_transfer(route) -> None:
        if route.request.method == "PUT":
            held.append(time.perf_counter())
            time.sleep(3.0)
        route.continue_()

    with streamlit_server(shared_weights_dir, "upload-transfer-server.log") as (url, _), launch_chromium() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(STEP_TIMEOUT_MS)
        page.goto(url)
        expect(page.get_by_role("heading", level=1).first).to_contain_text("sensmap")
        open_page_in(page, "Photos")
        page.route("**/_stcore/upload_file/**", hold_transfer)
        page.evaluate(WATCH_CLIENT, "owl.jpg")
        page.get_by_test_id("stFileUploader").locator("input[type=file]").set_input_files(str(shared_photo("owl.jpg")))
        page.wait_for_timeout(300)
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Map", exact=True).click()
        expect(page.get_by_role("heading", level=1).first).to_contain_text("Map")
        page.wait_for_function("window.__client?.photo !== null", timeout=60_000)
        wait_idle(page)
        assert held, "the transfer was held"
        seen = page.evaluate("window.__client")
        assert seen is not None, "the page was reloaded"
        assert seen["errors"] == [], seen["errors"]
        expect(page.get_by_role("heading", level=1).first).to_contain_text("Map")
        expect(page.get_by_test_id("stImageCaption").filter(has_text="owl.jpg")).to_be_visible()
        expect(page.get_by_text("First add a photo")).to_have_count(0)
        page.screenshot(path=ARTIFACTS / "upload-transfer-map.png", full_page=True)
