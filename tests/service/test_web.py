"""The web page in a real headless Chromium against the loopback service: streamed text, images,
gallery search and feedback, the 403 message for a viewer key, and no console errors on the way.

Screenshots land in ``$GENLAB_ARTIFACTS`` (else ``tests/artifacts/``) for a person to look at."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("GENLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).is_file(),
    reason=f"no Chromium at {CHROMIUM}: install Debian's 'chromium' or set GENLAB_CHROMIUM to a Chromium binary",
)


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("GENLAB_ARTIFACTS") or Path(__file__).resolve().parents[1] / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class PageProblems:
    """Console errors, uncaught exceptions and failed requests seen by a page."""

    def __init__(self, page) -> None:
        self.console: list[str] = []
        self.requests: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.console.append(f"uncaught: {exc}"))
        page.on("requestfailed", lambda req: self.requests.append(f"{req.method} {req.url}: {req.failure}"))
        page.on("response", self._response)

    def _console(self, message) -> None:
        if message.type == "error":
            self.console.append(f"{message.text} @ {message.location.get('url')}")

    def _response(self, response) -> None:
        if response.status >= 400:
            self.requests.append(f"{response.status} {response.request.method} {response.url}")

    def unexpected(self, allowed: re.Pattern) -> list[str]:
        return [p for p in self.console + self.requests if not allowed.search(p)]


@pytest.fixture
def browser_page(service):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]'")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(30_000)  # generous: the first generation loads models on a busy CI machine
            sync_api.expect.set_options(timeout=30_000)
            yield page, PageProblems(page)
        finally:
            browser.close()


def save_screenshot(page, name: str) -> Path:
    from PIL import Image

    path = artifacts_dir() / name
    page.screenshot(path=str(path), full_page=True)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= 800 and image.height >= 400
        extrema = image.convert("L").getextrema()
    assert path.stat().st_size > 10_000 and extrema[1] - extrema[0] > 100, f"{path} looks blank"
    return path


def search_word(text: str, fallback: str) -> str:
    """The longest word in ``text`` that the keyword index keeps whole (letters and digits)."""
    words = re.findall(r"[A-Za-z0-9]{2,}", text)
    return max(words, key=len) if words else fallback


def test_web_page(service, browser_page):
    from playwright.sync_api import expect

    page, problems = browser_page
    testid = page.get_by_test_id
    page.goto(service.url + "/")
    expect(testid("auth-message")).to_contain_text("Enter an API key")

    # The key is kept in localStorage and unlocks the model list.
    testid("api-key").fill(service.keys["editor"])
    testid("save-key").click()
    expect(testid("auth-message")).to_be_hidden()
    assert page.evaluate("localStorage.getItem('genlab.apiKey')") == service.keys["editor"]
    expect(page.locator("#model option[value='gpt:1']")).to_have_count(1)

    # Streamed text: tokens arrive one event at a time, then the stored generation.
    testid("model-select").select_option("gpt:1")
    expect(testid("text-params")).to_be_visible()
    expect(testid("image-params")).to_be_hidden()
    testid("prompt").fill("Wherefore art thou")
    testid("max-new-tokens").fill("24")
    testid("stream").check()
    testid("generate").click()
    output = testid("result")
    expect(output).to_have_attribute("data-generation-id", re.compile(r"^\d+$"))
    expect(testid("generate")).to_be_enabled()
    text_id = int(output.get_attribute("data-generation-id"))
    generated = testid("generated-text").text_content()
    assert generated and int(testid("result-text").get_attribute("data-pieces")) > 1
    expect(testid("result-id")).to_have_text(f"#{text_id}")
    with service.client("editor") as client:
        stored = client.get(f"/v1/generations/{text_id}").json()
    assert stored["text"] == generated and stored["prompt"] == "Wherefore art thou"
    expect(testid("result-seed")).to_have_text(str(stored["seed"]))
    save_screenshot(page, "playground-text.png")

    # Diffusion models show a steps field; the VAE does not.
    testid("model-select").select_option("ddpm:1")
    expect(testid("num-steps")).to_be_visible()
    testid("model-select").select_option("cvae:1")
    expect(testid("num-steps")).to_be_hidden()

    # Four images of label 3, fetched with the key and shown through blob URLs at their 8×8 size.
    testid("n").fill("4")
    testid("labels").fill("3")
    testid("generate").click()
    images = page.locator("[data-testid=results] img")
    expect(images).to_have_count(4)
    page.wait_for_function("""() => [...document.querySelectorAll('[data-testid=results] img')]
        .every(img => img.complete && img.naturalWidth > 0)""")
    assert images.evaluate_all("imgs => imgs.map(img => img.naturalWidth)") == [8, 8, 8, 8]
    assert images.evaluate_all("imgs => imgs.every(img => img.src.startsWith('blob:'))")
    image_ids = [int(i) for i in testid("result").evaluate_all("els => els.map(e => e.dataset.generationId)")]
    with service.client("editor") as client:
        assert all(client.get(f"/v1/generations/{i}").json()["parameters"]["labels"] == [3] for i in image_ids)
    save_screenshot(page, "playground.png")

    # The gallery lists them; keyword search finds the streamed text by a word it contains.
    testid("tab-gallery").click()
    expect(page.locator(f"[data-testid=card][data-id='{text_id}']")).to_be_visible()
    expect(page.locator(f"[data-testid=card][data-id='{image_ids[0]}'] img")).to_be_visible()
    page.wait_for_function("""() => [...document.querySelectorAll('[data-testid=card] img')]
        .every(img => img.complete && img.naturalWidth > 0)""")
    save_screenshot(page, "gallery.png")
    word = search_word(generated, fallback="Wherefore")
    testid("search-input").fill(word)
    testid("search-mode").select_option("keyword")
    testid("search-button").click()
    expect(testid("gallery-status")).to_contain_text(f"for “{word}” (keyword)")
    card = page.locator(f"[data-testid=card][data-id='{text_id}']")
    expect(card).to_be_visible()

    # A rating goes to the API and comes back on the card.
    card.get_by_test_id("rate-4").click()
    expect(card).to_have_attribute("data-rated", "4")
    expect(card.get_by_test_id("card-rating")).to_contain_text("4.0")
    with service.client("admin") as client:
        rated = client.get(f"/v1/generations/{text_id}").json()
    assert rated["rating"] == 4 and rated["num_feedback"] == 1
    save_screenshot(page, "gallery-search.png")
    card.get_by_test_id("similar").click()
    expect(testid("gallery-status")).to_contain_text(f"similar to #{text_id}")
    page.emulate_media(color_scheme="dark")
    testid("show-all").click()
    expect(testid("gallery-status")).to_contain_text("Newest first")
    page.wait_for_function("""() => [...document.querySelectorAll('[data-testid=card] img')]
        .every(img => img.complete && img.naturalWidth > 0)""")
    save_screenshot(page, "gallery-dark.png")
    page.emulate_media(color_scheme="light")

    # A viewer may look but not generate: the page shows the server's 403 detail.
    testid("api-key").fill(service.keys["viewer"])
    testid("save-key").click()
    testid("tab-playground").click()
    expect(page.locator("#model option[value='gpt:1']")).to_have_count(1)
    testid("model-select").select_option("gpt:1")
    testid("prompt").fill("Wherefore art thou")
    testid("generate").click()
    expect(testid("generate-error")).to_contain_text("Not allowed with this key")
    expect(testid("generate-error")).to_contain_text("a viewer key may not do this")
    expect(testid("generate")).to_be_enabled()
    save_screenshot(page, "playground-forbidden.png")

    forbidden = re.compile(r"(^403 POST \S+/v1/generate$)|(status of 403 .* @ \S+/v1/generate$)")
    assert not problems.unexpected(forbidden), problems.unexpected(forbidden)
    assert any(forbidden.search(p) for p in problems.requests), "the viewer's generate request was not refused"
