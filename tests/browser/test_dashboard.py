"""The dashboard in headless Chromium (Debian's chromium and chromium-driver, driven by
python3-selenium) while jobs run: progress moves, a job turns done, the cancel button cancels.
Skips, with the reason, only where the browser cannot start."""
import os
import shutil
import time
from pathlib import Path

import pytest

import taskfarm
from farm import Farm

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1000"]


@pytest.fixture
def browser(tmp_path):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        pytest.skip(f"python3-selenium is not installed ({e})")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("chromium and chromium-driver are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(driver_path, log_path=str(tmp_path / "chromedriver.log")),
                                  options=options)
    except Exception as e:  # WebDriverException and friends: the browser cannot start here
        pytest.skip(f"headless Chromium did not start: {str(e).splitlines()[0]}")
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def wait_until(fn, timeout=30, what=""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def row(driver, job_id):
    from selenium.webdriver.common.by import By
    rows = driver.find_elements(By.CSS_SELECTOR, f'tr[data-job-id="{job_id}"]')
    return rows[0] if rows else None


def job_attr(driver, job_id, name):
    return driver.execute_script(
        "const r = document.querySelector(`tr[data-job-id='${arguments[0]}']`);"
        "return r ? r.dataset[arguments[1]] : null;", job_id, name)


def test_progress_moves_job_turns_done_and_cancel_button_cancels(browser, tmp_path):
    from selenium.webdriver.common.by import By
    farm = Farm(tmp_path / "farm", workers=2, threads=2)
    try:
        with taskfarm.Client(farm.server) as client:
            job = client.submit({"name": "sleepy", "tasks": [
                {"kernel": "sleep", "count": 400, "size": 20000}]})  # about 2 s on 4 slots
            browser.get(farm.url)
            assert browser.title == "taskfarm"
            wait_until(lambda: row(browser, job.id), what="the job's row")
            first = int(job_attr(browser, job.id, "done") or 0)
            wait_until(lambda: int(job_attr(browser, job.id, "done") or 0) > first and
                       job_attr(browser, job.id, "state") == "running", what="progress to move")
            width = browser.execute_script(
                "return document.querySelector(`tr[data-job-id='${arguments[0]}'] .bar .ok`).style.width", job.id)
            assert width.endswith("%") and 0 < float(width[:-1]) < 100
            wait_until(lambda: job_attr(browser, job.id, "state") == "done", what="the job to turn done")
            assert job_attr(browser, job.id, "done") == "400"
            assert job.status().state is taskfarm.JobState.DONE
            # The page's other parts: workers with their strips, the chart library loaded.
            workers = browser.find_elements(By.CSS_SELECTOR, "#workers tr[data-worker-id]")
            assert sorted(w.get_attribute("data-worker-id") for w in workers) == ["w0", "w1"]
            assert browser.execute_script("return typeof Chart") == "function"
            assert browser.find_elements(By.CSS_SELECTOR, "#throughput")

            long = client.submit({"name": "long", "tasks": [
                {"kernel": "sleep", "count": 4000, "size": 20000}]})
            wait_until(lambda: job_attr(browser, long.id, "state") == "running", what="the long job")
            button = wait_until(lambda: browser.find_elements(By.ID, f"cancel-{long.id}"),
                                what="the cancel button")[0]
            button.click()
            browser.switch_to.alert.accept()  # "Cancel job 'long'?"
            wait_until(lambda: job_attr(browser, long.id, "state") == "cancelled",
                       what="the job to show cancelled")
            st = long.status()
            assert st.state is taskfarm.JobState.CANCELLED and st.done < 4000
            shot = tmp_path / "dashboard.png"
            browser.save_screenshot(str(shot))
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10000
        severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe
    finally:
        codes = farm.stop()
    assert all(c == 0 for c in codes.values()), codes


def test_page_asks_for_the_token_when_required(browser, tmp_path):
    farm = Farm(tmp_path / "farm", workers=0, vent_args=["--http-token", "s3cret"])
    try:
        base = farm.url.split("?")[0]
        browser.get(base + "api/jobs")
        assert "token required" in browser.page_source
        browser.get(base + "?token=s3cret")  # sets the cookie the page's requests then carry
        wait_until(lambda: browser.execute_script("return document.body.dataset.updates"),
                   what="the page to update with the cookie")
        assert browser.find_element("id", "conn").text.startswith("live")
    finally:
        farm.stop()


@pytest.mark.skipif(not os.environ.get("TASKFARM_SCREENSHOT"),
                    reason="set TASKFARM_SCREENSHOT=PATH to redraw the README's screenshot")
def test_screenshot_for_the_readme(browser, tmp_path):
    """A farm with CPU workers of different sizes, a running job, a finished one and a failed
    one, drawn after a while so the chart and the utilisation strips have history."""
    farm = Farm(tmp_path / "farm", workers=2, threads=4,
                worker_env={"TASKFARM_TEST_FAIL_TASK": "300"})  # fails in the long job only
    try:
        with taskfarm.Client(farm.server) as client:
            browser.set_window_size(1400, 1130)
            browser.get(farm.url)
            client.submit({"name": "mandelbrot-4k", "tasks": [
                {"kernel": "mandelbrot", "count": 256, "size": 2048}]}).wait(progress=False)
            client.submit({"name": "sweep-sgemm", "tasks": [
                {"kernel": "sgemm", "count": 40, "size": 128, "seed": 3}]}).wait(progress=False)
            client.submit({"name": "render-frames", "tasks": [
                {"kernel": "sleep", "count": 20000, "size": 25000}]})
            time.sleep(12)
            farm.worker("late-joiner", threads=1)  # its strip starts later than the others'
            time.sleep(18)
            browser.save_screenshot(os.environ["TASKFARM_SCREENSHOT"])
    finally:
        farm.stop()
