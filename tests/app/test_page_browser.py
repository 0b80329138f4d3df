"""The page in a real browser: headless Chromium (Debian's) driven by Playwright against a
real uvicorn server on loopback. Screenshots go to tests/screenshots/ (git-ignored)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.utils.browser import CHROMIUM_ARGS, chromium_path, screenshot, unavailable
from tests.utils.images import encode, smear_like_rgb
from tests.utils.live_server import live_server

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
METHODS = {"cam", "gradcam", "gradcam++", "layercam"}
KEY = "browser-key-0123456789abcdef"
TIMEOUT_MS = 180_000  # the machine may be busy: a slow answer is not a failure here
RESULTS_DONE = (
    "document.body.dataset.state === 'done' && "
    "document.querySelectorAll('#methods img').length === 4"
)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        unavailable("the browser tests need Playwright (the dev extra: `pip install playwright`)")
    path = chromium_path()
    if path is None:
        unavailable(
            "the browser tests need Chromium: run `./scripts/setup.sh --browser` as root "
            "or `apt-get install chromium` (Playwright's own download is not used)"
        )
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        except Error as error:
            unavailable(f"Chromium at {path} did not start: {error.message.splitlines()[0]}")
        yield launched
        launched.close()


class Tab:
    """One page in a fresh browser context, with every console error and page error kept."""

    def __init__(self, browser) -> None:
        self.context = browser.new_context(
            viewport={"width": 1280, "height": 900}, accept_downloads=True
        )
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.page.on(
            "console",
            lambda message: message.type == "error" and self.console_errors.append(message.text),
        )
        self.page.on("pageerror", lambda error: self.page_errors.append(str(error)))

    def open(self, base_url: str) -> None:
        self.page.goto(base_url + "/")
        self.page.wait_for_function(
            "!document.getElementById('model').textContent.includes('loading')"
        )

    def choose_file(self, path: Path) -> None:
        self.page.set_input_files("input[type=file]", str(path))

    def wait_for_results(self) -> None:
        self.page.wait_for_function(RESULTS_DONE)

    def wait_for_error(self, expected: str) -> str:
        """The error message once it says `expected`; by then no spinner may still turn."""
        self.page.wait_for_function(
            "expected => { const box = document.getElementById('error');"
            " return !box.hidden && box.textContent.includes(expected); }",
            arg=expected,
        )
        assert not self.page.eval_on_selector(
            "#status", "status => status.classList.contains('busy')"
        )
        assert self.page.evaluate("document.body.dataset.state") in (None, "error")
        return self.page.inner_text("#error")

    def wait_for_new_pictures(self, before: dict[str, str]) -> None:
        """Until new explanations are shown: some method's picture differs from `before`."""
        self.page.wait_for_function(
            "old => document.body.dataset.state === 'done' && [...document.querySelectorAll("
            "'#methods img')].some(image => image.src !== old[image.dataset.method])",
            arg=before,
        )

    def label(self) -> str:
        return self.page.inner_text("#label")

    def pictures(self) -> dict[str, str]:
        """method -> the picture's src, for each explanation shown."""
        return self.page.eval_on_selector_all(
            "#methods img",
            "images => Object.fromEntries(images.map(image => [image.dataset.method, image.src]))",
        )

    def assert_clean(self) -> None:
        assert self.page_errors == []
        assert self.console_errors == []


@pytest.fixture
def tab(browser):
    opened = Tab(browser)
    yield opened
    opened.context.close()


@pytest.fixture(scope="module")
def keyed_server_url():
    """A real server that needs an API key."""
    with live_server({"WBC_API_KEY": KEY}) as server:
        yield server.url


def predicted_label(base_url: str, path: Path, headers: dict | None = None) -> str:
    response = httpx.post(
        f"{base_url}/predict",
        headers=headers or {},
        timeout=120,
        files={"file": (path.name, path.read_bytes(), "image/jpeg")},
    )
    response.raise_for_status()
    return response.json()["predictions"][0]["label"]


def assert_accessible(page) -> None:
    """Every picture has alt text and every control a label (or an accessible name)."""
    unnamed = page.evaluate("""() => {
        const missing = [];
        for (const image of document.querySelectorAll('img'))
            if (!image.alt.trim()) missing.push('img ' + (image.id || image.src.slice(0, 40)));
        for (const control of document.querySelectorAll('input, select, textarea'))
            if (!control.labels.length && !control.getAttribute('aria-label'))
                missing.push(control.tagName + ' ' + control.id);
        for (const button of document.querySelectorAll('button, a[href]'))
            if (!(button.getAttribute('aria-label') || button.textContent.trim()))
                missing.push(button.tagName + ' ' + button.outerHTML.slice(0, 60));
        return missing;
    }""")
    assert unnamed == []


