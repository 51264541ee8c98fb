"""The page at / in a real headless Chromium: type a paragraph, translate, see it and a heatmap per sentence."""
import shutil

import pytest

CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(not (CHROMEDRIVER and CHROMIUM),
                    reason="needs Debian's chromium and chromium-driver (`make test` installs them)")
def test_page_translates_a_paragraph_in_a_browser(live_server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(live_server + "/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))
        source = driver.find_element(By.ID, "source")
        source.clear()
        source.send_keys("Zwei Männer spielen Fußball. Ein Hund läuft.")
        source.send_keys(Keys.SHIFT, Keys.ENTER)
        source.send_keys("Eine Frau liest ein Buch.")
        driver.find_element(By.CSS_SELECTOR, "input[name=search][value='1']").click()
        driver.find_element(By.ID, "translate").click()
        wait.until(lambda d: d.find_element(By.ID, "output").text.strip())
        assert driver.find_element(By.ID, "error").text == ""
        output = driver.find_element(By.ID, "output").text
        assert any(c.isalpha() for c in output)
        assert len(output.splitlines()) == 2  # a paragraph in, a paragraph out: the line break kept
        tables = driver.find_elements(By.CSS_SELECTOR, "#heatmap table.attention")
        assert len(tables) == 3  # one heatmap per sentence
        assert all(len(t.find_elements(By.CSS_SELECTOR, "td")) >= 2 for t in tables)
    finally:
        driver.quit()
