"""The web playground at / in a real browser (Debian's Chromium, headless, driven by Playwright): an arc
drawn with the mouse, a story streamed with its target and measured arcs, two turns of play, a
regenerate and swipes, a bad key's message; the server on a fake model, and once on the embedded one.
EE_PLAYGROUND_SHOTS=DIR keeps screenshots there (docs/playground.png comes from one)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
# a control's accessible name, roughly: its label, else its aria-label, else its text
NAME_OF = (
    "const e = document.querySelector('CONTROL'); "
    "return e.labels && e.labels.length ? e.labels[0].textContent : e.getAttribute('aria-label') || e.textContent;"
)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(
            "Chromium is not installed: `make chromium` (apt-get install chromium) — the playground tests need it"
        )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    yield page
    page.close()


def shot(page, name: str) -> None:
    where = os.environ.get("EE_PLAYGROUND_SHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(where) / f"{name}.png"), full_page=True)


def open_with_key(page, url: str, key: str) -> None:
    page.goto(url)
    page.fill("#key", key)
    page.dispatch_event("#key", "change")
    page.wait_for_function("document.querySelectorAll('#arc option').length > 6")


def draw_arc(page) -> None:
    box = page.locator("#chart").bounding_box()
    page.mouse.move(box["x"] + 5, box["y"] + box["height"] * 0.3)
    page.mouse.down()
    for i in range(1, 30):  # down into a hole, then up again
        x = box["x"] + 5 + i * (box["width"] - 10) / 29
        y = box["y"] + box["height"] * (0.3 + 0.5 * (1 - abs(i - 15) / 15))
        page.mouse.move(x, y)
    page.mouse.up()


def test_a_drawn_arc_writes_a_story_that_streams_with_both_arcs(page, live_server, make_key):
    url, app = live_server()
    open_with_key(page, url, make_key())
    draw_arc(page)
    assert page.input_value("#arc") == "drawn"
    drawn = page.evaluate("state.drawn")
    assert 2 <= len(drawn) <= 20 and [t for t, _ in drawn] == sorted(t for t, _ in drawn)
    assert min(v for _, v in drawn) < -0.3  # the hole was drawn
    page.fill("#words", "120")
    page.click("#write")
    page.wait_for_function("document.querySelector('#chart').dataset.measured >= 1", timeout=30_000)
    page.wait_for_function("!document.querySelector('#write').disabled", timeout=30_000)
    assert "harbour" in page.inner_text("#story")
    assert page.locator("#cast li").count() == 3
    shot(page, "playground-story")


def test_play_two_turns_regenerate_and_swipe(page, live_server, make_key):
    url, _ = live_server()
    open_with_key(page, url, make_key())
    page.click("#mode-play")
    page.click("#start")
    page.wait_for_function("!document.querySelector('#action').disabled")
    for action in ("I follow the lanterns.", "I call out to Mira."):
        page.fill("#action", action)
        page.press("#action", "Enter")
        page.wait_for_function(
            f"state.beats.length && state.beats.at(-1).action === {action!r} && state.beats.at(-1).index !== undefined"
        )
    assert page.locator("#story .action").all_inner_texts() == ["> I follow the lanterns.", "> I call out to Mira."]
    page.click("#regenerate")
    page.wait_for_function(
        "state.beats.length === 2 && state.beats.at(-1).index === 1 && !document.querySelector('#send').disabled"
    )
    page.click("#swipe")
    page.wait_for_selector("#swipes li button")
    page.click("#swipes li:nth-child(2) button")
    page.wait_for_function("document.querySelectorAll('#swipes li').length === 0")
    assert page.locator("#story .action").count() == 2 and int(page.get_attribute("#chart", "data-measured")) == 2
    shot(page, "playground-play")


def test_the_memory_panel_rewords_and_forgets_facts_and_the_lorebook_takes_an_entry(page, live_server, make_key):
    import httpx

    url, _ = live_server()
    key = make_key()
    open_with_key(page, url, key)
    page.click("#mode-play")
    page.click("#start")
    page.wait_for_function("!document.querySelector('#action').disabled")
    page.fill("#action", "I follow the lanterns.")
    page.press("#action", "Enter")
    page.wait_for_function("state.beats.length && state.beats.at(-1).index === 0")
    page.click("#memory-panel summary")
    page.wait_for_selector("#memory li input")
    facts = page.locator("#memory li input")
    shown = facts.count()
    assert shown >= 2 and facts.first.get_attribute("aria-label").startswith("fact 1, from beat 1")
    facts.first.fill("The lanterns were blue.")
    page.click("#memory li:nth-child(1) button:text('Save')")
    page.wait_for_function("document.querySelector('#memory li input').value === 'The lanterns were blue.'")
    page.click("#memory li:nth-child(2) button:text('Forget')")
    page.wait_for_function(f"document.querySelectorAll('#memory li').length === {shown - 1}")
    page.fill("#lore-keys", "lantern, lamp")
    page.fill("#lore-content", "The lanterns of the market are lit by the ferryman.")
    page.click("#lore-add")
    page.wait_for_function("document.querySelectorAll('#lore li').length === 1")
    shot(page, "playground-memory")
    sid = page.evaluate("state.session")
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as api:
        memory = api.get(f"/v1/sessions/{sid}/memory").json()
        lore = api.get(f"/v1/sessions/{sid}/lorebook").json()
    assert memory[0]["text"] == "The lanterns were blue." and len(memory) == shown - 1
    assert lore[0]["keys"] == ["lantern", "lamp"] and lore[0]["content"].startswith("The lanterns of the market")
    page.fill("#lore-content", " ")
    page.click("#lore-add")
    assert "empty" in page.locator("#error").inner_text()


def test_a_bad_key_shows_what_is_wrong(page, live_server):
    url, _ = live_server()
    open_with_key(page, url, "ee_not_a_real_key")
    page.click("#write")
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert error.inner_text().startswith("The API key was refused")
    assert page.get_attribute("#error", "role") == "alert"


def test_the_page_is_usable_on_a_phone_and_by_keyboard(browser, live_server, make_key):
    url, _ = live_server()
    page = browser.new_page(viewport={"width": 390, "height": 844})
    try:
        open_with_key(page, url, make_key())
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390  # nothing wider than the phone
        for control in ("#key", "#premise", "#arc", "#culture", "#audience", "#words", "#chart", "#write"):
            label = page.evaluate(f"(() => {{ {NAME_OF} }})()".replace("CONTROL", control))
            assert label.strip(), control
        page.focus("#chart")
        page.keyboard.press("ArrowUp")  # the arc as five points, the middle one raised
        assert page.input_value("#arc") == "drawn" and len(page.evaluate("state.drawn")) == 5
        shot(page, "playground-phone")
    finally:
        page.close()


def test_a_story_streams_from_the_embedded_model(page, settings, make_key, embedded_path):
    """Once with the real model: the page shows what it writes and how it measured."""
    import threading

    import uvicorn

    from emotional_engine.service import create_app
    from service_helpers import free_port

    real = settings.model_copy(update={"model_path": embedded_path})
    app = create_app(real, candidates=2)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(1200):  # the lifespan loads the model first
            if server.started or not thread.is_alive():
                break
            page.wait_for_timeout(100)
        assert server.started, "the server with the embedded model did not start"
        open_with_key(page, f"http://127.0.0.1:{port}", make_key(real))
        page.select_option("#arc", "icarus")
        page.fill("#words", "60")
        page.click("#write")
        page.wait_for_function("document.querySelector('#chart').dataset.measured >= 1", timeout=240_000)
        page.wait_for_function("!document.querySelector('#write').disabled", timeout=60_000)  # the story is done
        assert len(page.inner_text("#story").split()) >= 20 and page.locator("#cast li").count() == 3
        shot(page, "playground-embedded")
    finally:
        server.should_exit = True
        thread.join(20)
