"""Several real browser clients on one dashboard server, and stopping a long map from the browser.

One ``streamlit run app.py`` on 127.0.0.1 (see :func:`test_browser.streamlit_server`) and Debian
Chromium through Playwright: three browser contexts (three sessions) map three photos at the same
time; one session changes a setting and leaves the page while a long map runs. Wall times, stop
latencies and the server's peak resident memory (``/proc/<pid>/statm``) are printed.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import shared_photo
from test_browser import ARTIFACTS, STEP_TIMEOUT_MS, VIEWPORT, launch_chromium, streamlit_server
from test_ui_concurrency import MIB, RssSampler

pytestmark = pytest.mark.browser

SMALL = "MobileNet α0.25 128px"
CLIENT_PHOTOS = ["hot_dog.jpg", "coffee.png", "wolf_snow.webp"]
BATCH = 64  # sensmap.engine.auto_batch_size(224, 224)
STOP_BOUND_S = 20.0  # a stop waits for the batch being computed (64 images through MobileNetV2 on a shared CPU)


@pytest.fixture(scope="module")
def dashboard(shared_weights_dir: Path) -> Iterator[tuple[str, int]]:
    """``(url, server pid)`` of one dashboard server for the tests of this module."""
    with streamlit_server(shared_weights_dir, "clients-server.log") as (url, process):
        yield url, process.pid


@pytest.fixture(scope="module")
def chromium():
    with launch_chromium() as browser:
        yield browser


class Client:
    """One browser context (its own cookies and Streamlit session) with one page."""

    def __init__(self, browser, url: str) -> None:
        self.context = browser.new_context(viewport=VIEWPORT)
        self.page = self.context.new_page()
        self.page.set_default_timeout(STEP_TIMEOUT_MS)
        self.page.goto(url)

    def expect(self, locator):
        from playwright.sync_api import expect

        return expect(locator)

    def idle(self) -> None:
        """Wait until the script run started by the last action is over."""
        self.page.wait_for_timeout(300)  # the rerun request reaches the server
        self.expect(self.page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning")

    def heading(self, title: str) -> None:
        self.expect(self.page.get_by_role("heading", level=1).first).to_contain_text(title)

    def open_page(self, title: str) -> None:
        self.page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
        self.heading(title)
        self.idle()

    def choose(self, label: str, option: str) -> None:
        box = self.page.get_by_test_id("stSelectbox").filter(has_text=label)
        box.locator("input").click()
        self.page.keyboard.type(option)
        self.page.get_by_role("option", name=re.compile(re.escape(option))).first.click()
        self.idle()

    def upload(self, name: str) -> None:
        self.page.get_by_test_id("stFileUploader").locator("input[type=file]").set_input_files(str(shared_photo(name)))

    def chart(self):
        return self.page.get_by_test_id("stPlotlyChart").locator(".js-plotly-plot .main-svg").first

    def main_text(self) -> str:
        return self.page.get_by_test_id("stMain").inner_text()

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=ARTIFACTS / f"clients-{name}.png", full_page=True)

    def close(self) -> None:
        self.context.close()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used, from ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_for(pid: int, timeout_s: float, window_s: float = 0.25, idle_cores: float = 0.25) -> float:
    """Seconds until the process goes idle (under ``idle_cores`` of CPU over a ``window_s`` window):
    how long a stopped map's thread keeps computing (its batch in flight) plus drawing the next page."""
    started = last = time.perf_counter()
    used = cpu_seconds(pid)
    while True:
        time.sleep(window_s)
        now, cpu = time.perf_counter(), cpu_seconds(pid)
        if (cpu - used) / (now - last) < idle_cores:
            return last - started
        if now - started > timeout_s:
            pytest.fail(f"the server still computes {timeout_s:.0f} s after the stop")
        last, used = now, cpu


def wait_until(condition: Callable[[], bool], timeout_s: float, poll_s: float = 0.05) -> float:
    """Poll ``condition`` until true; the seconds it took (fails after ``timeout_s``)."""
    started = time.perf_counter()
    while not condition():
        if time.perf_counter() - started > timeout_s:
            pytest.fail(f"not within {timeout_s:.0f} s")
        time.sleep(poll_s)
    return time.perf_counter() - started


