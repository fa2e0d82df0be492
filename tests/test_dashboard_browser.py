"""The dashboard in a real browser: `streamlit run` on a free loopback port, driven with selenium and headless
chromium through the Layer map (heat map drawn, a cell clicked) into the Gallery (images drawn)."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from dashboard_fixtures import REPO, real_root

CHROMEDRIVER = "/usr/bin/chromedriver"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMEDRIVER),
                                 reason=f"{CHROMEDRIVER} missing: apt-get install chromium chromium-driver")]
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


def test_layer_map_heat_map_opens_the_gallery_with_images(server, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    started = time.monotonic()
    browser.get(server)
    wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "[data-testid='stDataFrame']")))
    print(f"Overview rendered in {time.monotonic() - started:.2f} s")

    browser.get(f"{server}/layer_map")
    wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, ".js-plotly-plot .heatmaplayer image")))
    labels = [t.text for t in browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .ytick text")]
    # The tiny sweep's two seeds are too few units to measure noise: both rows are grey and say so.
    assert labels[:2] == ["style · van gogh (not measurable)", "color · blue (not measurable)"]
    browser.save_screenshot(str(tmp_path / "layer_map.png"))

    # Click the cell of color · blue (row 1 of 2) at layer 10 (column 10 of 16); offsets are from the plot centre.
    area = browser.find_element(By.CSS_SELECTOR, ".js-plotly-plot .nsewdrag")
    width, height = area.size["width"], area.size["height"]
    ActionChains(browser).move_to_element_with_offset(
        area, int((10.5 / 16 - 0.5) * width), int((1.5 / len(labels[:2]) - 0.5) * height)).click().perform()

    wait.until(seen.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Gallery"))
    wait.until(seen.text_to_be_present_in_element((By.TAG_NAME, "body"), "layer 10 ◀"))
    wait.until(lambda driver: len(driver.find_elements(By.CSS_SELECTOR, "[data-testid='stImage'] img")) >= 12)
    images = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stImage'] img")
    wait.until(lambda driver: all(driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth",
                                                        image) for image in images))
    assert browser.execute_script("return arguments[0].naturalWidth", images[0]) == 32
    browser.save_screenshot(str(tmp_path / "gallery.png"))
    print(f"screenshots in {tmp_path}")


def test_side_by_side_draws_both_maps_on_the_same_rows_and_columns(server, browser, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(f"{server}/layer_map")
    wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, ".js-plotly-plot .heatmaplayer image")))

    browser.find_element(By.XPATH, "//label[.//p[text()='Side by side']]").click()

    # Two drawn maps (the tracing map's cells may all be blank: the tiny model's corruption gaps are below the
    # default minimum), each with its concept rows labelled.
    def labels(driver):
        plots = driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")
        return [[t.text for t in plot.find_elements(By.CSS_SELECTOR, ".ytick text")] for plot in plots]

    rerendering = WebDriverWait(browser, 60, ignored_exceptions=[StaleElementReferenceException])
    def settled(driver):
        found = labels(driver)
        return found if len(found) == 2 and all(found) and not driver.find_elements(
            By.CSS_SELECTOR, "[data-stale='true']") else False

    # The same concept rows with the same labels, which say what either method cannot speak to.
    rows = [[label.split(" (")[0] for label in plot] for plot in rerendering.until(settled)]
    assert rows == [["style · van gogh", "color · blue"]] * 2 and len(set(map(tuple, labels(browser)))) == 1
    plots = browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")
    # Equally wide plot areas: column i of one map lies above column i of the other.
    areas = [plot.find_element(By.CSS_SELECTOR, ".nsewdrag").rect for plot in plots]
    assert abs(areas[0]["x"] - areas[1]["x"]) < 1 and abs(areas[0]["width"] - areas[1]["width"]) < 1
    browser.save_screenshot(str(tmp_path / "side_by_side.png"))
