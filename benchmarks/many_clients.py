"""Many browser clients at once on one dashboard server, without and with a Ray cluster — not a test; prints tables.

    .venv/bin/python benchmarks/many_clients.py                        # 8 clients; scenarios "local", then "ray"
    .venv/bin/python benchmarks/many_clients.py --clients 2 --scenario local
    .venv/bin/python benchmarks/many_clients.py --ray-workers 2 --out test-artifacts/many_clients.json
    .venv/bin/python benchmarks/many_clients.py --wait-for-transfer   # Map 0.3 s after the photo reached the server

One ``streamlit run app.py`` on 127.0.0.1 with the shared weights (the tests' :func:`test_browser.streamlit_server`)
and one headless Chromium (Debian's) through Playwright's async API: each client is a browser context of its own (its
own Streamlit session). First one warm-up client uploads a photo and opens the Map page (network A loads; with Ray,
it waits until the page says "Map jobs run on the Ray cluster at …"). Then, all at the same moment, every client
uploads its own photo on the Photos page, opens the Map page 0.3 s after the upload is sent (before the server has
read it), and presses Run map as soon as the page shows its photo.

Per client: whether the Map page ever said "First add a photo" (it must not), whether it showed its own photo with
no reload (the page's watcher, :data:`test_browser.WATCH_CLIENT`, lives as long as the document), the queue lines
it saw ("2nd of 8 in the queue (1 job computing), about 40 s"), and seconds from the Run-map click to the final map
(the overlay chart drawn, nothing refining) and to a quiet page (no progress bar left: the map's faithfulness
check done, which waits in the same queue; the queue lines of both). For a client that failed, when its photo's
transfer to the server (the browser's PUT) ended or failed against its Map click. Also the server's peak resident
memory (the server and its child processes, e.g. the Ray gateway) during the clients' run and, with Ray, the
cluster's (every process of its session).

Scenario "local": maps run on the server (``[queue] max_running`` 1). Scenario "ray": a local one-node cluster
(``tests/ray_clusters.local_cluster``, ``--ray-cpus`` CPUs) and the server with ``SENSMAP_RAY_ADDRESS`` and
``SENSMAP_RAY_ACTORS`` = ``--ray-workers``. Server logs: ``test-artifacts/browser/many-clients-<scenario>.log``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from _needs import require

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))  # server, Ray

from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, STEP_TIMEOUT_MS, VIEWPORT, WATCH_CLIENT  # noqa: E402

CLIENT_PHOTOS = ["cat_720p.jpg", "chelsea.png", "coffee.png", "deer_whitetail.webp", "horse_haflinger.webp",
                 "hot_dog.jpg", "owl.jpg", "wolf_snow.webp", "parrot.jpg", "horse_mangalarga.jpg",
                 "horses_icelandic.webp"]  # fmt: skip
WARM_UP_PHOTO = "pets.jpg"
OPEN_MAP_AFTER_S = 0.3
MIB = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")
WHERE = re.compile(r"(Map jobs run on the Ray cluster at [^\n]*|Connecting to the Ray cluster[^\n]*|"
                   r"Maps run on this server[^\n]*)")  # fmt: skip


def machine() -> str:
    """CPU model, cores, memory, OS and Python of this machine."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.MULTILINE)
    memory = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    gib = f"{int(memory.group(1)) / 1024**2:.0f} GiB RAM" if memory else "RAM unknown"
    return (f"{model.group(1).strip() if model else platform.processor() or 'unknown CPU'}, {os.cpu_count()} cores, "
            f"{gib}, {platform.system()} {platform.release()}, Python {platform.python_version()}")  # fmt: skip


def process_tree(pid: int) -> set[int]:
    """``pid`` and all its descendants (from ``/proc/<pid>/task/<tid>/children``)."""
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        if parent in found:
            continue
        found.add(parent)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{parent}/task"):
                with contextlib.suppress(OSError):
                    todo += [int(child) for child in Path(f"/proc/{parent}/task/{task}/children").read_text().split()]
    return found


