"""The web page of ``yolos serve`` in a real headless Chromium (Debian's chromium + chromium-driver,
driven by Selenium): upload the bundled image, count the boxes drawn against the JSON shown,
move the threshold slider with the keyboard and check that the count follows.

Skipped with a reason where chromium, chromedriver or selenium is missing (``.ci/run`` installs them).
Set ``YOLOS_SCREENSHOT=path.png`` to keep the screenshot (the README's comes from here).
"""
from __future__ import annotations

import json
import os
import shutil
import urllib.request

import pytest

from yolos.defaults import DEFAULT_IMAGE

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=900,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _all_detections(server) -> list[dict]:
    """What the page asked for: everything above its fetch threshold of 0.01."""
    req = urllib.request.Request(server + "/predict?threshold=0.01", data=DEFAULT_IMAGE.read_bytes(),
                                 headers={"Content-Type": "image/jpeg"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def test_page_upload_boxes_slider(browser, server, tmp_path):
    browser.get(server + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#examples button"))  # /info answered
    browser.find_element(By.ID, "file").send_keys(str(DEFAULT_IMAGE))
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done")
    assert browser.find_element(By.ID, "status").text == ""

    def drawn_and_listed():
        boxes = browser.find_elements(By.CSS_SELECTOR, "#stage .box")
        listed = json.loads(browser.find_element(By.ID, "json").text)
        return len(boxes), listed

    everything = _all_detections(server)
    n, listed = drawn_and_listed()
    assert n == len(listed) == sum(d["score"] > 0.5 for d in everything)

    slider = browser.find_element(By.ID, "threshold")
    slider.send_keys(Keys.HOME)  # threshold 0: every detection the page fetched
    n, listed = drawn_and_listed()
    assert n == len(listed) == len(everything) > 0
    for _ in range(20):  # 0.20
        slider.send_keys(Keys.ARROW_RIGHT)
    assert browser.find_element(By.ID, "threshold-value").text == "0.20"
    n, listed = drawn_and_listed()
    assert n == len(listed) == sum(d["score"] > 0.2 for d in everything)
    assert all(d["score"] > 0.2 for d in listed)
    slider.send_keys(Keys.END)
    assert drawn_and_listed()[0] == 0
    slider.send_keys(Keys.HOME)
    for _ in range(30):
        slider.send_keys(Keys.ARROW_RIGHT)
    shot = tmp_path / "serve_page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("YOLOS_SCREENSHOT"):
        shutil.copy(shot, os.environ["YOLOS_SCREENSHOT"])


def test_page_shows_a_server_error(browser, server, tmp_path):
    """A file the server refuses: the page says why instead of drawing anything."""
    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"this is text")
    browser.get(server + "/")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done")
    assert "not a readable image" in browser.find_element(By.ID, "status").text
    assert browser.find_elements(By.CSS_SELECTOR, "#stage .box") == []
