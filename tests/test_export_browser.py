"""Exports downloaded from the page in a real browser: the Layer map's heat map as SVG and PNG, read back in
Chromium (every concept name and tick label's box inside the canvas) and pixel by pixel (nothing drawn at the PNG's
edges: a label cut at the left leaves ink there), and a family's paper figure as SVG."""

import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait
from test_dashboard_browser import HEAT_MAP_CELL, browser, run_finished, server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

# Every text of the SVG shown in the browser: (its class or its group's, text, left, right, top, bottom).
TEXT_BOXES = """
const svg = document.querySelector('svg');
const out = [];
for (const text of svg.querySelectorAll('text')) {
  const r = text.getBoundingClientRect();
  if (!text.textContent.trim() || r.width === 0) continue;
  const kind = text.getAttribute('class') || text.parentNode.getAttribute('class') || '';  // ticks: their group's
  out.push([kind, text.textContent, r.left, r.right, r.top, r.bottom]);
}
const c = svg.getBoundingClientRect();
return [c.width, c.height, out];
"""


def click(driver, wait, xpath: str) -> None:
    """Click the last shown element matching ``xpath`` (scrolled to the middle of the window first: the page's
    captions may cover it at its edge)."""
    shown = wait.until(lambda d: [e for e in d.find_elements(By.XPATH, xpath) if e.is_displayed()])
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();", shown[-1])


def download(driver, wait, folder: Path, label: str, suffix: str) -> bytes:
    """Click the open popover's ``label`` download button and return the file it saves in ``folder``."""
    before = set(folder.glob(f"*{suffix}"))
    click(driver, wait, f"//div[@data-testid='stDownloadButton']//button[normalize-space()='{label}']")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = [path for path in set(folder.glob(f"*{suffix}")) - before if path.stat().st_size]
        if done:
            return done[0].read_bytes()
        time.sleep(0.5)
    raise AssertionError(f"no {suffix} downloaded into {folder}: {sorted(p.name for p in folder.iterdir())}")


def test_the_exported_heat_map_keeps_every_concept_name_and_tick_inside_the_canvas(server, browser, tmp_path):  # noqa: F811
    folder = tmp_path / "downloads"
    folder.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)})
    wait = WebDriverWait(browser, 120)
    browser.get(f"{server}/layer_map?m=2")
    wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, HEAT_MAP_CELL)))
    wait.until(run_finished)

    click(browser, wait, "(//div[@data-testid='stPopover']//button[contains(normalize-space(), 'Download figure')])[1]")
    svg = download(browser, wait, folder, "SVG", ".svg")
    png = download(browser, wait, folder, "PNG", ".png")
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    wait.until(lambda d: not [b for b in d.find_elements(By.XPATH, "//div[@data-testid='stDownloadButton']//button")
                              if b.is_displayed() and b.text in ("SVG", "PNG")])
    click(browser, wait, "//div[@data-testid='stPopover']//button[contains(normalize-space(), 'Paper figure')]")
    paper = download(browser, wait, folder, "SVG", ".svg")

    # The paper figure of the first family: its heat map row, the verdict in full, every text inside the canvas.
    (tmp_path / "paper.svg").write_bytes(paper)
    browser.get((tmp_path / "paper.svg").as_uri())
    width, height, texts = browser.execute_script(TEXT_BOXES)
    shown = [text for _, text, *_ in texts]
    assert "style · van gogh (not measurable)" in shown and "LocoGen paper figure of style" in " ".join(shown)
    assert any(text.startswith("not measurable: 2 prompt x seed units") for text in shown)
    assert [(text, round(left)) for _, text, left, right, *_ in texts if left < 0 or right > width] == []

    # The heat map's SVG as the browser lays it out: every text's box inside the canvas.
    (tmp_path / "shown.svg").write_bytes(svg)
    browser.get((tmp_path / "shown.svg").as_uri())
    width, height, texts = browser.execute_script(TEXT_BOXES)
    labels = [text for kind, text, *_ in texts if "role-axis-label" in kind]
    assert [text for text in labels if not text.isdigit()] == ["style · van gogh (not measurable)",
                                                               "color · blue (not measurable)"]
    assert [text for text in labels if text.isdigit()] == [str(i) for i in range(16)]
    outside = [(text, round(left), round(right)) for _, text, left, right, top, bottom in texts
               if left < 0 or right > width or top < 0 or bottom > height]
    assert outside == []
    # No ink at the PNG's edges (at twice the SVG's scale).
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    assert pixels.shape[1] == round(2 * width)
    assert pixels[:, :6].min() == 255 and pixels[:, -6:].min() == 255 and pixels[:6].min() == 255