def resident(pids: Iterable[int]) -> int:
    """Bytes resident in memory, summed over ``pids`` (those that ended count 0)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    return total


class PeakMemory:
    """The largest summed RSS of a changing set of processes (``pids()``), sampled every ``interval`` s."""

    def __init__(self, pids: Callable[[], Iterable[int]], interval: float) -> None:
        self.pids, self.interval = pids, interval
        self.start = self.peak = self.now()
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        return resident(self.pids())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            pids = set(self.pids())
            self.processes = max(self.processes, len(pids))
            self.peak = max(self.peak, resident(pids))

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def report(self) -> dict:
        return {"before_mib": round(self.start / MIB), "peak_mib": round(self.peak / MIB),
                "after_mib": round(self.now() / MIB), "processes": self.processes}  # fmt: skip


async def wait_idle(page) -> None:
    from playwright.async_api import expect

    await page.wait_for_timeout(400)  # the rerun request reaches the server
    await expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning")


async def open_page(page, title: str, idle: bool = True) -> None:
    from playwright.async_api import expect

    await page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    await expect(page.get_by_role("heading", level=1).first).to_contain_text(title)
    if idle:
        await wait_idle(page)


async def new_client(browser, url: str):
    """A browser context (its own Streamlit session) on the dashboard's Photos page."""
    from playwright.async_api import expect

    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    page.set_default_timeout(STEP_TIMEOUT_MS)
    await page.goto(url)
    await expect(page.get_by_role("heading", level=1).first).to_contain_text("sensmap")
    await open_page(page, "Photos")
    return context, page


async def warm_up(browser, url: str, cluster: bool, timeout_s: float) -> dict:
    """One client uploads a photo and opens the Map page (network A loads); with a cluster, until the page says
    that map jobs run there. Seconds taken and the page's line on where maps run."""
    from conftest import shared_photo
    from playwright.async_api import expect

    started = time.perf_counter()
    context, page = await new_client(browser, url)
    await (
        page.get_by_test_id("stFileUploader")
        .locator("input[type=file]")
        .set_input_files(str(shared_photo(WARM_UP_PHOTO)))
    )
    await expect(page.get_by_test_id("stAlertContentSuccess")).to_contain_text(f"added {WARM_UP_PHOTO}")
    await open_page(page, "Map")
    await expect(page.get_by_text(re.compile(r"Cost: [\d,]+ forward passes")).first).to_be_visible()
    where = WHERE.search(await page.get_by_test_id("stMain").inner_text())
    while cluster and not (where and where.group(0).startswith("Map jobs run on the Ray cluster")):
        if time.perf_counter() - started > timeout_s:
            raise RuntimeError(f"the dashboard did not reach the Ray cluster within {timeout_s:.0f} s: "
                               f"{where.group(0) if where else 'no line on where maps run'}")  # fmt: skip
        await page.wait_for_timeout(2000)
        await open_page(page, "Map")  # the line is drawn with the page
        where = WHERE.search(await page.get_by_test_id("stMain").inner_text())
    await context.close()
    return {"seconds": round(time.perf_counter() - started, 1), "where": where.group(0) if where else None}


def watch_upload(page, row: dict, since: float) -> None:
    """Note in ``row`` when the browser's transfer of the photo (its PUT to ``/_stcore/upload_file``) ended or failed,
    in seconds after ``since``: whether the photo had reached the server when the Map page was clicked."""

    def ended(request, key: str) -> None:
        if "/_stcore/upload_file" in request.url and request.method == "PUT":
            row.setdefault(key, round(time.perf_counter() - since, 2))

    page.on("requestfinished", lambda request: ended(request, "upload_transfer_done_s"))
    page.on("requestfailed", lambda request: ended(request, "upload_transfer_failed_s"))


