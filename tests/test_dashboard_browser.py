"""The dashboard in a real browser: `streamlit run` on a free loopback port, driven with selenium and headless
chromium through the Layer map (heat map drawn, a cell clicked) into the Gallery (images drawn) and back with the
browser's Back button, a shared link opened, and the pages laid out at 1280×800."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from dashboard_fixtures import REPO, real_root
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

CHROMEDRIVER = "/usr/bin/chromedriver"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMEDRIVER),
                                 reason=f"{CHROMEDRIVER} missing: apt-get install chromium chromium-driver")]
# A drawn cell of a Vega-Lite heat map (``contract.figures.CELLS``: Vega draws each cell as an SVG path).
HEAT_MAP_CELL = ".vega-embed svg .cells_marks path"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,1600")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = real_root(tmp_path_factory)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/main.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--", "--artifacts", str(root)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise
            time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(10)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def run_finished(driver) -> bool:
    """Streamlit has finished the run: nothing stale on the page and the app not running."""
    return not driver.find_elements(By.CSS_SELECTOR, "[data-stale='true']") and not driver.find_elements(
        By.CSS_SELECTOR, "[data-testid='stStatusWidget']")


def history_length(driver) -> int:
    return driver.execute_script("return history.length")


def chart_titles(driver) -> list[str]:
    """Each drawn chart's title and sub-lines, as one text per chart, top to bottom."""
    return [" ".join(t.text for t in chart.find_elements(By.CSS_SELECTOR, ".role-title text"))
            for chart in driver.find_elements(By.CSS_SELECTOR, ".vega-embed")]


def charts_drawn(driver, count: int) -> bool:
    """Exactly ``count`` charts, each with its title drawn (Vega draws after Streamlit's run ends)."""
    titles = chart_titles(driver)
    return len(titles) == count and all(titles)


def axis_labels(chart, axis: str) -> list:
    """The label elements of a chart's ``axis`` ("X" or "Y")."""
    return chart.find_elements(By.CSS_SELECTOR, f"g[aria-label^='{axis}-axis'] .role-axis-label text")


def test_layer_map_heat_map_opens_the_gallery_and_back_returns(server, browser, tmp_path):
    wait = WebDriverWait(browser, 60)
    started = time.monotonic()
    browser.get(server)
    wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "[data-testid='stDataFrame']")))
    print(f"Overview rendered in {time.monotonic() - started:.2f} s")

    browser.get(f"{server}/layer_map?m=2")
    wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, HEAT_MAP_CELL)))
    wait.until(lambda driver: "m=2" in driver.current_url and "run=" in driver.current_url)
    wait.until(run_finished)
    # The page's defaults written into the URL replace its entry: Back would leave the page, not redraw it.
    entries = history_length(browser)
    labels = [t.text for t in axis_labels(browser.find_element(By.CSS_SELECTOR, ".vega-embed"), "Y")]
    # The tiny sweep's two seeds are too few units to measure noise: both rows are grey and say so.
    assert labels[:2] == ["style · van gogh (not measurable)", "color · blue (not measurable)"]
    browser.save_screenshot(str(tmp_path / "layer_map.png"))

    # Click the cell of color · blue (row 1 of 2) at window 10-11: under the x axis's "10", beside the row's label.
    chart = browser.find_element(By.CSS_SELECTOR, ".vega-embed")
    column = next(t for t in axis_labels(chart, "X") if t.text == "10").rect
    row = next(t for t in axis_labels(chart, "Y") if t.text.startswith("color · blue")).rect
    x, y = column["x"] + column["width"] / 2, row["y"] + row["height"] / 2
    cell = browser.execute_script("return document.elementFromPoint(arguments[0], arguments[1])", x, y)
    assert "window: layers 10–11;" in cell.get_attribute("aria-label")  # the cell itself, with its tooltip's text
    ActionChains(browser).move_to_element(cell).click().perform()

    wait.until(seen.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Gallery"))
    wait.until(lambda driver: "/gallery?" in driver.current_url and "window=10" in driver.current_url)
    wait.until(run_finished)
    # One click, one history entry (Streamlit pushes one for the page and one for its view).
    assert history_length(browser) == entries + 1
    assert "concept=blue" in browser.current_url and "m=2" in browser.current_url
    focus = wait.until(seen.presence_of_element_located((By.ID, "gallery-focus")))
    assert focus.find_element(By.CLASS_NAME, "gallery-label").text == "layers 10–11 ◀"
    # Every window of m = 2 on one screen: 15 rows of windows plus original and target, two seeds each.
    thumbs = browser.find_elements(By.CSS_SELECTOR, ".gallery-block img")
    assert len(thumbs) == (15 + 2) * 2
    # Thumbnails of the 32-pixel images are enlarged three times with nearest-neighbour sampling.
    wait.until(lambda driver: driver.execute_script("return arguments[0].complete", thumbs[0]))
    assert browser.execute_script("return arguments[0].naturalWidth", thumbs[0]) == 96
    # The focused row is scrolled into view.
    wait.until(lambda driver: driver.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return r.top >= 0 && r.bottom <= window.innerHeight", focus))
    browser.save_screenshot(str(tmp_path / "gallery.png"))

    # One Back: the Layer map (same run and m) with the concept the Gallery showed, in the one-concept section the
    # page opens for a concept named in its URL.
    browser.back()
    wait.until(seen.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Layer map"))
    wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, HEAT_MAP_CELL)))
    wait.until(run_finished)
    assert "/layer_map?" in browser.current_url and "m=2" in browser.current_url
    assert "concept=blue" in browser.current_url
    WebDriverWait(browser, 60, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda driver: charts_drawn(driver, 2))
    titles = chart_titles(browser)
    assert "window size m = 2" in titles[0] and "color · blue" in titles[1]
    # Closing the section drops its plot and the concept from the URL.
    browser.find_element(By.XPATH, "//summary[.//*[contains(text(), 'One concept')]]").click()
    WebDriverWait(browser, 60, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda driver: len(chart_titles(driver)) == 1 and "concept=" not in driver.current_url)
    assert history_length(browser) == entries + 1  # Back moves within the history; it adds no entry
    print(f"screenshots in {tmp_path}")


