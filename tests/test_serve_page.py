"""The attention page in a real browser: Debian's Chromium, headless, driven by Playwright.

`make test` installs Chromium first (scripts/debian-package.sh); where it cannot be installed
these tests skip with that reason. Screenshots go to the test's output directory."""

from __future__ import annotations

import httpx
import pytest

from tests.serving import chromium_path

CHROMIUM = chromium_path()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium (scripts/debian-package.sh could not install it; or set ATTNSEQ_CHROMIUM)"
)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


def submit(page, server: str, text: str, *, model: str = "dates", beam: int | None = None) -> None:
    page.goto(server + "/")
    page.wait_for_selector(f"#model option[value='{model}']", state="attached")
    page.select_option("#model", model)
    if beam is not None:
        page.fill("#beam", str(beam))
        page.fill("#nbest", str(beam))
    page.fill("#input", text)
    page.click("#submit")
    page.wait_for_selector("#heatmap td.cell")


def cells(page) -> list[list[float]]:
    """The heatmap's weights, row by row, as the page holds them."""
    return page.eval_on_selector_all(
        "#heatmap tbody tr",
        "rows => rows.map(r => [...r.querySelectorAll('td.cell')].map(c => Number(c.dataset.weight)))",
    )


def test_the_page_shows_output_n_best_and_the_attention_the_api_returned(browser, server, tmp_path):
    sentence = "March 3, 2021"
    api = httpx.post(f"{server}/v1/predict", json={"inputs": [sentence], "search": {"beam_size": 3, "n_best": 3}})
    expected = api.json()["predictions"][0]
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    submit(page, server, sentence, beam=3)
    assert page.text_content("#output") == (expected["output"] or "(empty)")
    weights = cells(page)
    assert len(weights) == len(expected["output_tokens"])  # output tokens x source tokens
    assert all(len(row) == len(expected["input_tokens"]) for row in weights)
    assert weights == expected["attention"]
    header = page.eval_on_selector_all("#heatmap thead th[scope=col]", "ths => ths.map(t => t.textContent)")
    assert header == expected["input_tokens"]
    assert page.locator("#nbest-list li").count() == len(expected["alternatives"]) == 3
    # hovering a cell names its source token, output token and weight
    page.hover("#heatmap td.cell[data-row='0'][data-col='0']")
    info = page.text_content("#cell-info")
    assert expected["input_tokens"][0] in info and expected["output_tokens"][0] in info
    assert f"{expected['attention'][0][0]:.3f}" in info
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert (tmp_path / "page.png").stat().st_size > 10_000
    print(f"screenshot: {tmp_path / 'page.png'}")


def test_the_page_works_from_the_keyboard(browser, server):
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    page.goto(server + "/")
    page.wait_for_selector("#model option[value='dates']", state="attached")
    page.focus("#input")
    page.keyboard.type("1 May 2020")
    page.keyboard.press("Control+Enter")  # submits without the mouse
    page.wait_for_selector("#heatmap td.cell")
    page.focus("#heatmap td.cell[data-row='0'][data-col='0']")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")
    focused = page.evaluate("[document.activeElement.dataset.row, document.activeElement.dataset.col]")
    assert focused == ["1", "1"]
    assert "weight" in page.text_content("#cell-info")


def test_a_classifier_shows_its_weights_over_the_tokens_on_a_phone_sized_screen(browser, server, tmp_path):
    text = "the film was really great"
    expected = httpx.post(f"{server}/v1/predict", json={"model": "sentiment", "inputs": [text]}).json()
    expected = expected["predictions"][0]
    page = browser.new_page(viewport={"width": 375, "height": 740}, device_scale_factor=2)
    submit(page, server, text, model="sentiment")
    assert page.is_hidden("#search-row")  # a classifier has no search options
    assert cells(page) == expected["attention"]  # one row: the pooling weights
    assert page.text_content("#output") == expected["output"]
    assert page.locator("#nbest-list li").count() == 2  # every class, by probability
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375  # nothing wider than the screen: the heatmap scrolls inside its box
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)


def test_an_error_from_the_api_is_shown_not_swallowed(browser, server):
    page = browser.new_page()
    page.goto(server + "/")
    page.wait_for_selector("#model option[value='dates']", state="attached")
    page.fill("#input", "x" * 1001)  # over the server's 1,000 characters per input
    page.click("#submit")
    page.wait_for_selector("#status.error")
    assert "1000 characters" in page.text_content("#status")


def test_the_page_marks_the_output_tokens_a_copying_model_copied(browser, server):
    sentence = "March 3, 2021"
    api = httpx.post(f"{server}/v1/predict", json={"inputs": [sentence]}).json()
    prediction = api["predictions"][0]
    shares = [0.9 if i % 2 == 0 else 0.1 for i in range(len(prediction["output_tokens"]))]
    api["predictions"][0] = {**prediction, "copied": shares}  # as a model that copies answers
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    page.route("**/v1/predict", lambda route: route.fulfill(json=api))
    submit(page, server, sentence)
    rows = page.eval_on_selector_all(
        "#heatmap tbody th", "ths => ths.map(t => [t.classList.contains('copied'), t.title])"
    )
    assert [marked for marked, _ in rows] == [s >= 0.5 for s in shares]
    assert rows[0][1] == "90% of its probability copied from the input"
    assert page.is_visible("#copy-info")
    # a model that does not copy: no marks, no note
    page.unroute("**/v1/predict")
    submit(page, server, sentence)
    assert page.locator("#heatmap tbody th.copied").count() == 0 and not page.is_visible("#copy-info")
