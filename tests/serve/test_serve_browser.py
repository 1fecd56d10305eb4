"""The page in a real browser: system Chromium driven by Selenium against a real uvicorn on 127.0.0.1.

Loads the page, sets constraints (and conditions, when the model has labels), generates with the
keyboard, checks every shown name meets the constraints, builds a shortlist, exports CSV, opens the
share link in a new tab and gets the same names, scores names, shows the model tab's heat map, and
checks the page fits a phone's width. Set NAMESMITH_SCREENSHOT=docs/serve.png to save the README's
screenshot. Skips only when Chromium or its driver is not installed (`.ci/run` installs them with
`apt-get install -y chromium chromium-driver`).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
selenium = pytest.importorskip("selenium")
from conftest import SCREENSHOTS  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from serve_support import running  # noqa: E402

from namesmith.serve import ModelRegistry, create_app  # noqa: E402
from namesmith.serve.build import BuildLimits  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None or DRIVER is None, reason="Chromium and chromedriver are not installed "
                       "(apt-get install -y chromium chromium-driver)"),
    pytest.mark.usefixtures("one_thread"),
]
# Chromium costs seconds of CPU a page (the first test below, which drives every control of the form end to end,
# about 9 s with the browser's own processes): they run in the whole suite, the fast set (-m "not slow") checks the
# page's files in-process (test_serve_api)
SLOW = pytest.mark.slow


@pytest.fixture(scope="module")
def server(builtin_ngram_cache):
    # built in a worker process before the page asks for it (once for the run: conftest.builtin_ngram_cache)
    registry = ModelRegistry.builtin(["builtin"], cache=builtin_ngram_cache, limits=BuildLimits(server_mb=1 << 30))
    assert registry.wait(600) and registry.get("builtin-ngram").state == "ready"
    app = create_app(registry)
    with running(app) as url:
        yield url


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400",
                     "--disable-gpu", "--no-first-run",
                     # offline: no host but this machine resolves, so a page that needs a CDN shows it
                     "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for a browser online
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory, request) -> Path:
    """Where the screenshots go: $NAMESMITH_ARTEFACTS, or `artefacts` in pytest's base temporary folder
    (pytest keeps the last three runs' folders). The run's summary says where (conftest.py)."""
    folder = Path(os.environ.get("NAMESMITH_ARTEFACTS") or tmp_path_factory.getbasetemp() / "artefacts")
    folder.mkdir(parents=True, exist_ok=True)
    request.config.stash[SCREENSHOTS] = folder
    return folder


def wait(driver, condition, seconds=30):
    return WebDriverWait(driver, seconds).until(lambda d: condition(d))


def shown_names(driver) -> list[str]:
    """The names in the results table, read in one step (the table may be redrawn at any moment)."""
    return driver.execute_script("return Array.from(document.querySelectorAll('#results tbody button.name'))"
                                 ".map(b => b.textContent)")


def press_name(driver, i):
    """Press the i-th name of the results (the table is redrawn after each press)."""
    driver.find_elements(By.CSS_SELECTOR, "#results tbody button.name")[i].click()


def open_page(driver, url):
    driver.get("about:blank")  # a fresh document, even when only the #settings differ
    driver.get(url)
    wait(driver, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))


def fill(driver, field, value):
    element = driver.find_element(By.ID, field)
    element.clear()
    element.send_keys(value)
    return element


@SLOW
def test_generate_shortlist_export_share_score_and_model(browser, server, downloads, tmp_path):
    open_page(browser, server + "/")
    browser.execute_script("localStorage.clear()")
    for label in browser.find_elements(By.CSS_SELECTOR, "#label-selects select"):  # conditions, where there are
        options = label.find_elements(By.TAG_NAME, "option")
        options[1].click()

    fill(browser, "ends_with", "a")
    fill(browser, "contains", "r")
    fill(browser, "excludes", "e")
    fill(browser, "min_len", "5")
    fill(browser, "max_len", "8")
    fill(browser, "n", "12")
    fill(browser, "starts_with", "").send_keys(Keys.ENTER)  # the keyboard submits the form
    wait(browser, lambda d: len(shown_names(d)) == 12)
    names = shown_names(browser)
    for name in names:
        assert name.endswith("a") and "r" in name and "e" not in name and 5 <= len(name) <= 8, name
    assert len(set(names)) == 12  # "no repeats" is on by default
    assert "seed" in browser.find_element(By.ID, "results-status").text

    # the shortlist: press two names; it lives in localStorage and survives a reload
    press_name(browser, 0)
    press_name(browser, 1)
    kept = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#shortlist li")]
    assert kept == names[:2]
    first_button = browser.find_elements(By.CSS_SELECTOR, "#results tbody button.name")[0]
    assert first_button.get_attribute("aria-pressed") == "true"

    # CSV export of the results, as downloaded
    browser.find_element(By.ID, "csv-results").click()
    exported = downloads / "namesmith-names.csv"
    wait(browser, lambda d: exported.exists() and exported.stat().st_size > 0, 10)
    with exported.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == names
    assert all(float(r["nll_per_char"]) > 0 and 0 <= float(r["percentile"]) <= 100 for r in rows)

    # sort by similarity to a typed name
    fill(browser, "similar_to", names[3])
    wait(browser, lambda d: shown_names(d)[0] == names[3])
    assert browser.find_element(By.ID, "sort").get_attribute("value") == "similarity"

    # the share link, opened in a new tab, gives the same names in the same order
    link = browser.find_element(By.ID, "share-link").get_attribute("value")
    assert "seed=" in link and "ends_with=a" in link
    first = browser.current_window_handle
    browser.switch_to.new_window("tab")
    open_page(browser, link)
    wait(browser, lambda d: len(shown_names(d)) == 12)
    assert sorted(shown_names(browser)) == sorted(names)
    assert shown_names(browser)[0] == names[3]  # the sort came along too
    assert [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#shortlist li")] == names[:2]
    browser.close()
    browser.switch_to.window(first)

    # an impossible request: the server's message, and the field marked
    fill(browser, "min_len", "8")
    fill(browser, "max_len", "4").send_keys(Keys.ENTER)
    wait(browser, lambda d: d.find_element(By.ID, "message").is_displayed())
    assert "min" in browser.find_element(By.ID, "message").text and "4" in browser.find_element(By.ID, "message").text
    fill(browser, "min_len", "5")
    fill(browser, "max_len", "8")

    # the score tab, reached with the arrow key; the generate tab's message stays with it
    browser.find_element(By.ID, "tab-generate").send_keys(Keys.ARROW_RIGHT)
    assert browser.find_element(By.ID, "panel-score").is_displayed()
    assert not browser.find_element(By.ID, "message").is_displayed()
    fill(browser, "score-names", "zzqx\nemma\nsophia")
    browser.find_element(By.CSS_SELECTOR, "#score-form button").click()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#scores tbody tr")) == 3)
    rows = browser.find_elements(By.CSS_SELECTOR, "#scores tbody tr")
    ranked = [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows]
    assert ranked[-1] == "zzqx"

    # the model tab: metrics and the heat map
    browser.find_element(By.ID, "tab-model").click()
    wait(browser, lambda d: d.execute_script("const i = document.getElementById('heatmap'); "
                                             "return !i.hidden && i.complete && i.naturalWidth > 0"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#metrics tbody tr")) == 3

    # every input has a label
    unlabelled = browser.execute_script(
        "return Array.from(document.querySelectorAll('input, select, textarea')).filter(e => !e.labels || "
        "!e.labels.length).map(e => e.id)")
    assert unlabelled == []


@SLOW
def test_readable_on_a_phone_and_saves_the_screenshot(browser, server):
    browser.set_window_size(1280, 1400)
    open_page(browser, server + "/#model=builtin-ngram&ends_with=lyn&n=12&seed=7&temperature=0.8&unique=1")
    wait(browser, lambda d: len(shown_names(d)) == 12)
    assert all(name.endswith("lyn") for name in shown_names(browser))
    browser.execute_script("localStorage.clear()")
    for i in (2, 3, 4):
        press_name(browser, i)
    time.sleep(0.2)
    shot = os.environ.get("NAMESMITH_SCREENSHOT")
    if shot:
        Path(shot).parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(shot)
    browser.set_window_size(390, 844)  # a phone
    # the resize is asynchronous: the layout is read once it has settled at the phone's width (a page wider
    # than the screen never settles below it, and the wait ends in the assertion)
    def overflow(d) -> int:
        return d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")

    with contextlib.suppress(TimeoutException):
        wait(browser, lambda d: d.execute_script("return window.innerWidth") <= 400 and overflow(d) <= 1, seconds=5)
    wider = overflow(browser)
    beyond = browser.execute_script(  # what sticks out, to say in the message
        "return Array.from(document.querySelectorAll('body *')).filter(e => e.getBoundingClientRect().right > "
        "window.innerWidth + 1).slice(-3).map(e => e.tagName + (e.id ? '#' + e.id : '') + ' ' + "
        "Math.round(e.getBoundingClientRect().right) + 'px').join(', ') + ' (window ' + window.innerWidth + 'px)'")
    assert wider <= 1, f"the page is {wider}px wider than a phone's screen: {beyond}"
    browser.set_window_size(1280, 1400)


@SLOW
def test_the_page_asks_for_the_api_key_when_one_is_set(browser, tmp_path_factory):
    from serve_support import train_bigram

    app = create_app(ModelRegistry.from_directories([train_bigram(tmp_path_factory.mktemp("keyed"))]), api_key="k3y")
    with running(app) as url:
        browser.get("about:blank")
        browser.get(url + "/")
        wait(browser, lambda d: d.find_element(By.ID, "key-box").is_displayed())
        assert "API key" in browser.find_element(By.ID, "message").text
        fill(browser, "api-key", "k3y").send_keys(Keys.TAB)  # the change event stores it for this tab
        wait(browser, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
        # a model without labels: no selects; the trends are asked for with the key too
        assert not browser.find_element(By.ID, "conditions").is_displayed()
        fill(browser, "starts_with", "ma")
        fill(browser, "seed", "5")
        fill(browser, "n", "12").send_keys(Keys.ENTER)
        wait(browser, lambda d: len(shown_names(d)) == 12)
        wait(browser, lambda d: d.execute_script("return state.results.every(r => !r.popularity || "
                                                 "state.trends.has(trendKey(r)))"))
        assert browser.execute_script("return Array.from(state.trends.values()).some(s => s.length > 0)")
        assert not browser.find_element(By.ID, "message").is_displayed()
        browser.execute_script("sessionStorage.clear()")


def sideways(driver) -> str:
    """'' when nothing sticks out of the window on the right, else what does (for the assertion's message)."""
    return driver.execute_script(
        "const w = window.innerWidth; if (document.documentElement.scrollWidth <= w + 1) return '';"
        "return Array.from(document.querySelectorAll('body *')).filter(e => e.getBoundingClientRect().right > w + 1)"
        ".slice(-3).map(e => e.tagName + (e.id ? '#' + e.id : '') + ' ' + Math.round(e.getBoundingClientRect().right)"
        " + 'px').join(', ') + ' (window ' + w + 'px)'")


def tables_built(url: str, **constraints) -> None:
    """Ask the API once for names under `constraints` and wait for the exact tables that request started.

    A server builds the tables a request cannot build within its time budget in the background, for the next
    request (namesmith.generation.exact_cache), and meanwhile answers with what rejection found: on a busy machine
    none of 8 names of 22-30 letters. A test of how the page lays names out waits for the tables first; the fallback
    itself is tested in tests/generation/test_exact_cache.py."""
    request = urllib.request.Request(f"{url}/api/v1/models/builtin-ngram/generate", data=json.dumps(
        {"n": 1, **constraints}).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
    for thread in threading.enumerate():
        if thread.name == "namesmith-exact-tables":  # the server runs in this process (serve_support.running)
            thread.join(300)


def at_size(driver, width, height):
    driver.set_window_size(width, height)
    wait(driver, lambda d: d.execute_script("return window.innerWidth") <= width, 5)


@SLOW
def test_a_phone_shows_the_results_and_never_scrolls_sideways(browser, server, artefacts):
    """390 x 844: after Generate the names are in sight (the form is above them) and focused; long names and
    the score tab's labels wrap in their cells."""
    tables_built(server, min_len=22, max_len=30)
    at_size(browser, 390, 844)
    try:
        open_page(browser, server + "/")
        fill(browser, "min_len", "22")
        fill(browser, "max_len", "30")
        fill(browser, "n", "8")
        browser.find_element(By.ID, "generate").click()
        wait(browser, lambda d: len(shown_names(d)) == 8)
        assert min(map(len, shown_names(browser))) >= 22
        top = browser.execute_script("return document.getElementById('results-title').getBoundingClientRect().top")
        height = browser.execute_script("return window.innerHeight")
        assert -1 <= top < height / 2, f"the results start at {top}px in a {height}px window"
        assert browser.execute_script("return document.activeElement.id") == "results-title"
        assert sideways(browser) == ""
        browser.save_screenshot(str(artefacts / "phone-generate.png"))

        browser.find_element(By.ID, "tab-score").click()
        fill(browser, "score-names", "emma\nzzqx\nkaylee\nolivié\nleslie\nphiloyemaschidyesslieannabellerose")
        browser.find_element(By.CSS_SELECTOR, "#score-form button").click()
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#scores tbody tr")) == 6)
        rows = {r.find_elements(By.TAG_NAME, "td")[1].text: r.text for r in
                browser.find_elements(By.CSS_SELECTOR, "#scores tbody tr")}
        assert "'é' is not in the model's vocabulary" in rows["olivié"] and " has " not in rows["olivié"]
        for name in ("emma", "zzqx", "kaylee", "leslie"):  # one unknown character fails that name only
            assert "sex: " in rows[name], rows
        assert not browser.find_element(By.ID, "message").is_displayed()
        assert sideways(browser) == ""
        browser.execute_script("document.getElementById('scores').scrollIntoView()")
        browser.save_screenshot(str(artefacts / "phone-score.png"))

        browser.find_element(By.ID, "tab-model").click()
        facts = dict(zip(*(browser.execute_script(f"return Array.from(document.querySelectorAll('#model-facts {t}'))"
                                                  ".map(e => e.textContent)") for t in ("dt", "dd"))))
        assert "count model" in facts["parameters"] and facts["names shown in"] == "lower case (emma)"
        assert browser.execute_script("return document.querySelector('#metrics thead').textContent").endswith("Rows")
        assert "," in browser.find_element(By.CSS_SELECTOR, "#metrics tbody td:last-child").text  # 25,945
        assert sideways(browser) == ""
        browser.save_screenshot(str(artefacts / "phone-model.png"))
    finally:
        at_size(browser, 1280, 1400)


def contrast(foreground: str, background: str) -> float:
    """WCAG's contrast ratio of two CSS rgb()/rgba() colours."""
    def luminance(colour: str) -> float:
        channels = [int(float(c)) / 255 for c in colour[colour.index("(") + 1:-1].split(",")[:3]]
        r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@SLOW
def test_controls_have_edges_of_3_to_1_and_screens_are_kept(browser, server, artefacts):
    at_size(browser, 1280, 800)
    try:
        open_page(browser, server + "/#model=builtin-ngram&n=12&seed=3&starts_with=ma")
        wait(browser, lambda d: len(shown_names(d)) == 12)
        browser.save_screenshot(str(artefacts / "desktop-generate.png"))
        edges = browser.execute_script(
            "const ground = (e) => { for (; e; e = e.parentElement) { const c = getComputedStyle(e).backgroundColor;"
            " if (c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent') return c; } return 'rgb(255, 255, 255)'; };"
            "return Array.from(document.querySelectorAll('input:not([type=checkbox]):not([type=range]), select, "
            "textarea, button:not(.name):not([role=tab])')).filter(e => e.offsetParent !== null).map(e => "
            "[e.id || e.textContent, getComputedStyle(e).borderTopColor, ground(e.parentElement)])")
        assert len(edges) > 15
        low = [(what, round(contrast(edge, ground), 2)) for what, edge, ground in edges if contrast(edge, ground) < 3]
        assert low == [], f"control edges under 3:1 against what is around them: {low}"
        browser.find_element(By.ID, "tab-score").click()
        fill(browser, "score-names", "emma\nzzqx\nkaylee\nolivié\nleslie")
        browser.find_element(By.CSS_SELECTOR, "#score-form button").click()
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#scores tbody tr")) == 5)
        browser.save_screenshot(str(artefacts / "desktop-score.png"))
    finally:
        at_size(browser, 1280, 1400)


@SLOW
def test_the_api_docs_work_offline(browser, server, artefacts):
    """/docs (the page's footer links there) shows every endpoint with no network: the browser resolves no
    host but this one, and every file the docs load comes from this server."""
    at_size(browser, 1280, 800)
    try:
        browser.get("about:blank")
        browser.get(server + "/")
        wait(browser, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
        browser.find_element(By.CSS_SELECTOR, "footer a[href='/docs']").click()
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock")) >= 8)
        assert "namesmith" in browser.find_element(By.CSS_SELECTOR, ".swagger-ui .info .title").text
        loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(url.startswith(server) for url in loaded), loaded
        browser.save_screenshot(str(artefacts / "desktop-docs.png"))
    finally:
        at_size(browser, 1280, 1400)


# --- the page for choosing a name (issue 30) --------------------------------------------------------------
CHOOSING = ("syllables", "sounds_like", "popularity", "surname", "alliteration", "not_in_catalogue")


class ChoosingStandIn:
    """ASGI middleware answering as a server with issue 30's API fields (the shared contract's names), from
    facts made here, so the page's drawing of them is tested whatever this server has of them yet.

    The generate request's choosing options are kept (`self.requests`) and taken out before the server sees
    them; each name gets `syllables` (its vowel groups), `known` (in the built-in list), for a known name
    `popularity` and `nicknames`, and with a surname `surname_fit`; GET /api/v1/trend answers a series that
    peaks in the 1990s. `self.trends` counts the trend requests."""

    def __init__(self, app, known: dict[str, int]):
        self.app, self.known = app, known
        self.ranks = {name: i + 1 for i, name in enumerate(sorted(known, key=lambda n: -known[n]))}
        self.requests: list[dict] = []
        self.trends: list[str] = []

    def facts(self, name: str, surname: str | None) -> dict:
        import re

        out = {"syllables": len(re.findall(r"[aeiouy]+", name.lower())) or None, "known": name in self.known,
               "popularity": None, "nicknames": []}
        if name in self.known:
            out["popularity"] = {"count": self.known[name], "rank": self.ranks[name], "sex": "F", "decade": "2010s",
                                 "source": "us", "per_million": self.known[name] / 2.0}
            out["nicknames"] = [name[:3].capitalize()]
        if surname:
            out["surname_fit"] = {"score": round(1 / (1 + abs(len(name) - len(surname))), 3),
                                  "reasons": [f"{len(name)} + {len(surname)} letters", "no clash of sounds"]}
        return out

    async def __call__(self, scope, receive, send):
        import json

        from starlette.responses import JSONResponse

        path = scope.get("path", "")
        if scope["type"] != "http" or path not in ("/api/v1", "/api/v1/trend") and not path.endswith("/generate"):
            return await self.app(scope, receive, send)
        if path == "/api/v1/trend":
            from urllib.parse import parse_qs

            query = parse_qs(scope["query_string"].decode())
            name, sex = query["name"][0], query.get("sex", ["F"])[0]
            self.trends.append(name)
            series = [{"decade": f"{y}s", "sex": sex, "count": 1000 - abs(1990 - y) * 9, "rank": 1, "source": "us",
                       "per_million": 100 - abs(1990 - y) / 2} for y in range(1950, 2020, 10)]
            return await JSONResponse({"name": name, "series": series})(scope, receive, send)
        surname = None
        if scope["method"] == "POST":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            sent = json.loads(body)
            self.requests.append(dict(sent))
            surname = sent.get("surname")
            body = json.dumps({k: v for k, v in sent.items() if k not in CHOOSING}).encode()
            scope = {**scope, "headers": [(k, str(len(body)).encode() if k == b"content-length" else v)
                                          for k, v in scope["headers"]]}

            async def receive():
                return {"type": "http.request", "body": body, "more_body": False}

        start, chunks = {}, []

        async def keep(message):
            if message["type"] == "http.response.start":
                start.update(message)
            else:
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    answer = json.loads(b"".join(chunks))
                    if start["status"] == 200 and path == "/api/v1":
                        answer["generate_options"] = sorted({*answer.get("generate_options", []), *CHOOSING})
                        answer["trend"] = True
                    elif start["status"] == 200:
                        answer["names"] = [{**r, **self.facts(r["name"], surname)} for r in answer["names"]]
                    out = json.dumps(answer).encode()
                    headers = [(k, str(len(out)).encode() if k == b"content-length" else v)
                               for k, v in start["headers"]]
                    await send({**start, "headers": headers})
                    await send({"type": "http.response.body", "body": out})

        await self.app(scope, receive, keep)


@pytest.fixture(scope="module")
def choosing(server, builtin_ngram_cache):
    """A server answering with issue 30's fields (ChoosingStandIn) over the built-in model."""
    from namesmith.data.words import builtin_path

    known = {}
    for line in builtin_path().read_text().splitlines()[1:]:
        name, female, male = line.split("\t")
        known[name] = int(female) + int(male)
    registry = ModelRegistry.builtin(["builtin"], cache=builtin_ngram_cache,
                                     limits=BuildLimits(server_mb=1 << 30))  # a test process may hold more
    assert registry.wait(600)
    stand_in = ChoosingStandIn(create_app(registry), known)
    with running(stand_in) as url:
        yield url, stand_in


def results_table(driver) -> tuple[list[str], list[dict[str, str]]]:
    """The results' column titles, and each name as {column title: cell text}, read in one step."""
    titles, rows = driver.execute_script(
        "return [Array.from(document.querySelectorAll('#results thead th')).map(th => th.firstChild.textContent),"
        "Array.from(document.querySelectorAll('#results tbody tr')).map(tr => Array.from(tr.cells)"
        ".map(td => td.textContent))]")
    return titles, [dict(zip(titles, row)) for row in rows]


@SLOW
def test_the_page_asks_and_shows_what_helps_choose_a_name(browser, choosing, artefacts, downloads):
    """Syllables, popularity, sounds-like, surname (+ alliteration) and invented-only reach the API; each name
    shows its syllables, real or new, popularity with a trend sparkline (inline SVG), nicknames and its fit
    with the surname (reasons behind a disclosure), sorted by the fit; NLL / char is an advanced column."""
    url, stand_in = choosing
    at_size(browser, 1280, 1000)
    try:
        open_page(browser, url + "/")
        assert browser.find_element(By.ID, "choosing").is_displayed()
        fill(browser, "syllables", "2-3")
        fill(browser, "sounds_like", "Emma")
        fill(browser, "surname", "Smith")
        for select, value in (("popularity", "rare"), ("alliteration", "avoid")):
            browser.find_element(By.CSS_SELECTOR, f"#{select} option[value='{value}']").click()
        browser.find_element(By.ID, "not_in_catalogue").click()
        browser.find_element(By.ID, "not_in_catalogue").click()  # on, then off again: false is sent
        fill(browser, "n", "15")
        fill(browser, "seed", "11").send_keys(Keys.ENTER)
        wait(browser, lambda d: len(shown_names(d)) == 15)
        sent = stand_in.requests[-1]
        assert {k: sent.get(k) for k in CHOOSING} == {"syllables": "2-3", "sounds_like": "Emma", "popularity": "rare",
                                                      "surname": "Smith", "alliteration": "avoid",
                                                      "not_in_catalogue": False}
        titles, rows = results_table(browser)
        assert titles == ["Name", "Syllables", "Real or new", "Popularity", "Nicknames",
                                 "Fit with the surname", "How name-like"]
        fits = [float(f) for f in browser.execute_script(  # the score, its reasons folded away
            "return Array.from(document.querySelectorAll('#results tbody details summary')).map(s => s.textContent)")]
        assert len(fits) == 15
        assert fits == sorted(fits, reverse=True)
        assert browser.find_element(By.ID, "sort").get_attribute("value") == "fit"
        assert browser.find_element(By.CSS_SELECTOR, "#sort option[value='order']").text == "closest in sound first"
        real = [r for r in rows if r["Real or new"] == "real"]
        assert real and any(r["Real or new"] == "new" for r in rows), rows
        for r in rows:
            facts = stand_in.facts(r["Name"], "Smith")
            assert r["Syllables"] == str(facts["syllables"])
            assert r["Nicknames"] == (", ".join(facts["nicknames"]) or "—")
            assert r["Popularity"].startswith(f"#{facts['popularity']['rank']:,} in the 2010s") if facts["known"] \
                else r["Popularity"] == "—"
        # a sparkline per real name, drawn once its trend came back; no trend asked for a new name
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results svg.spark polyline")) == len(real))
        assert sorted(stand_in.trends) == sorted(r["Name"] for r in real)
        spark = browser.find_element(By.CSS_SELECTOR, "#results svg.spark")
        assert "most in the 1990s" in spark.get_attribute("aria-label")
        assert len(spark.find_element(By.TAG_NAME, "polyline").get_attribute("points").split()) == 7
        # the fit's reasons, opened with the keyboard
        summary = browser.find_element(By.CSS_SELECTOR, "#results details summary")
        summary.send_keys(Keys.ENTER)
        assert "no clash of sounds" in browser.find_element(By.CSS_SELECTOR, "#results details ul").text
        browser.save_screenshot(str(artefacts / "desktop-choosing.png"))
        # NLL / char: only in the advanced column, and the button says whether it is shown
        assert "NLL / char" not in browser.find_element(By.CSS_SELECTOR, "#results thead").text
        browser.find_element(By.ID, "advanced").click()
        assert results_table(browser)[0][-1] == "NLL / char"
        assert browser.find_element(By.ID, "advanced").get_attribute("aria-pressed") == "true"
        browser.find_element(By.ID, "advanced").click()
        # sorted by popularity: real names by rank, then the new ones
        browser.find_element(By.CSS_SELECTOR, "#sort option[value='popularity']").click()
        ranks = [stand_in.ranks.get(n) for n in shown_names(browser)]
        assert ranks[:len(real)] == sorted(ranks[:len(real)]) and set(ranks[len(real):]) <= {None}
        # the CSV has the facts
        exported = downloads / "namesmith-names.csv"
        exported.unlink(missing_ok=True)  # else the browser saves "namesmith-names (1).csv"
        browser.find_element(By.ID, "csv-results").click()
        wait(browser, lambda d: exported.exists() and "syllables" in exported.read_text(), 10)
        with exported.open(newline="") as f:
            first = next(csv.DictReader(f))
        assert {"syllables", "known", "popularity_rank", "nicknames", "surname_fit"} <= set(first)
        # the share link brings the choosing options back
        link = browser.find_element(By.ID, "share-link").get_attribute("value")
        browser.switch_to.new_window("tab")
        open_page(browser, link)
        wait(browser, lambda d: len(shown_names(d)) == 15)
        assert [browser.find_element(By.ID, f).get_attribute("value") for f in ("syllables", "surname", "popularity")] \
            == ["2-3", "Smith", "rare"]
        assert sorted(shown_names(browser)) == sorted(r["Name"] for r in rows)
        browser.close()
        browser.switch_to.window(browser.window_handles[0])

        # a phone: the results in sight at once, as cards that say what each figure is, nothing sideways
        at_size(browser, 390, 844)
        browser.find_element(By.ID, "generate").click()
        wait(browser, lambda d: d.execute_script("return document.activeElement.id") == "results-title")
        top = browser.execute_script("return document.getElementById('results-title').getBoundingClientRect().top")
        assert -1 <= top < 844 / 2
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results svg.spark")) == len(real))
        assert sideways(browser) == ""
        label = browser.execute_script("return getComputedStyle(document.querySelector("
                                       "'#results tbody td:nth-child(2)'), '::before').content")
        assert "Syllables" in label
        browser.save_screenshot(str(artefacts / "phone-choosing.png"))
    finally:
        at_size(browser, 1280, 1400)


@SLOW
def test_a_model_of_sex_decade_and_origin_offers_them_as_selects(browser, tmp_path_factory, artefacts):
    """A model conditioned on sex, decade and locale shows three selects, titled for a person, values in words
    (F: female, en_GB: British English), decades in time order; the chosen ones steer the names. A
    server without the choosing options (this one, by its generate_options) hides their inputs."""
    folder = tmp_path_factory.mktemp("labelled")
    rows = ["name\tsex\tdecade\tlocale\tcount"]
    for i, name in enumerate(["emma", "olivia", "ava", "mia", "liam", "noah", "james", "oliver", "linda", "mary",
                              "susan", "karen", "james", "robert", "john", "david"]):
        sex = "F" if i % 8 < 4 else "M"
        decade = "2010s" if i < 8 else "1950s"
        rows.append(f"{name}\t{sex}\t{decade}\t{'en_GB' if i % 2 else 'en_US'}\t{100 + i}")
    (folder / "names.tsv").write_text("\n".join(rows) + "\n")
    from namesmith import NameModel

    NameModel.train(folder / "names.tsv", "bigram-counts", condition=("sex", "decade", "locale"), out=folder / "m",
                    split=False)
    app = create_app(ModelRegistry.from_directories([folder / "m"]))
    with running(app) as url:
        open_page(browser, url + "/")
        titles = browser.execute_script("return Array.from(document.querySelectorAll('#label-selects label'))"
                                        ".map(l => l.textContent)")
        assert titles == ["Sex", "Decade", "Origin (language, country)"]
        options = {s: browser.execute_script(f"return Array.from(document.getElementById('label-{s}').options)"
                                             ".map(o => [o.value, o.textContent])")
                   for s in ("sex", "decade", "locale")}
        assert options["sex"] == [["", "any"], ["F", "female"], ["M", "male"]]
        assert [v for v, _ in options["decade"]] == ["", "1950s", "2010s"]
        locales = dict(options["locale"])  # Chromium's words: "British English (en_GB)"
        assert "English" in locales["en_GB"] and locales["en_GB"].endswith("(en_GB)") and locales[""] == "any"
        hidden = browser.execute_script("return Array.from(document.querySelectorAll('[data-option]'))"
                                        ".filter(e => e.offsetParent !== null).map(e => e.dataset.option)")
        served = set(browser.execute_script("return state.server.generate_options"))
        assert set(hidden) == served & set(CHOOSING)
        browser.find_element(By.CSS_SELECTOR, "#label-decade option[value='1950s']").click()
        browser.find_element(By.CSS_SELECTOR, "#label-sex option[value='M']").click()
        fill(browser, "n", "5").send_keys(Keys.ENTER)
        wait(browser, lambda d: len(shown_names(d)) == 5)
        assert "where.decade=1950s" in browser.find_element(By.ID, "share-link").get_attribute("value")
        browser.save_screenshot(str(artefacts / "desktop-labels.png"))


@SLOW
def test_real_names_show_their_popularity_trend_and_nicknames_from_the_catalogue(browser, server, artefacts):
    """Against the server's own facts (choosing.syllables, choosing.popularity), from a share link asking for
    2 syllables: each name's syllables, a real name's rank of its best-known use, its sparkline from GET
    /api/v1/trend, its nicknames; a new name says so and has no sparkline."""
    from namesmith.choosing.popularity import best_use, is_known, trend
    from namesmith.choosing.syllables import count_syllables

    at_size(browser, 1280, 1000)
    try:
        open_page(browser, server + "/#model=builtin-ngram&n=25&seed=5&starts_with=ma&unique=1&syllables=2")
        wait(browser, lambda d: len(shown_names(d)) == 25)
        assert browser.find_element(By.ID, "syllables").get_attribute("value") == "2"
        titles, rows = results_table(browser)
        assert {"Syllables", "Real or new", "Popularity"} <= set(titles)
        assert all(r["Syllables"] == "2" == str(count_syllables(r["Name"])) for r in rows), rows
        real = [r["Name"] for r in rows if r["Real or new"] == "real"]
        assert real and [r["Name"] for r in rows if r["Real or new"] == "new"]
        for r in rows:
            assert (r["Real or new"] == "real") == is_known(r["Name"])
            use = best_use(r["Name"])
            assert r["Popularity"].startswith(f"#{use.rank:,} in the {use.decade}") if use else r["Popularity"] == "—"
        def decades(name: str) -> int:  # of the trend drawn: the sex and the data set of the best-known use
            use = best_use(name)
            return len({u.decade for u in trend(name, use.sex) if u.source == use.source}) if use else 0

        try:
            wait(browser, lambda d: d.execute_script("return state.results.every(r => !r.popularity || "
                                                     "state.trends.has(trendKey(r)))"))
        finally:
            browser.save_screenshot(str(artefacts / "desktop-real-names.png"))
        lines = browser.execute_script("return Array.from(document.querySelectorAll('#results tbody tr')).map(tr =>"
                                       " tr.querySelectorAll('svg.spark polyline').length)")
        # every sparkline spans the decades of all of them: a name of one decade is drawn too, as a peak
        assert any(decades(r["Name"]) >= 2 for r in rows)
        assert lines == [int(decades(r["Name"]) >= 1) for r in rows]
        spans = browser.execute_script("return Array.from(document.querySelectorAll('#results svg.spark polyline'))"
                                       ".map(p => p.getAttribute('points').split(' ').length)")
        assert len(set(spans)) == 1 and spans[0] >= 2, spans
        at_size(browser, 390, 844)  # a phone: the same names as cards, nothing sideways
        browser.execute_script("document.getElementById('results').scrollIntoView()")
        assert sideways(browser) == ""
        browser.save_screenshot(str(artefacts / "phone-real-names.png"))
        if "Nicknames" in titles:
            assert any(r["Nicknames"] != "—" for r in rows)
    finally:
        at_size(browser, 1280, 1400)


@SLOW
def test_the_keyboard_reaches_every_control_and_the_text_is_readable(browser, choosing):
    """Tab alone reaches every visible control of the generate view (the choosing inputs, the results' names
    and the fit's reasons included); every text on it has a contrast of at least 4.5:1 (WCAG AA)."""
    url, _ = choosing
    at_size(browser, 1280, 1000)
    try:
        open_page(browser, url + "/#model=builtin-ngram&n=6&seed=2&surname=Smith")
        wait(browser, lambda d: len(shown_names(d)) == 6)
        controls = browser.execute_script(
            "return Array.from(document.querySelectorAll('#panel-generate :is(input, select, textarea, button, "
            "summary, a[href]), [role=tab][aria-selected=true]')).filter(e => e.getClientRects().length > 0 && "
            "!e.disabled)")
        browser.find_element(By.TAG_NAME, "body").click()
        reached = []
        for _ in range(len(controls) + 20):
            browser.switch_to.active_element.send_keys(Keys.TAB)
            reached.append(browser.switch_to.active_element)
        kinds = {c.tag_name for c in controls}
        assert len(controls) > 30 and {"input", "select", "button", "summary"} <= kinds, kinds
        missed = [c.get_attribute("id") or c.text for c in controls if c not in reached]
        assert missed == [], f"not reached with Tab: {missed}"
        low = browser.execute_script(
            "const ground = (e) => { for (; e; e = e.parentElement) { const c = getComputedStyle(e).backgroundColor;"
            " if (c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent') return c; } return 'rgb(255, 255, 255)'; };"
            "const texts = Array.from(document.querySelectorAll('#panel-generate *, header *')).filter(e => "
            "e.getClientRects().length > 0 && Array.from(e.childNodes).some(n => n.nodeType === 3 && "
            "n.textContent.trim()));"
            "return texts.map(e => [e.tagName + (e.id ? '#' + e.id : '') + ' ' + e.textContent.trim().slice(0, 20),"
            " getComputedStyle(e).color, ground(e)])")
        assert len(low) > 50
        poor = sorted({(what, round(contrast(colour, ground), 2)) for what, colour, ground in low
                       if contrast(colour, ground) < 4.5})
        assert poor == [], f"text under 4.5:1: {poor}"
    finally:
        at_size(browser, 1280, 1400)


@SLOW
def test_a_surname_scores_each_name_and_sorts_by_the_fit(browser, server, artefacts):
    """Against the server's own scores (namesmith.choosing.surname): with a surname, each name's fit and its reasons in
    words, best first; alliteration avoided reaches the server."""
    from namesmith.choosing.surname import alliterates, surname_fit

    at_size(browser, 1280, 1000)
    try:
        open_page(browser, server + "/#model=builtin-ngram&n=10&seed=4&surname=Smith&alliteration=avoid")
        wait(browser, lambda d: len(shown_names(d)) == 10)
        assert browser.find_element(By.ID, "alliteration").get_attribute("value") == "avoid"
        assert "Fit with the surname" in results_table(browser)[0]
        assert browser.find_element(By.ID, "sort").get_attribute("value") == "fit"
        fits = browser.execute_script("return state.results.map(r => [r.name, r.surname_fit])")
        shown = [float(s) for s in browser.execute_script(
            "return Array.from(document.querySelectorAll('#results tbody details summary')).map(s => s.textContent)")]
        assert shown == sorted(shown, reverse=True) and len(shown) == 10
        assert all(0 <= fit["score"] <= 1 and fit["reasons"] for _, fit in fits)
        assert shown == sorted((round(fit["score"], 2) for _, fit in fits), reverse=True)
        for name, fit in fits:
            assert not alliterates(name, "Smith")
            assert fit["score"] == pytest.approx(surname_fit(name, "Smith", "avoid").score, abs=1e-6)
        browser.save_screenshot(str(artefacts / "desktop-surname.png"))
    finally:
        at_size(browser, 1280, 1400)


@SLOW
def test_sounds_like_shows_names_of_that_sound_closest_first(browser, server):
    """Against the server's own keys (namesmith.choosing.phonetic, the phonetic extra): each name shares a Double
    Metaphone key with the name typed, in the server's order, which the sort names for what it is."""
    pytest.importorskip("doublemetaphone")
    from namesmith.choosing.phonetic import sounds_alike

    open_page(browser, server + "/")
    fill(browser, "sounds_like", "Aiden")
    fill(browser, "seed", "3")
    fill(browser, "n", "6").send_keys(Keys.ENTER)
    wait(browser, lambda d: len(shown_names(d)) == 6)
    names = shown_names(browser)
    assert all(sounds_alike(name, "Aiden") for name in names), names
    assert names == browser.execute_script("return state.results.map(r => r.name)")  # as the server ranked them
    assert browser.find_element(By.CSS_SELECTOR, "#sort option[value='order']").text == "closest in sound first"
    assert "sounds_like=Aiden" in browser.find_element(By.ID, "share-link").get_attribute("value")


@SLOW
def test_sounds_like_shows_the_known_spellings_of_the_name(browser, server):
    """The line of known names that sound like the name typed, closest first, as GET /api/v1/variants ranks them
    (namesmith.choosing.phonetic.sounds_like); gone once no name is given to sound like."""
    pytest.importorskip("doublemetaphone")
    from namesmith.choosing.phonetic import sounds_like

    open_page(browser, server + "/")
    fill(browser, "sounds_like", "Katelyn")
    fill(browser, "n", "4").send_keys(Keys.ENTER)
    line = browser.find_element(By.ID, "variants")
    wait(browser, lambda d: line.is_displayed() and line.text)
    assert line.text == "Known names that sound like Katelyn: " + ", ".join(sounds_like("Katelyn", k=8))
    assert "Kaitlyn" in line.text
    fill(browser, "sounds_like", "")
    browser.find_element(By.ID, "generate").click()
    wait(browser, lambda d: not line.is_displayed())
