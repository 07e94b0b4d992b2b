"""The web page in a real browser: Debian's headless Chromium driven by Playwright.

The page runs against the session's uvicorn server, which wants a token, so each test first gives
the page its token through the form the page shows on a 401. What the page shows is checked
against the SDK on the page's own drawing, and the page's images pixel for pixel.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxdigits
import pytest
from PIL import Image

from .conftest import TOKEN, Server

# A 7 in one stroke on the 280-pixel pad: the bar, then the slant down to the left.
SEVEN = [(70, 60), (210, 60), (190, 110), (160, 170), (135, 235)]

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect


class Page:
    """A fresh page on the server, with what it requested and what it logged."""

    def __init__(self, browser: Any, server: Server) -> None:
        self.server = server
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.requests: list[str] = []
        self.problems: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on(
            "console",
            lambda message: self.problems.append(message.text) if message.type == "error" else None,
        )

    def open(self) -> None:
        """Load the page and give it the token it asks for."""
        self.page.goto(f"{self.server.url}/")
        form = self.page.locator("#token-form")
        expect(form).to_be_visible(timeout=30_000)
        self.page.fill("#token", TOKEN)
        self.page.click("#token-form button")
        expect(form).to_be_hidden()
        expect(self.page.locator("#grid")).to_have_js_property("naturalWidth", 420, timeout=30_000)
        expect(self.page.locator("#plane")).to_have_attribute("data-bounds", _ANY, timeout=30_000)
        # The 401s before the token was given are expected; nothing else may go wrong.
        self.problems = [p for p in self.problems if "401" not in p]

    def stroke(self, canvas: str, points: list[tuple[float, float]], steps: int = 10) -> None:
        """Drag the mouse through `points` (canvas pixels): pointer events, as a pen would."""
        box = self.page.locator(canvas).bounding_box()
        width = self.page.locator(canvas).evaluate("c => c.width")
        scale = box["width"] / width
        at = [(box["x"] + x * scale, box["y"] + y * scale) for x, y in points]
        mouse = self.page.mouse
        mouse.move(*at[0])
        mouse.down()
        for (xa, ya), (xb, yb) in zip(at, at[1:]):
            for step in range(1, steps + 1):
                mouse.move(xa + (xb - xa) * step / steps, ya + (yb - ya) * step / steps)
        mouse.up()

    def pixels(self, selector: str) -> np.ndarray | None:
        """An <img>'s pixels as the browser decoded them: uint8 (H, W), the red channel; None
        while its first image is still loading (a new `src` loads asynchronously)."""
        encoded = self.page.locator(selector).evaluate(
            """img => {
                if (!img.complete || !img.naturalWidth) return null;
                const canvas = document.createElement("canvas");
                canvas.width = img.naturalWidth;
                canvas.height = img.naturalHeight;
                const context = canvas.getContext("2d");
                context.drawImage(img, 0, 0);
                const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
                let text = "";
                for (let i = 0; i < rgba.length; i += 4) text += String.fromCharCode(rgba[i]);
                return [canvas.height, canvas.width, btoa(text)];
            }"""
        )
        if encoded is None:
            return None
        height, width, data = encoded
        return np.frombuffer(base64.b64decode(data), np.uint8).reshape(height, width)

    def drawing(self) -> bytes:
        """The pad as the PNG the page sends."""
        url = self.page.locator("#pad").evaluate("c => c.toDataURL('image/png')")
        return base64.b64decode(url.split(",", 1)[1])

    def wait_for(self, condition: Callable[[], bool], timeout_s: float = 30) -> None:
        """Poll `condition` until it holds (the page's CSP rules out wait_for_function)."""
        for _ in range(int(timeout_s * 10)):
            if condition():
                return
            self.page.wait_for_timeout(100)
        assert condition(), "the page never got there"

    def assert_clean(self) -> None:
        assert not self.problems, self.problems
        own = (self.server.url, f"blob:{self.server.url}", "data:")
        outside = [url for url in self.requests if not url.startswith(own)]
        assert not outside, f"the page reached beyond its server: {outside}"


_ANY = re.compile(".+")  # any attribute value, for Playwright's expect


@pytest.fixture
def page(browser: Any, uvicorn_server: Server) -> Iterator[Page]:
    page = Page(browser, uvicorn_server)
    page.open()
    yield page
    page.page.close()


def png_of(array: np.ndarray) -> np.ndarray:
    return np.asarray(onnxdigits.to_image(array))


@pytest.fixture(scope="module")
def vae(artifacts: onnxdigits.Artifacts) -> tuple[onnxdigits.Encoder, onnxdigits.Generator]:
    return (
        onnxdigits.Encoder("vae", artifacts=artifacts, device="cpu"),
        onnxdigits.Generator("vae", artifacts=artifacts, device="cpu"),
    )


def test_draw_a_seven_and_read_its_label(
    page: Page, classifier: onnxdigits.Classifier, vae: Any, tmp_path: Path
) -> None:
    page.stroke("#pad", SEVEN)
    label = page.page.locator("#label")
    expect(label).to_have_text("7", timeout=30_000)
    # What the page shows is the SDK's answer on what the page drew.
    drawing = page.drawing()
    probs = classifier.predict_proba(drawing)[0]
    assert int(probs.argmax()) == 7
    bars = page.page.locator("#bars li")
    assert bars.count() == 10
    shown = [float(bars.nth(d).get_attribute("data-p")) for d in range(10)]
    np.testing.assert_allclose(shown, probs, atol=1e-6)
    assert page.page.locator("#bars li.top").inner_text().startswith("7")
    assert page.page.locator("#confidence").inner_text() == f"p = {probs[7]:.3f}"
    # The drawn digit's own place on the plane.
    plane = page.page.locator("#plane")
    expect(plane).to_have_attribute("data-drawn", _ANY, timeout=30_000)
    np.testing.assert_allclose(
        json.loads(plane.get_attribute("data-drawn")), vae[0].embed(drawing)[0], atol=1e-5
    )
    # A second stroke is read again: a bar across the 7's stem makes the pad's new answer.
    page.stroke("#pad", [(120, 150), (220, 150)])
    expect(page.page.locator("#bars li.top")).to_have_count(1)
    again = classifier.predict_proba(page.drawing())[0]
    expect(label).to_have_text(str(int(again.argmax())), timeout=30_000)
    screenshot = tmp_path / "page.png"
    page.page.screenshot(path=str(screenshot), full_page=True)
    with Image.open(screenshot) as shot:
        assert shot.size[0] >= 1200 and shot.size[1] >= 600
    page.page.click("#clear")
    expect(label).to_have_text("–")
    page.assert_clean()


def test_click_and_drag_on_the_plane_decode_those_points(page: Page, vae: Any) -> None:
    plane = page.page.locator("#plane")
    bounds = json.loads(plane.get_attribute("data-bounds"))
    decoded = page.page.locator("#decoded")

    def latent(x: float, y: float) -> list[float]:
        """The latent point under canvas pixel (x, y) of the 400-pixel plane."""
        return [
            bounds["x0"] + x / 400 * (bounds["x1"] - bounds["x0"]),
            bounds["y1"] - y / 400 * (bounds["y1"] - bounds["y0"]),
        ]

    box = plane.bounding_box()
    page.page.mouse.click(box["x"] + 240 * box["width"] / 400, box["y"] + 100 * box["height"] / 400)
    expect(decoded).to_have_js_property("naturalWidth", 28, timeout=30_000)
    z = json.loads(decoded.get_attribute("data-z"))
    np.testing.assert_allclose(z, latent(240, 100), atol=0.02)  # a pixel is about 0.02 wide
    digit = page.pixels("#decoded")
    np.testing.assert_array_equal(digit, png_of(vae[1].decode(np.array([z]))[0]))
    assert digit.max() > 200, "no digit appeared"
    # Dragging decodes as it goes; where the drag ends is what stays shown.
    page.stroke("#plane", [(240, 100), (120, 300)])
    end = latent(120, 300)
    page.wait_for(lambda: np.allclose(json.loads(decoded.get_attribute("data-z")), end, atol=0.02))
    z = json.loads(decoded.get_attribute("data-z"))
    page.wait_for(
        lambda: np.array_equal(page.pixels("#decoded"), png_of(vae[1].decode(np.array([z]))[0]))
    )
    page.assert_clean()


def test_the_grid_and_plane_follow_the_chosen_model(
    page: Page, artifacts: onnxdigits.Artifacts
) -> None:
    generators = {
        m: onnxdigits.Generator(m, artifacts=artifacts, device="cpu") for m in ("vae", "cvae")
    }
    np.testing.assert_array_equal(page.pixels("#grid"), png_of(generators["vae"].grid()))
    vae_bounds = page.page.locator("#plane").get_attribute("data-bounds")
    page.page.select_option("#model", "cvae")
    expect(page.page.locator("#plane")).not_to_have_attribute("data-bounds", vae_bounds)
    cvae_grid = png_of(generators["cvae"].grid())

    page.wait_for(lambda: np.array_equal(page.pixels("#grid"), cvae_grid))
    page.assert_clean()


def test_a_digit_button_draws_that_digit(page: Page, classifier: onnxdigits.Classifier) -> None:
    requested = page.page.locator("#requested")
    buttons = page.page.locator("#digits button")
    assert buttons.count() == 10
    for digit, model in ((3, "vae"), (8, "vae")):
        buttons.nth(digit).click()
        expect(requested).to_have_attribute("data-digit", str(digit), timeout=30_000)
        expect(requested).to_have_js_property("naturalWidth", 112, timeout=30_000)
        assert requested.get_attribute("data-model") == model
        assert buttons.nth(digit).get_attribute("aria-pressed") == "true"
        assert page.page.locator("#digits [aria-pressed=true]").count() == 1
        tiles = page.pixels("#requested").reshape(4, 28, 4, 28).transpose(0, 2, 1, 3)
        read = classifier.predict(tiles.reshape(16, 28, 28))
        assert np.mean(read == digit) >= 0.75, read
    # Another model draws the chosen digit again, from its own regions.
    page.page.select_option("#model", "ae")
    expect(requested).to_have_attribute("data-model", "ae", timeout=30_000)
    assert requested.get_attribute("data-digit") == "8"
    page.assert_clean()
