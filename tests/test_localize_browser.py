"""Localize a concept from the browser: on a fresh root, the Localize page's form launches a tiny sweep job (tiny-sd1,
one prompt, one seed, m = 1, two steps at 32 px), its progress shows beside the Launch button, and when it finishes
its link opens the Layer map with the new concept's row."""

import os
import subprocess
import sys
import time
import urllib.request

import pytest
from dashboard_fixtures import REPO
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait
from test_dashboard_browser import CHROMEDRIVER, HEAT_MAP_CELL, axis_labels, free_port, run_finished
from test_dashboard_browser import browser as browser  # the fixture

pytestmark = [pytest.mark.browser, pytest.mark.heavy, pytest.mark.skipif(not os.path.exists(CHROMEDRIVER),
                                                      reason=f"{CHROMEDRIVER} missing")]


@pytest.fixture
def fresh_server(tmp_path):
    root = tmp_path / "root"
    port = free_port()
    # The job inherits the server's environment: one thread each on a busy 2-core machine, nothing downloaded.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/main.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--", "--artifacts", str(root)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    yield url, root
    process.terminate()
    process.wait(10)


def type_into(driver, label: str, text: str, commit=Keys.ENTER) -> None:
    """Replace the text of the input or text area labelled ``label`` and commit it (waiting for the box: under load
    the previous commit's rerun may still be redrawing the form)."""
    box = WebDriverWait(driver, 30).until(seen.presence_of_element_located(
        (By.XPATH, f"//label[.//p[text()='{label}']]/following::*[self::input or self::textarea][1]")))
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(text)
    box.send_keys(*commit) if isinstance(commit, tuple) else box.send_keys(commit)
    WebDriverWait(driver, 30).until(run_finished)


def test_a_sweep_launched_from_the_localize_page_appears_on_the_layer_map(fresh_server, browser, tmp_path):
    server, root = fresh_server
    wait = WebDriverWait(browser, 60)
    browser.get(f"{server}/localize")
    wait.until(seen.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Localize a concept"))
    wait.until(run_finished)

    type_into(browser, "Concept", "mondrian")
    type_into(browser, "Prompts", "a {concept} tree", commit=(Keys.CONTROL, Keys.ENTER))
    type_into(browser, "Window sizes", "1")
    type_into(browser, "Seeds", "0")
    type_into(browser, "Steps (0: model default)", "2")
    type_into(browser, "Image side in px (0: model default)", "32")
    # One prompt, one seed: original, target, all-layers and 16 windows of one layer.
    wait.until(seen.text_to_be_present_in_element((By.TAG_NAME, "body"), "1 prompt(s) × 1 seed(s): 19 cases, "
                                                                           "19 images"))
    started = time.monotonic()
    browser.find_element(By.XPATH, "//button[.//p[text()='Launch sweep']]").click()

    # The progress bar sits in the Launch button's row, beside it.
    bar = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "[data-testid='stProgress']")))
    button = browser.find_element(By.XPATH, "//button[.//p[text()='Launch sweep']]")
    assert abs(bar.rect["y"] - button.rect["y"]) < 120 and bar.rect["x"] > button.rect["x"] + button.rect["width"]
    browser.save_screenshot(str(tmp_path / "localize-running.png"))
    produced = "//p[starts-with(., 'Produced:')]//a[starts-with(., 'run ')]"
    link = WebDriverWait(browser, 240).until(
        lambda driver: "— succeeded" in driver.find_element(By.TAG_NAME, "body").text
        and driver.find_elements(By.XPATH, produced) and driver.find_element(By.XPATH, produced))
    print(f"sweep finished {time.monotonic() - started:.1f} s after Launch")
    href = link.get_attribute("href")
    assert "/layer_map?view=locogen&model=tiny-sd1&run=localize-mondrian-" in href

    browser.get(href)
    wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, HEAT_MAP_CELL)))
    wait.until(run_finished)
    labels = [t.text for t in axis_labels(browser.find_element(By.CSS_SELECTOR, ".vega-embed"), "Y")]
    # One prompt and one seed are too few units to measure noise: the row is there, greyed, and says so.
    assert labels[0] == "style · mondrian (not measurable)"
    assert "localize-mondrian-" in browser.current_url
    browser.save_screenshot(str(tmp_path / "localize-map.png"))
    print(f"screenshots in {tmp_path}")