def model_reasons(server_url: str) -> dict[str, str]:
    """The review reasons' explanations, as GET /models gives them."""
    return httpx.get(f"{server_url}/models").json()["models"][0]["review"]["reasons"]


def test_an_example_shows_the_predict_label_and_every_method(server_url, tab, tmp_path):
    tab.open(server_url)
    model = httpx.get(f"{server_url}/models").json()["models"][0]
    assert f"{model['name']}, version {model['version']}" in tab.page.inner_text("#model")
    tab.page.click("button[data-example='neutrophil-1.jpeg']")
    tab.wait_for_results()
    assert tab.label() == predicted_label(server_url, EXAMPLES / "neutrophil-1.jpeg")
    pictures = tab.pictures()
    assert set(pictures) == METHODS
    assert all(src.startswith("data:image/png;base64,") for src in pictures.values())
    captions = tab.page.locator("#methods figcaption").all_inner_texts()
    assert all(re.search(r"Layer fire\d, \d+ ms", caption) for caption in captions)
    assert tab.page.locator("#probabilities li").count() == len(model["classes"])
    assert "calibrated confidence" in tab.page.inner_text("#confidence")
    served = httpx.post(
        f"{server_url}/predict",
        timeout=120,
        files={"file": ("n.jpeg", (EXAMPLES / "neutrophil-1.jpeg").read_bytes())},
    ).json()["predictions"][0]
    expected = "Review recommended" if served["review"] else "No review needed"
    assert tab.page.inner_text("#review").startswith(expected)
    # A 320x240 example, no scale given: its red cells measure the data set's field of view.
    assert tab.page.inner_text("#scale") == (
        "Scale 0.151 µm per pixel, measured from the red cells."
    )
    assert_accessible(tab.page)
    screenshot(tab.page, "example-neutrophil")

    with tab.page.expect_download() as download:
        tab.page.click("#audit")
    record = json.loads(Path(download.value.path()).read_text())
    assert record["model"] == {"name": model["name"], "version": model["version"]}
    assert record["prediction"]["label"] == tab.label()
    assert set(record["prediction"]["probabilities"]) == set(model["classes"])
    assert record["parameters"]["colormap"] == "jet" and record["parameters"]["alpha"] == 0.4
    assert {e["method"] for e in record["explanations"]} == METHODS
    assert record["image"]["sha256"] is not None and record["image"]["size"] == [320, 240]
    with tab.page.expect_download() as download:
        tab.page.click("#methods li[data-method='gradcam'] a[download]")
    with Image.open(download.value.path()) as overlay:
        assert overlay.size == (320, 240)
    tab.assert_clean()


def test_a_smear_in_the_file_input_shows_the_predict_label(server_url, tab):
    smear = EXAMPLES / "lymphocyte-2.jpeg"
    tab.open(server_url)
    calls = []
    tab.page.on(
        "request",
        lambda request: (
            request.url.startswith(server_url) and calls.append(request.url.split("/")[-1])
        ),
    )
    tab.choose_file(smear)
    tab.wait_for_results()
    assert tab.label() == predicted_label(server_url, smear)
    assert set(tab.pictures()) == METHODS
    # One /predict and one /explain for all four methods, nothing else.
    assert sorted(calls) == [
        "explain?method=all&output=both&alpha=0.4&threshold=0.2&colormap=jet",
        "predict",
    ]
    assert tab.page.is_visible("#preview")
    tab.assert_clean()


# Builds a File from an example in the page and hands it over as a drop or a paste would.
HAND_OVER = """async ([how, url, name]) => {
    const blob = await (await fetch(url)).blob();
    const transfer = new DataTransfer();
    transfer.items.add(new File([blob], name, {type: 'image/jpeg'}));
    const event = how === 'drop'
        ? new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true})
        : new ClipboardEvent('paste', {clipboardData: transfer, bubbles: true, cancelable: true});
    (how === 'drop' ? document.getElementById('drop') : document).dispatchEvent(event);
}"""


def test_an_image_can_be_dropped_or_pasted(server_url, tab):
    tab.open(server_url)
    for how, name in (("drop", "eosinophil-2.jpeg"), ("paste", "neutrophil-2.jpeg")):
        tab.page.evaluate("document.body.dataset.state = 'waiting'")
        tab.page.evaluate(HAND_OVER, [how, f"/examples/{name}", f"{how}-{name}"])
        tab.wait_for_results()
        assert tab.label() == predicted_label(server_url, EXAMPLES / name)
        assert f"{how}-{name}" in tab.page.inner_text("#preview-caption")
    tab.assert_clean()