def nav(driver, wait, page: str) -> None:
    """Open ``page`` by the top navigation's link and wait for its run to finish."""
    driver.find_element(By.XPATH, f"//header//a[.//*[text()='{page}']]").click()
    wait.until(seen.text_to_be_present_in_element((By.TAG_NAME, "h1"), page))
    wait.until(run_finished)


def query(driver) -> dict[str, str]:
    from urllib.parse import parse_qsl, urlsplit

    return dict(parse_qsl(urlsplit(driver.current_url).query))


def test_the_top_navigation_keeps_run_m_concept_and_threshold(server, browser):
    wait = WebDriverWait(browser, 60)
    browser.get(f"{server}/layer_map?m=2&family=color&concept=blue&threshold=0.7")
    wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, HEAT_MAP_CELL)))
    wait.until(run_finished)
    shown = query(browser)
    assert (shown["m"], shown["concept"], shown["threshold"]) == ("2", "blue", "0.7") and shown["run"]
    entries = history_length(browser)

    nav(browser, wait, "Gallery")
    wait.until(lambda driver: "concept=" in driver.current_url and run_finished(driver))
    there = query(browser)
    assert {k: there.get(k) for k in ("model", "run", "family", "concept", "m", "threshold")} == {
        k: shown[k] for k in ("model", "run", "family", "concept", "m", "threshold")}

    nav(browser, wait, "Layer map")
    wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, HEAT_MAP_CELL)))
    WebDriverWait(browser, 60, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda driver: "concept=" in driver.current_url and run_finished(driver) and charts_drawn(driver, 2))
    back = query(browser)
    assert {k: back.get(k) for k in ("run", "concept", "m", "threshold")} == {
        k: shown[k] for k in ("run", "concept", "m", "threshold")}
    titles = chart_titles(browser)
    assert "window size m = 2" in titles[0] and "drop > 0.7" in titles[0] and "color · blue" in titles[1]
    # One entry per click of the navigation; Back returns to the Gallery as it was.
    assert history_length(browser) == entries + 2
    browser.back()
    wait.until(seen.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Gallery"))
    wait.until(run_finished)
    assert query(browser) == there


def test_a_shared_gallery_link_opens_the_same_prompt_and_seeds(server, browser):
    wait = WebDriverWait(browser, 60)

    def seeds_shown(driver) -> list[str]:
        return [image.get_attribute("alt") for image in driver.find_elements(By.CSS_SELECTOR, ".gallery-block img")]

    browser.get(f"{server}/gallery?model=tiny-sd1&family=color&concept=blue&m=2&window=3&seeds=1")
    wait.until(seen.presence_of_element_located((By.ID, "gallery-focus")))
    wait.until(lambda driver: "prompt=" in driver.current_url and run_finished(driver))
    link = browser.current_url
    shown = seeds_shown(browser)
    assert query(browser)["seeds"] == "1" and query(browser)["prompt"] == "a blue car"
    assert len(shown) == 2 + 15 and all(alt.startswith("seed 1 · ") for alt in shown)

    browser.get("about:blank")
    browser.get(link)  # a new session: nothing but the link
    wait.until(seen.presence_of_element_located((By.ID, "gallery-focus")))
    wait.until(lambda driver: run_finished(driver) and len(seeds_shown(driver)) == len(shown))
    assert seeds_shown(browser) == shown and browser.current_url == link
    assert browser.find_element(By.ID, "gallery-focus").find_element(By.CLASS_NAME, "gallery-label").text == \
        "layers 3–4 ◀"


def test_a_shared_link_opens_that_view(server, browser, tmp_path):
    wait = WebDriverWait(browser, 60, ignored_exceptions=[StaleElementReferenceException])

    browser.get(f"{server}/layer_map?view=locogen&model=tiny-sd1&m=2&family=color&concept=blue&threshold=0.7")

    # Vega draws each chart after the run ends: wait for both, the map and the one-concept plot.
    wait.until(lambda driver: run_finished(driver) and charts_drawn(driver, 2))
    titles = chart_titles(browser)
    assert "window size m = 2" in titles[0] and "tiny-sd1" in titles[0] and "drop > 0.7" in titles[0]
    assert "color · blue" in titles[1] and "m = 2" in titles[1]  # the one-concept plot
    # The page icon is served by the dashboard itself, not fetched from a font CDN.
    icon = browser.execute_script("return document.querySelector(\"link[rel~='icon']\").href")
    assert icon.startswith(server), icon
    with urllib.request.urlopen(icon, timeout=10) as response:
        assert response.read()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("page", ["", "layer_map", "gallery", "edits"])
def test_pages_fit_1280_by_800_without_cut_labels(server, browser, tmp_path, page):
    wait = WebDriverWait(browser, 60)
    browser.set_window_size(1280, 800)

    browser.get(f"{server}/{page}")

    wait.until(seen.presence_of_element_located((By.TAG_NAME, "h1")))
    wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "[data-testid='stDataFrame'], [data-testid='stHtml']"
                                                 if page != "layer_map" else HEAT_MAP_CELL)))
    wait.until(run_finished)
    time.sleep(1)  # let the data grids measure their columns
    browser.save_screenshot(str(tmp_path / f"{page or 'overview'}-1280.png"))
    cut_labels = browser.execute_script("""
        return [...document.querySelectorAll("[data-testid='stWidgetLabel'] p, [data-testid='stMetricLabel'] p")]
            .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent);""")
    assert cut_labels == []
    cut_tables = browser.execute_script("""
        return [...document.querySelectorAll("[data-testid='stDataFrame'] .dvn-scroller")]
            .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => [e.scrollWidth, e.clientWidth]);""")
    assert cut_tables == []


