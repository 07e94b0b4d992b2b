"""The static site of `onnxdigits export-web` in a real browser, with no onnxdigits server.

The site is written once from the shipped set (onnxruntime-web from npm), served as plain files
by Python's http.server on loopback, and opened in Debian's headless Chromium. What its
onnxruntime-web sessions answer is compared with the SDK's onnxruntime sessions on the same
inputs; what it requests is recorded, and nothing may leave its origin.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxdigits
import pytest
from click.testing import CliRunner
from onnxdigits.cli import main
from onnxdigits.serve.web import ORT_FILES, SITE_JSON

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

# A 7 in one stroke on the 280-pixel pad: the bar, then the slant down to the left.
SEVEN = [(70, 60), (210, 60), (190, 110), (160, 170), (135, 235)]
LOAD_MS = 120_000  # the first load compiles 15 MB of WebAssembly on two busy cores
_ANY = re.compile(".+")  # any attribute value, for expect


def export_web(*args: str) -> Any:
    return CliRunner().invoke(main, ["export-web", *args])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped set's site, onnxruntime-web fetched by `npm pack` as the command does."""
    out = tmp_path_factory.mktemp("web") / "site"
    result = export_web("--out", str(out))
    assert result.exit_code == 0, result.output
    return out


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site_url(site: Path) -> Iterator[str]:
    """The site served from loopback by a plain static file server."""
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class SitePage:
    """The site open in a fresh page, with what it requested and what it logged."""

    def __init__(self, browser: Any, url: str) -> None:
        self.url = url
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.requests: list[str] = []
        self.problems: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on(
            "console",
            lambda message: self.problems.append(message.text) if message.type == "error" else None,
        )
        self.page.goto(f"{url}/")
        self.page.evaluate("() => window.onnxdigits.ready.then(() => true)")
        expect(self.page.locator("#grid")).to_have_js_property("naturalWidth", 420, timeout=LOAD_MS)

    def call(self, expression: str, *args: Any) -> Any:
        """Evaluate `expression`, a function of the arguments, in the page and await it."""
        return self.page.evaluate(expression, list(args))

    def stroke(self, canvas: str, points: list[tuple[float, float]], steps: int = 10) -> None:
        """Drag the mouse through `points` (canvas pixels): pointer events, as a pen would."""
        box = self.page.locator(canvas).bounding_box()
        scale = box["width"] / self.page.locator(canvas).evaluate("c => c.width")
        at = [(box["x"] + x * scale, box["y"] + y * scale) for x, y in points]
        mouse = self.page.mouse
        mouse.move(*at[0])
        mouse.down()
        for (xa, ya), (xb, yb) in zip(at, at[1:]):
            for step in range(1, steps + 1):
                mouse.move(xa + (xb - xa) * step / steps, ya + (yb - ya) * step / steps)
        mouse.up()

    def pixels(self, selector: str) -> np.ndarray:
        """An <img>'s pixels as the browser decoded them: uint8 (H, W), the red channel."""
        height, width, data = self.page.locator(selector).evaluate(
            """img => {
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
        return np.frombuffer(base64.b64decode(data), np.uint8).reshape(height, width)

    def drawing(self) -> bytes:
        """The pad as a PNG file's bytes."""
        url = self.page.locator("#pad").evaluate("c => c.toDataURL('image/png')")
        return base64.b64decode(url.split(",", 1)[1])

    def assert_clean(self) -> None:
        assert not self.problems, self.problems
        own = (self.url, f"blob:{self.url}", "data:")
        outside = [url for url in self.requests if not url.startswith(own)]
        assert not outside, f"the page reached beyond its origin: {outside}"


@pytest.fixture
def web(browser: Any, site_url: str) -> Iterator[SitePage]:
    page = SitePage(browser, site_url)
    yield page
    page.page.close()


def test_the_site_holds_the_sets_files_and_onnxruntime_web(
    site: Path, artifacts: onnxdigits.Artifacts
) -> None:
    described = json.loads((site / SITE_JSON).read_text())
    assert set(described["models"]) == set(artifacts.keys)
    for key, model in described["models"].items():
        assert (site / model["file"]).read_bytes() == artifacts.model_bytes(key)
        assert model["sha256"] == artifacts.entry(key).sha256
    assert all((site / "ort" / name).is_file() for name in ORT_FILES)
    # The served page's stylesheet, as it is: one look, one file to change.
    style = onnxdigits.serve.__path__[0] + "/static/style.css"
    assert (site / "style.css").read_bytes() == Path(style).read_bytes()
    np.testing.assert_array_equal(
        np.array(described["grid"]["points"], np.float32), onnxdigits.grid_points(15)
    )


def test_probabilities_and_embeddings_equal_the_sdks(
    web: SitePage, sample: tuple[np.ndarray, np.ndarray], classifier: onnxdigits.Classifier
) -> None:
    images = sample[0][:100]
    flat = (images.astype(np.float32) / np.float32(255)).ravel().tolist()
    probs = np.array(web.call("([x]) => onnxdigits.classify(x)", flat)).reshape(100, 10)
    np.testing.assert_allclose(probs, classifier.predict_proba(images), rtol=0, atol=1e-5)
    for model in onnxdigits.specs.LATENT_MODELS:
        z = np.array(web.call("([m, x]) => onnxdigits.embed(m, x)", model, flat[: 20 * 784]))
        expected = onnxdigits.Encoder(model, device="cpu").embed(images[:20])
        np.testing.assert_allclose(z.reshape(20, 2), expected, rtol=0, atol=1e-5)
    web.assert_clean()


def test_decoded_images_and_the_grid_equal_the_sdks(web: SitePage) -> None:
    z = np.random.default_rng(22).normal(scale=1.5, size=(20, 2)).astype(np.float32)
    for model in onnxdigits.specs.LATENT_MODELS:
        generator = onnxdigits.Generator(model, device="cpu")
        decoded = web.call("([m, z]) => onnxdigits.decode(m, z)", model, z.ravel().tolist())
        np.testing.assert_allclose(
            np.array(decoded).reshape(20, 28, 28), generator.decode(z), rtol=0, atol=1e-5
        )
    # The grid shown is the vae's, as `onnxdigits grid` draws it (a PNG's rounding apart).
    grid = np.asarray(onnxdigits.to_image(onnxdigits.Generator("vae", device="cpu").grid(15)))
    shown = web.pixels("#grid")
    assert np.abs(shown.astype(int) - grid).max() <= 1
    web.assert_clean()


def test_a_drawn_seven_reads_as_seven_as_the_sdk_reads_its_png(
    web: SitePage, classifier: onnxdigits.Classifier
) -> None:
    web.stroke("#pad", SEVEN)
    expect(web.page.locator("#label")).to_have_text("7", timeout=30_000)
    png = web.drawing()
    assert int(classifier.predict(png)[0]) == 7
    # The page's MNIST form of its pad is the SDK's `load_image` of the same PNG.
    mine = np.array(web.call("() => onnxdigits.mnistForm()"), np.uint8).reshape(28, 28)
    sdk = onnxdigits.load_image(png)
    print("MNISTDIFF", np.abs(mine.astype(int) - sdk).mean(), np.abs(mine.astype(int) - sdk).max())
    assert np.abs(mine.astype(int) - sdk).mean() < 4, np.abs(mine.astype(int) - sdk).mean()
    shown = [float(web.page.locator("#bars li").nth(d).get_attribute("data-p")) for d in range(10)]
    np.testing.assert_allclose(shown, classifier.predict_proba(mine)[0], atol=1e-5)
    # Its place on the plane is the vae encoder's embedding of that form.
    plane = web.page.locator("#plane")
    expect(plane).to_have_attribute("data-drawn", _ANY, timeout=30_000)
    np.testing.assert_allclose(
        json.loads(plane.get_attribute("data-drawn")),
        onnxdigits.Encoder("vae", device="cpu").embed(mine)[0],
        atol=1e-5,
    )
    web.assert_clean()