def test_an_unusual_image_is_flagged_and_the_cell_box_drawn(server_url, tab, tmp_path):
    """A synthetic smear is out of distribution for the real model. The page gets the real
    server's /predict answer for it with a cell box added, so the drawing is tested whether
    or not the served model gives one (Playwright cannot resend an intercepted upload)."""
    synthetic = tmp_path / "synthetic.png"
    synthetic.write_bytes(encode(Image.fromarray(smear_like_rgb(320, 240))))
    answer = httpx.post(
        f"{server_url}/predict",
        timeout=120,
        files={"file": (synthetic.name, synthetic.read_bytes(), "image/png")},
    ).json()
    answer["predictions"][0]["cell_box"] = [80, 60, 240, 180]
    tab.open(server_url)
    tab.page.route("**/predict", lambda route: route.fulfill(json=answer))
    tab.choose_file(synthetic)
    tab.wait_for_results()
    warning = tab.page.inner_text("#ood")
    assert tab.page.is_visible("#ood") and "out of distribution" in warning
    assert "Mahalanobis distance" in warning  # the service's own reason
    review = tab.page.inner_text("#review")
    assert tab.page.is_visible("#review") and review.startswith("Review recommended")
    assert answer["predictions"][0]["review"]
    for reason in answer["predictions"][0]["review_reasons"]:  # in the model's own words
        assert model_reasons(server_url)[reason][:40].lower() in review.lower()
    box = tab.page.eval_on_selector(
        "#cell-box",
        "box => [box.hidden, box.style.left, box.style.top, box.style.width, box.style.height]",
    )
    assert box == [False, "25%", "25%", "50%", "50%"]
    assert "cell box" in tab.page.get_attribute("#preview", "alt")
    screenshot(tab.page, "out-of-distribution-with-cell-box")
    assert tab.page_errors == []


def test_every_cell_is_drawn_with_its_label_and_can_be_explained(server_url, tab, tmp_path):
    """Two example smears side by side: two cells, each boxed with its label; choosing the
    second explains it (its box becomes the explained one)."""
    field = Image.new("RGB", (640, 240))
    field.paste(Image.open(EXAMPLES / "eosinophil-1.jpeg").convert("RGB"), (0, 0))
    field.paste(Image.open(EXAMPLES / "lymphocyte-1.jpeg").convert("RGB"), (320, 0))
    path = tmp_path / "two-cells.png"
    path.write_bytes(encode(field))
    tab.open(server_url)
    tab.choose_file(path)
    tab.wait_for_results()
    marks = tab.page.locator("#cell-marks .cell-mark")
    assert marks.count() >= 2
    labels = marks.all_inner_texts()
    assert labels[0].startswith("1: ") and labels[1].startswith("2: ")
    assert tab.page.locator("#cell option").count() == marks.count()
    first_box = tab.page.eval_on_selector("#cell-box", "box => box.style.left")
    before = tab.pictures()
    tab.page.select_option("#cell", "1")
    tab.wait_for_new_pictures(before)
    assert tab.page.eval_on_selector("#cell-box", "box => box.style.left") != first_box
    screenshot(tab.page, "two-cells-second-explained")
    assert_accessible(tab.page)
    tab.assert_clean()


def test_the_target_and_controls_change_the_pictures(server_url, tab):
    tab.open(server_url)
    tab.choose_file(EXAMPLES / "eosinophil-2.jpeg")
    tab.wait_for_results()
    predicted, first = tab.label(), tab.pictures()
    tab.page.select_option("#colormap", "viridis")
    tab.wait_for_new_pictures(first)
    before = tab.pictures()
    assert all(before[method] != first[method] for method in METHODS)

    other = next(label for label in ("MONOCYTE", "LYMPHOCYTE") if label != predicted)
    tab.page.select_option("#target", other)
    tab.wait_for_new_pictures(before)
    assert tab.page.inner_text("#explain-target").startswith(f"Explaining {other} ")
    after = tab.pictures()
    assert set(after) == METHODS
    assert all(after[method] != before[method] for method in METHODS)
    assert all(
        other in alt
        for alt in tab.page.eval_on_selector_all(
            "#methods img", "images => images.map(image => image.alt)"
        )
    )
    screenshot(tab.page, "target-switched")

    tab.page.check("input[name=view][value=heatmap]")
    for src in tab.pictures().values():
        png = base64.b64decode(src.split(",", 1)[1])
        assert png[25] == 0  # PNG colour type 0: the greyscale heat map, not the overlay
    screenshot(tab.page, "heatmaps")
    tab.assert_clean()