def test_three_clients_map_their_own_photos_at_once(dashboard, chromium):
    url, pid = dashboard
    clients: list[Client] = []
    with RssSampler(pid, interval=0.05) as rss:
        rss.mark("server started")
        try:
            started = time.perf_counter()
            clients = [Client(chromium, url) for _ in CLIENT_PHOTOS]
            for client in clients:
                client.heading("sensmap")
            for client, name in zip(clients, CLIENT_PHOTOS, strict=True):
                client.open_page("Photos")
                client.upload(name)
            for client, name in zip(clients, CLIENT_PHOTOS, strict=True):
                client.expect(client.page.get_by_test_id("stAlertContentSuccess")).to_contain_text(f"added {name}")
            for client in clients:
                client.open_page("Networks")
                client.choose("Network A", SMALL)
                client.expect(client.page.get_by_text(f"{SMALL}: loaded, input 128×128 px")).to_be_visible()
                client.open_page("Map")
                client.expect(client.page.get_by_text(re.compile(r"Cost: [\d,]+ forward passes"))).to_be_visible()
            setup_s = time.perf_counter() - started

            rss.mark("before the maps")
            rss.reset_peak()
            started = time.perf_counter()
            for client in clients:  # three maps at once: each click starts a script run in the server
                client.page.get_by_role("button", name=re.compile("Run map")).click()
            done = {}
            for client, name in zip(clients, CLIENT_PHOTOS, strict=True):
                client.expect(client.chart()).to_be_visible()
                client.idle()
                done[name] = time.perf_counter() - started
            maps_s = time.perf_counter() - started
            peak = rss.peak
            rss.mark("after the maps")

            for client, name in zip(clients, CLIENT_PHOTOS, strict=True):
                client.expect(client.page.get_by_text("percentage points").first).to_be_visible()
                text = client.main_text()
                assert name in text and not [o for o in CLIENT_PHOTOS if o != name and o in text], (name, text[:300])
                client.shot(f"map-{name.split('.')[0]}")
                client.open_page("Photos")
                client.expect(client.page.get_by_text("1 photo(s)")).to_be_visible()
                text = client.main_text()
                assert name in text and not [o for o in CLIENT_PHOTOS if o != name and o in text], (name, text[:300])
        finally:
            for client in clients:
                client.close()

    finishes = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in done.items())
    print(
        f"\n{len(clients)} browser clients, {SMALL}, default covers: setup {setup_s:.1f} s; three maps at once "
        f"{maps_s:.1f} s wall ({finishes}); server RSS {rss.marks['server started'] / MIB:.0f} MiB at start, "
        f"{rss.marks['before the maps'] / MIB:.0f} MiB before the maps, peak {peak / MIB:.0f} MiB during them "
        f"(+{(peak - rss.marks['before the maps']) / MIB:.0f} MiB), {rss.marks['after the maps'] / MIB:.0f} MiB after"
    )
    assert peak - rss.marks["before the maps"] < 1536 * MIB