def test_side_by_side_draws_both_maps_on_the_same_rows_and_columns(server, browser, tmp_path):
    wait = WebDriverWait(browser, 60)
    browser.get(f"{server}/layer_map")
    wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, HEAT_MAP_CELL)))

    browser.find_element(By.XPATH, "//label[.//p[text()='Side by side']]").click()

    # Two drawn maps (the tracing map's cells may all be blank: the tiny model's corruption gaps are below the
    # default minimum), each with its concept rows labelled.
    def labels(driver):
        plots = driver.find_elements(By.CSS_SELECTOR, ".vega-embed")[:2]
        return [[t.text for t in axis_labels(plot, "Y")] for plot in plots]

    rerendering = WebDriverWait(browser, 60, ignored_exceptions=[StaleElementReferenceException])
    def settled(driver):
        found = labels(driver)
        return found if len(found) == 2 and all(found) and not driver.find_elements(
            By.CSS_SELECTOR, "[data-stale='true']") else False

    # The same concept rows with the same labels, which say what either method cannot speak to.
    rows = [[label.split(" (")[0] for label in plot] for plot in rerendering.until(settled)]
    assert rows == [["style · van gogh", "color · blue"]] * 2 and len(set(map(tuple, labels(browser)))) == 1
    plots = browser.find_elements(By.CSS_SELECTOR, ".vega-embed")[:2]
    # Equally wide plot areas: column i of one map lies above column i of the other.
    columns = [{t.text: t.rect["x"] + t.rect["width"] / 2 for t in axis_labels(plot, "X")} for plot in plots]
    assert set(columns[0]) == set(columns[1]) == {str(i) for i in range(16)}
    assert all(abs(columns[0][i] - columns[1][i]) < 1 for i in columns[0])
    browser.save_screenshot(str(tmp_path / "side_by_side.png"))