def test_bad_files_show_a_readable_message(server_url, tab, tmp_path):
    tab.open(server_url)
    text = tmp_path / "notes.txt"
    text.write_text("not a smear\n")
    tab.choose_file(text)
    tab.wait_for_error("not an image file")
    screenshot(tab.page, "bad-text-file")

    tiny = tmp_path / "tiny.png"
    tiny.write_bytes(encode(Image.fromarray(smear_like_rgb(4, 4))))
    tab.choose_file(tiny)
    assert "4x4" in tab.wait_for_error("could not be used")

    huge = tmp_path / "huge.jpeg"
    with open(huge, "wb") as handle:
        handle.truncate(60 * 2**20)
    tab.choose_file(huge)
    assert "60.0 MB" in tab.wait_for_error("too large")
    screenshot(tab.page, "bad-huge-file")

    # The network fails: the message says so, and the spinner stops.
    tab.page.route("**/predict", lambda route: route.abort())
    tab.page.click("button[data-example='monocyte-1.jpeg']")
    tab.wait_for_error("could not be reached")
    assert tab.page_errors == []


def test_the_page_asks_for_an_api_key_and_keeps_it_in_memory(keyed_server_url, tab):
    sent = []
    tab.page.on(
        "request", lambda request: sent.append((request.url, request.headers.get("authorization")))
    )
    tab.page.goto(keyed_server_url + "/")
    tab.page.wait_for_selector("#key-form:not([hidden])")
    assert "needs an API key" in tab.page.inner_text("#key-form")
    assert tab.page.evaluate("document.activeElement.id") == "key-input"
    screenshot(tab.page, "api-key-asked")

    tab.page.fill("#key-input", "wrong-key-0123456789abcdef")
    tab.page.press("#key-input", "Enter")
    tab.page.wait_for_function(
        "document.getElementById('key-message').textContent.includes('not accepted')"
    )
    assert "not accepted" in tab.page.inner_text("#error")

    sent.clear()
    tab.page.fill("#key-input", KEY)
    tab.page.press("#key-input", "Enter")
    tab.page.wait_for_function("document.getElementById('model').textContent.includes('version')")
    assert tab.page.is_hidden("#key-form") and tab.page.is_hidden("#error")
    smear = EXAMPLES / "monocyte-2.jpeg"
    tab.choose_file(smear)
    tab.wait_for_results()
    assert tab.label() == predicted_label(
        keyed_server_url, smear, {"Authorization": f"Bearer {KEY}"}
    )
    api_calls = {
        re.sub(r"\?.*", "", url.removeprefix(keyed_server_url)): auth
        for url, auth in sent
        if re.search(r"/(models|predict|explain)\b", url)
    }
    assert api_calls == dict.fromkeys(["/models", "/predict", "/explain"], f"Bearer {KEY}")
    stored = tab.page.evaluate("[localStorage.length, sessionStorage.length, document.cookie]")
    assert stored == [0, 0, ""] and tab.context.cookies() == []
    assert KEY not in tab.page.content()
    assert tab.page_errors == []


def test_keyboard_only_use(server_url, tab):
    tab.open(server_url)
    page = tab.page

    def tab_to(selector: str, limit: int = 40) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate(f"document.activeElement.matches({json.dumps(selector)})"):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to("button[data-example='lymphocyte-1.jpeg']")
    page.keyboard.press("Enter")
    tab.wait_for_results()
    before = tab.pictures()
    tab_to("#target")
    page.keyboard.press("ArrowDown")  # the first class after "Predicted class"
    tab.wait_for_new_pictures(before)
    assert page.inner_text("#explain-target").startswith("Explaining EOSINOPHIL ")

    tab_to("#methods li[data-method='layercam'] button.enlarge")
    page.keyboard.press("Enter")
    page.wait_for_selector("#zoom[open]")
    assert "LayerCAM" in page.inner_text("#zoom-title")
    screenshot(page, "enlarged")
    page.keyboard.press("Escape")
    page.wait_for_selector("#zoom:not([open])", state="attached")
    assert page.evaluate(
        "document.activeElement.matches('#methods li[data-method=layercam] button.enlarge')"
    )
    tab.assert_clean()