def test_changing_a_setting_or_leaving_the_page_stops_a_long_map(dashboard, chromium):
    url, pid = dashboard
    client = Client(chromium, url)
    page = client.page
    progress = page.get_by_test_id("stProgress")
    stopped = page.get_by_text(re.compile("Stopped: the map of MobileNetV2 on hot_dog.jpg was interrupted"))
    under_way = re.compile(r"MobileNetV2 on hot_dog\.jpg: [1-9][\d,]* of [\d,]+ forward passes \(map\)")

    def start_long_map() -> None:
        page.get_by_role("button", name=re.compile("Run map")).click()
        client.expect(progress).to_contain_text(under_way)  # at least one batch done

    def passes_done() -> int:
        """Forward passes the progress bar shows now."""
        return int(re.search(r": ([\d,]+) of", progress.inner_text()).group(1).replace(",", ""))

    def passes_when_stopped() -> int:
        """Forward passes done when the run stopped, from the "Stopped" notice."""
        return int(re.search(r"after ([\d,]+) of", stopped.inner_text()).group(1).replace(",", ""))

    with RssSampler(pid, interval=0.05) as rss:
        try:
            client.heading("sensmap")
            client.open_page("Photos")
            client.upload("hot_dog.jpg")
            client.expect(page.get_by_test_id("stAlertContentSuccess")).to_contain_text("added hot_dog.jpg")
            client.open_page("Map")  # network A: MobileNetV2 224 px; the default covers reach down to 1/16
            page.get_by_test_id("stRadio").filter(has_text="Engine").get_by_text("Dense", exact=True).click()
            client.idle()  # a long map: batches of 64 through the whole network
            client.expect(page.get_by_text(re.compile(r"Cost: 1,244 forward passes for the map"))).to_be_visible()
            rss.mark("before")

            # 1. A setting changes mid-run: the stride goes from 1/2 to 3/4.
            start_long_map()
            rss.mark("running")
            stride = page.get_by_test_id("stSlider").filter(has_text="Stride").get_by_role("slider")
            stride.focus()
            seen = passes_done()
            page.keyboard.press("ArrowLeft")
            new_cost = page.get_by_text(re.compile(r"Cost: 596 forward passes for the map"))
            setting_stop_s = wait_until(
                lambda: progress.count() == 0 and stopped.is_visible() and new_cost.is_visible(), STOP_BOUND_S
            )
            setting_busy_s = setting_stop_s + busy_for(pid, STOP_BOUND_S)
            client.idle()
            client.expect(page.get_by_text("Press Run map to compute the map.")).to_be_visible()  # new settings: no map
            # Fast reruns: the next run reports the stop at once, while the old run ends the batch in flight.
            setting_extra = passes_when_stopped() - seen
            assert 0 <= setting_extra <= 3 * BATCH, "the notice counts the passes done when the setting changed"
            client.shot("stopped-by-a-setting")
            rss.mark("stopped by the setting")

            # 2. The page is left mid-run (stride back to 1/2 for a long map again).
            stride.focus()
            page.keyboard.press("ArrowRight")
            client.expect(page.get_by_text(re.compile(r"Cost: 1,244 forward passes"))).to_be_visible()
            client.idle()
            start_long_map()
            photos_heading = page.get_by_role("heading", level=1).filter(has_text="Photos")
            seen = passes_done()
            page.get_by_test_id("stSidebarNav").get_by_role("link", name="Photos", exact=True).click()
            leave_stop_s = wait_until(lambda: photos_heading.count() == 1 and progress.count() == 0, STOP_BOUND_S)
            leave_busy_s = leave_stop_s + busy_for(pid, STOP_BOUND_S)
            client.idle()
            rss.mark("stopped by leaving")
            client.open_page("Map")  # back: the interrupted run is reported, its partial map kept and marked
            client.expect(stopped).to_be_visible()
            client.expect(
                page.get_by_text(re.compile(r"Partial map: the run was stopped with \d of 4 cover sizes done: 1/2"))
            ).to_be_visible()
            assert progress.count() == 0
            leave_extra = passes_when_stopped() - seen
            assert 0 <= leave_extra <= 3 * BATCH, "the notice counts the passes done when the page was left"
            client.shot("stopped-by-leaving")
            peak = rss.peak
        finally:
            client.close()
    print(
        f"\nstop latency (MobileNetV2, covers down to 1/16, batches of {BATCH}): setting changed: page updated "
        f"{setting_stop_s:.2f} s, server idle {setting_busy_s:.2f} s (notice: +{setting_extra} passes); "
        f"page left: next page {leave_stop_s:.2f} s, server idle {leave_busy_s:.2f} s (notice: +{leave_extra} "
        f"passes); server RSS before {rss.marks['before'] / MIB:.0f} MiB, running "
        f"{rss.marks['running'] / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB, after the stops "
        f"{rss.marks['stopped by the setting'] / MIB:.0f} / {rss.marks['stopped by leaving'] / MIB:.0f} MiB"
    )
