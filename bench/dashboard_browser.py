"""``python -m bench.dashboard_browser ROOT [--repeats N]``: each page's first meaningful render in a fresh browser.

Starts the dashboard (``streamlit run``) on ROOT on a free loopback port and opens each page in a new headless
Chromium (a new profile every time: no cached scripts, a new session) at 1280×800, timing from the request to the
page's first meaningful element: the Overview's runs table, the Layer map's drawn heat map, the Gallery's grid of
images, the Edits page's summary table. The pages are interleaved and repeated (round r opens every page once, in an
order rotated by r), so a burst of load on a shared machine slows one round of every page rather than every repeat
of one; it prints each page's median with its range, and where the Layer map's heat map starts on the screen. The
first request after the server starts (Python imports, the root's first DuckDB queries) is timed apart: a served
dashboard pays it once, not per visitor.
"""

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.generation import _spread, schedule

CHROMEDRIVER = "/usr/bin/chromedriver"
REPO = Path(__file__).resolve().parents[1]
# Page path -> the CSS selector of its first meaningful element.
PAGES = {"Overview": ("", "[data-testid='stDataFrame']"),
         "Layer map": ("layer_map", ".vega-embed svg .cells_marks path"),  # a drawn cell of the heat map
         "Gallery": ("gallery", ".gallery-block img"),
         "Edits": ("edits", "[data-testid='stDataFrame']")}
GOAL_S = {"Layer map": 3.0}
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,800")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(root: str, checkout: Path = REPO) -> tuple[subprocess.Popen, str]:
    """The dashboard of ``checkout`` on ``root``, started and healthy, and its URL."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/main.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--", "--artifacts", root],
        cwd=checkout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return process, url
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(f"the dashboard did not start on {root}") from None
            time.sleep(0.2)


def first_render(url: str, page: str) -> tuple[float, float | None]:
    """Seconds from opening ``page`` in a new browser to its first meaningful element, and where the element's top
    lies on the screen (pixels from the top)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    for flag in FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            path, selector = PAGES[page]
            driver.get("about:blank")
            started = time.perf_counter()
            driver.get(f"{url}/{path}")
            element = WebDriverWait(driver, 120, poll_frequency=0.02).until(
                seen.presence_of_element_located((By.CSS_SELECTOR, selector)))
            seconds = time.perf_counter() - started
            top = driver.execute_script("return arguments[0].getBoundingClientRect().top", element)
        finally:
            driver.quit()
    return seconds, top


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard_browser", description=__doc__.split("\n")[0])
    parser.add_argument("root", help="the artifact root (e.g. make demo's artifacts/)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of every page (default 5)")
    parser.add_argument("--pages", nargs="+", default=list(PAGES), choices=list(PAGES), help="pages to time")
    parser.add_argument("--checkout", type=Path, default=REPO,
                        help="the LocoLab checkout whose dashboard to serve (default this one; run with that "
                             "checkout's Python to compare versions)")
    args = parser.parse_args(argv)
    if not Path(args.root, "tables").is_dir() or not Path(CHROMEDRIVER).exists():
        print(f"not timed: {args.root} holds no results (make demo-compute writes them) or {CHROMEDRIVER} is missing "
              "(apt-get install chromium chromium-driver)")
        return {}
    process, url = serve(args.root, args.checkout)
    times: dict[str, list[float]] = {page: [] for page in args.pages}
    tops: dict[str, list[float]] = {page: [] for page in args.pages}
    try:
        cold, _ = first_render(url, args.pages[0])
        for page in schedule(args.pages, args.repeats):
            seconds, top = first_render(url, page)
            times[page].append(seconds)
            tops[page].append(top)
    finally:
        process.terminate()
        process.wait(30)
    print(f"First meaningful render in a fresh headless Chromium at 1280×800, {args.root} ({args.checkout}): "
          f"{args.repeats} interleaved rounds, median [min, max] in s")
    print(f"  first request after the server started ({args.pages[0]}): {cold:.2f} s")
    for page in args.pages:
        goal = f"  (goal < {GOAL_S[page]:g} s)" if page in GOAL_S else ""
        print(f"  {page:10} {_spread(times[page], 2)}{goal}; element top at y = {min(tops[page]):.0f} px")
    return {"cold": cold, "times": times, "tops": tops}


if __name__ == "__main__":
    main()