async def one_client(browser, url: str, photo: str, others: list[str], ready: Callable, go: asyncio.Event,
                     timeout_s: float, wait_for_transfer: bool) -> dict:  # fmt: skip
    """One client's upload, Map page and map (see the module notes); what it saw."""
    from conftest import shared_photo

    row: dict = {"photo": photo, "error": None, "run_clicks": 0}
    context, page = await new_client(browser, url)
    try:
        await page.evaluate(WATCH_CLIENT, photo)
        ready()
        await go.wait()
        upload = page.get_by_test_id("stFileUploader").locator("input[type=file]")
        chosen = time.perf_counter()
        watch_upload(page, row, chosen)
        await upload.set_input_files(str(shared_photo(photo)))
        sent = time.perf_counter()
        row["files_set_s"] = round(sent - chosen, 2)
        while wait_for_transfer and "upload_transfer_done_s" not in row and time.perf_counter() - sent < 120:
            await asyncio.sleep(0.05)  # the gentler variant: the Map page opens once the photo is on the server
        await asyncio.sleep(OPEN_MAP_AFTER_S)
        row["map_clicked_s"] = round(time.perf_counter() - chosen, 2)
        await open_page(page, "Map", idle=False)
        row["map_opened_after_upload_s"] = round(time.perf_counter() - sent, 2)
        await page.wait_for_function("window.__client?.photo !== null", timeout=STEP_TIMEOUT_MS, polling=100)
        row["upload_to_own_photo_s"] = round(time.perf_counter() - sent, 2)
        run = page.get_by_role("button", name=re.compile("Run map"))
        await page.evaluate("window.__client.click = performance.now()")
        taken = ("window.__client.final !== null || window.__client.waits.length > 0 || "
                 "document.querySelector('[data-testid=stMain] [data-testid=stProgress]') !== null")  # fmt: skip
        for _ in range(3):  # a click the server never saw (no bar, no map) is repeated, and counted
            await run.click()
            row["run_clicks"] += 1
            with contextlib.suppress(Exception):
                await page.wait_for_function(taken, timeout=30_000, polling=100)
                break
        await page.wait_for_function("window.__client.done !== null && performance.now() - window.__client.done > 2000",
                                     timeout=timeout_s * 1000, polling=250)  # fmt: skip
    except Exception as exc:  # a client that never got its map is reported, not fatal to the others
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    seen, text = None, ""
    try:
        seen = await page.evaluate("window.__client ?? null")
        text = await page.get_by_test_id("stMain").inner_text(timeout=10_000)
        await page.screenshot(path=str(ARTIFACTS / f"many-clients-{photo.split('.')[0]}.png"), full_page=True)
    except Exception as exc:
        row["error"] = row["error"] or f"reading the page: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    finally:
        await context.close()
    where = WHERE.search(text)

    def after_click(mark: str) -> float | None:
        value = seen and seen.get(mark)
        return round((value - seen["click"]) / 1000, 2) if value is not None and seen.get("click") else None

    row.update(
        reloaded=seen is None,
        saw_stale_page=bool(seen and seen["stale"] is not None),
        saw_spinner=bool(seen and seen["spinner"] is not None),
        saw_own_photo=bool(seen and seen["photo"] is not None) and photo in text and not any(o in text for o in others),
        queue_lines=seen["waits"] if seen else [],
        page_errors=seen["errors"] if seen else [],
        click_to_final_map_s=after_click("final"),
        click_to_quiet_page_s=after_click("done"),
        where=where.group(0) if where else None,
    )
    return row


async def run_clients(
    url: str, photos: list[str], cluster: bool, timeout_s: float, memory: Callable, wait_for_transfer: bool
) -> dict:
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=STEP_TIMEOUT_MS)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            warm = await warm_up(browser, url, cluster, timeout_s=240)
            print(f"  warm-up {warm['seconds']} s: {warm['where'] or 'no line on where maps run'}", flush=True)
            go, count = asyncio.Event(), [0]

            def ready() -> None:
                count[0] += 1
                if count[0] == len(photos):
                    go.set()

            with memory() as samplers:
                started = time.perf_counter()
                rows = await asyncio.gather(*[
                    one_client(browser, url, photo, [o for o in photos if o != photo], ready, go, timeout_s,
                               wait_for_transfer)
                    for photo in photos
                ])  # fmt: skip
                wall = time.perf_counter() - started
        finally:
            await browser.close()
    return {"warm_up": warm, "clients": rows, "wall_s": round(wall, 1),
            "memory": {name: sampler.report() for name, sampler in samplers.items()}}  # fmt: skip


class Memory(contextlib.ExitStack):
    """The peak-memory samplers of one scenario (the server tree; the cluster's processes when there is one)."""

    def __init__(self, server_pid: int, cluster_pids: Callable[[set[int]], Iterable[int]] | None) -> None:
        super().__init__()
        self.server_pid, self.cluster_pids = server_pid, cluster_pids
        self.samplers: dict[str, PeakMemory] = {}

    def __enter__(self) -> dict:
        super().__enter__()
        self.samplers["server"] = self.enter_context(PeakMemory(lambda: process_tree(self.server_pid), 0.1))
        if self.cluster_pids is not None:
            pids = self.cluster_pids
            self.samplers["cluster"] = self.enter_context(
                PeakMemory(lambda: pids(process_tree(self.server_pid) | {os.getpid()}), 0.5)
            )
        return self.samplers


def scenario(name: str, photos: list[str], args: argparse.Namespace) -> dict:
    """Start the server (and, for "ray", the cluster), run the clients, read the server log."""
    from conftest import WEIGHTS
    from test_browser import SLOW_READING_SERVER, streamlit_server

    log_name = f"many-clients-{name}.log"
    env = {"SENSMAP_RAY_ADDRESS": ""}
    launcher = None
    if args.read_delay > 0:
        env["SENSMAP_TEST_READ_DELAY_S"], launcher = str(args.read_delay), SLOW_READING_SERVER
    with contextlib.ExitStack() as stack:
        cluster_pids = None
        if name == "ray":
            from ray_clusters import _session_pids, local_cluster

            address, cluster_env, temp = stack.enter_context(local_cluster(cpus=args.ray_cpus))
            env = {**env, **cluster_env, "SENSMAP_RAY_ADDRESS": address, "SENSMAP_RAY_ACTORS": str(args.ray_workers)}

            def cluster_pids(skip: set[int]) -> list[int]:
                return _session_pids(temp, skip)

            print(f"  Ray cluster at {address} ({args.ray_cpus} CPUs), {args.ray_workers} actors", flush=True)
        url, process = stack.enter_context(streamlit_server(WEIGHTS, log_name, env=env, launcher=launcher))
        result = asyncio.run(
            run_clients(
                url,
                photos,
                name == "ray",
                args.timeout,
                lambda: Memory(process.pid, cluster_pids),
                args.wait_for_transfer,
            )
        )
    log = (ARTIFACTS / log_name).read_text(errors="replace")
    result["server_log"] = {"path": str((ARTIFACTS / log_name).relative_to(REPO)),
                            "tracebacks": log.count("Traceback (most recent call last)"),
                            "error_lines": [line[:300] for line in log.splitlines()
                                            if re.search(r"\b(Error|Exception|error)\b", line)][:20]}  # fmt: skip
    return result


def spread(values: list[float]) -> str:
    if not values:
        return "none"
    return f"min {min(values):.1f} s, median {statistics.median(values):.1f} s, max {max(values):.1f} s"


QUEUE_LINE = re.compile(r"^(next|\d+\w\w of \d+) in the queue \((\d+) jobs? computing\), about (.+)$")


def queue_summary(lines: list[str]) -> str:
    """The positions a client saw, in order, and its first and last expected waits: ``3rd of 7 → next; 1.2 min →
    0 s (25 lines)``."""
    if not lines:
        return "never waited"
    parsed = [QUEUE_LINE.match(line) for line in lines]
    positions = list(dict.fromkeys(m.group(1) for m in parsed if m))
    waits = [m.group(3) for m in parsed if m]
    eta = f"; about {waits[0]} → {waits[-1]}" if waits else ""
    return f"{' → '.join(positions) or lines[0]}{eta} ({len(lines)} lines)"


def timeline(row: dict) -> str:
    """When the client's upload and Map click happened, in seconds after it chose the file."""
    steps = [("files set", "files_set_s"), ("Map clicked", "map_clicked_s"),
             ("photo transfer to the server done", "upload_transfer_done_s"),
             ("photo transfer FAILED", "upload_transfer_failed_s")]  # fmt: skip
    said = [f"{what} {row[key]:.2f} s" for what, key in steps if row.get(key) is not None]
    if row.get("map_opened_after_upload_s") is not None:
        said.append(f"Map page shown {row['files_set_s'] + row['map_opened_after_upload_s']:.2f} s")
    else:
        said.append("the Map page never showed")
    if not row.get("upload_transfer_done_s") and not row.get("upload_transfer_failed_s"):
        said.append("no photo transfer seen")
    return ", ".join(said)


def print_table(name: str, result: dict) -> None:
    rows = result["clients"]
    header = (f"{'client':>6}  {'photo':<22} {'stale page':<10} {'own photo':<9} {'click→map s':>11} "
              f"{'→quiet s':>8}  queue positions seen")  # fmt: skip
    print(
        f"\nScenario {name}: {len(rows)} clients, wall {result['wall_s']} s "
        f"(warm-up {result['warm_up']['seconds']} s before; {result['warm_up']['where'] or 'maps on this server'})"
    )
    print(header)
    print("-" * len(header))

    def seconds(value: float | None) -> str:
        return "—" if value is None else f"{value:.1f}"

    for number, row in enumerate(rows, 1):
        queue = queue_summary(row["queue_lines"])
        print(f"{number:>6}  {row['photo']:<22} {'YES' if row['saw_stale_page'] else 'no':<10} "
              f"{'yes' if row['saw_own_photo'] else 'NO':<9} {seconds(row['click_to_final_map_s']):>11} "
              f"{seconds(row['click_to_quiet_page_s']):>8}  {queue}")  # fmt: skip
        for problem in [row["error"], *row["page_errors"]] + (["the page was reloaded"] if row["reloaded"] else []):
            if problem:
                print(f"{'':>8}problem: {problem}")
        if row["error"] or row["saw_stale_page"] or not row["saw_own_photo"]:
            print(f"{'':>8}timeline: {timeline(row)}")
    finals = [r["click_to_final_map_s"] for r in rows if r["click_to_final_map_s"] is not None]
    quiet = [r["click_to_quiet_page_s"] for r in rows if r["click_to_quiet_page_s"] is not None]
    print(f"click → final map: {spread(finals)} ({len(finals)} of {len(rows)} clients got their map)")
    print(f"click → quiet page (faithfulness check done): {spread(quiet)}")
    for who, numbers in result["memory"].items():
        print(f"{who} memory: {numbers['before_mib']} MiB before the clients, peak {numbers['peak_mib']} MiB "
              f"during them, {numbers['after_mib']} MiB after ({numbers['processes']} processes at most)")  # fmt: skip
    log = result["server_log"]
    print(f"server log {log['path']}: {log['tracebacks']} traceback(s)"
          + "".join(f"\n    {line}" for line in log["error_lines"][:8]))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8, help=f"browser clients (1 to {len(CLIENT_PHOTOS)})")
    parser.add_argument("--scenario", choices=["local", "ray", "both"], default="both")
    parser.add_argument("--ray-workers", type=int, default=2, help="map actors on the cluster (SENSMAP_RAY_ACTORS)")
    parser.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument(
        "--read-delay",
        type=float,
        default=0.0,
        help="seconds every photo read sleeps in the server (tests/slow_reading_server.py)",
    )
    parser.add_argument("--wait-for-transfer", action="store_true",
                        help="open the Map page 0.3 s after the photo's transfer to the server ended (not after the "
                        "file was chosen)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds a client waits for its map")
    parser.add_argument("--out", type=Path, default=REPO / "test-artifacts" / "many_clients.json")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= len(CLIENT_PHOTOS):
        parser.error(f"--clients must be 1 to {len(CLIENT_PHOTOS)} (one shared photo each)")
    needs = {"playwright": "playwright", "streamlit": "streamlit"}
    if args.scenario != "local":
        needs["ray"] = "ray[data]"
    require(needs)
    photos = CLIENT_PHOTOS[: args.clients]
    report = {"machine": machine(), "clients": args.clients, "photos": photos, "ray_workers": args.ray_workers,
              "ray_cpus": args.ray_cpus, "read_delay_s": args.read_delay, "open_map_after_s": OPEN_MAP_AFTER_S,
              "wait_for_transfer": args.wait_for_transfer,
              "load_average_1min": round(os.getloadavg()[0], 2), "scenarios": {}}  # fmt: skip
    print(f"Machine: {report['machine']}; load average {report['load_average_1min']}")
    for name in ["local", "ray"] if args.scenario == "both" else [args.scenario]:
        print(f"scenario {name}: starting", flush=True)
        report["scenarios"][name] = scenario(name, photos, args)
        print_table(name, report["scenarios"][name])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(f"\nwrote {args.out}")
    bad = [(name, r["photo"]) for name, s in report["scenarios"].items() for r in s["clients"]
           if r["saw_stale_page"] or not r["saw_own_photo"] or r["click_to_final_map_s"] is None]  # fmt: skip
    if bad:
        print(f"clients with a stale page, another photo or no map: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
