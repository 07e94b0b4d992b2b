"""The static site of `onnxdigits export-web` in a real browser, with no onnxdigits server.

The site is written once from the shipped set (onnxruntime-web from npm), served as plain files
by Python's http.server on loopback, and opened in Debian's headless Chromium. What its
onnxruntime-web sessions answer is compared with the SDK's onnxruntime sessions on the same
inputs; what it requests is recorded, and nothing may leave its origin.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import json
import math
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxdigits
import pytest
from click.testing import CliRunner
from onnxdigits.cli import main
from onnxdigits.serve.web import ORT_FILES, ORT_VERSION, SITE_JSON

from tests.conftest import flip_byte

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


@contextlib.contextmanager
def static_server(folder: Path) -> Iterator[str]:
    """`folder` served from loopback by a plain static file server: its URL."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def site_url(site: Path) -> Iterator[str]:
    with static_server(site) as url:
        yield url


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
        """The pad as a PNG file's bytes."""
        url = self.page.locator("#pad").evaluate("c => c.toDataURL('image/png')")
        return base64.b64decode(url.split(",", 1)[1])

    def poll(self, value: Callable[[], Any], timeout_s: float = 30) -> Any:
        """The first truthy answer of `value`, asked every 100 ms; None after `timeout_s`."""
        for _ in range(int(timeout_s * 10)):
            answer = value()
            if answer:
                return answer
            self.page.wait_for_timeout(100)
        return None

    def shows(self, selector: str, expected: np.ndarray) -> bool:
        """Whether an <img> shows `expected` (uint8), within a grey level."""
        shown = self.pixels(selector)
        return shown is not None and bool(np.abs(shown.astype(int) - expected).max() <= 1)

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
    assert described["onnxruntime_web"] == ORT_VERSION
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


def test_decoded_images_equal_the_sdks(web: SitePage) -> None:
    z = np.random.default_rng(22).normal(scale=1.5, size=(20, 2)).astype(np.float32)
    for model in onnxdigits.specs.LATENT_MODELS:
        generator = onnxdigits.Generator(model, device="cpu")
        decoded = web.call("([m, z]) => onnxdigits.decode(m, z)", model, z.ravel().tolist())
        np.testing.assert_allclose(
            np.array(decoded).reshape(20, 28, 28), generator.decode(z), rtol=0, atol=1e-5
        )
    web.assert_clean()


def test_the_plane_and_the_grid_follow_the_model_and_clicks_decode(
    web: SitePage, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    for model in ("vae", "cvae"):
        if model != "vae":
            web.page.select_option("#model", model)
        generator = onnxdigits.Generator(model, device="cpu")
        grid = np.asarray(onnxdigits.to_image(generator.grid(15)))
        assert web.poll(functools.partial(web.shows, "#grid", grid), timeout_s=LOAD_MS / 1000)
        # The plane spans the SDK's embeddings of the shipped sample, with a 6% margin.
        z = onnxdigits.Encoder(model, device="cpu").embed(sample[0])
        bounds = json.loads(web.page.locator("#plane").get_attribute("data-bounds"))
        span = z[:, 0].max() - z[:, 0].min()
        assert bounds["x0"] == pytest.approx(z[:, 0].min() - 0.06 * span, abs=1e-5)
        # A click decodes the point under it (within the canvas's border of one pixel).
        web.page.locator("#plane").click(position={"x": 150, "y": 250})
        under = bounds["x0"] + 150 / 400 * (bounds["x1"] - bounds["x0"])
        point = web.poll(functools.partial(picked, web, under, (bounds["x1"] - bounds["x0"]) / 200))
        assert point, web.page.locator("#decoded").get_attribute("data-z")
        expected = np.asarray(onnxdigits.to_image(generator.decode(np.array([point]))[0]))
        assert web.poll(functools.partial(web.shows, "#decoded", expected))
    web.assert_clean()


def picked(web: SitePage, x: float, atol: float) -> list[float] | None:
    """The point decoded last, if its z[0] is `x` within `atol`."""
    raw = web.page.locator("#decoded").get_attribute("data-z")
    point = json.loads(raw) if raw else None
    return point if point and abs(point[0] - x) <= atol else None


# A 1 (one stroke down, a little slanted) and a 0 (an ellipse), beside the 7.
ONE = [(150, 40), (130, 245)]
ZERO = [
    (140 + 60 * math.sin(2 * math.pi * t / 24), 140 - 95 * math.cos(2 * math.pi * t / 24))
    for t in range(25)
]


# The 7 drawn small: the SDK enlarges it and thins its strokes, relatively thick, to MNIST's.
SMALL_SEVEN = [(100 + 0.35 * x, 100 + 0.35 * y) for x, y in SEVEN]


@pytest.mark.parametrize(
    ("digit", "strokes"),
    [(7, SEVEN), (1, ONE), (0, ZERO), (7, SMALL_SEVEN)],
    ids=["7", "1", "0", "small-7"],
)
def test_a_drawn_digit_reads_as_the_sdk_reads_its_png(
    web: SitePage, classifier: onnxdigits.Classifier, digit: int, strokes: list[tuple[float, float]]
) -> None:
    web.stroke("#pad", strokes)
    expect(web.page.locator("#label")).to_have_text(str(digit), timeout=30_000)
    png = web.drawing()
    assert int(classifier.predict(png)[0]) == digit
    # The page's MNIST form of its pad is the SDK's `load_image` of the same PNG (a grey level
    # apart at most, where float rounding tips a pixel).
    mine = np.array(web.call("() => onnxdigits.mnistForm()"), np.uint8).reshape(28, 28)
    sdk = onnxdigits.load_image(png)
    difference = np.abs(mine.astype(int) - sdk)
    assert difference.max() <= 1, (difference.mean(), difference.max())
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


# A region for every digit; the 7's is a mixture whose first component has no weight, so every
# sample comes from the second, a narrow Gaussian around a known mean.
SEVEN_MEAN = [0.5, -0.25]
REGIONS = {
    "method": "test",
    "digits": [
        {
            "digit": d,
            "components": [{"weight": 1.0, "mean": [0.1 * d, 0.0], "cov": [[0.01, 0], [0, 0.01]]}],
        }
        for d in range(10)
    ],
}
REGIONS["digits"][7]["components"] = [
    # weights are positive and sum to 1 (the manifest reader checks it): the first is never drawn
    {"weight": 1e-9, "mean": [5.0, 5.0], "cov": [[1.0, 0.0], [0.0, 1.0]]},
    {"weight": 1.0 - 1e-9, "mean": SEVEN_MEAN, "cov": [[1e-6, 0.0], [0.0, 4e-6]]},
]


def with_regions(root: Path, model: str, regions: Any) -> None:
    """Give `model`'s generator entry in the set at `root` the digits' regions (None: none)."""
    manifest = root / "manifest.json"
    raw = json.loads(manifest.read_text())
    entry = raw["models"][f"{model}.generator"]
    if regions is None:
        entry.pop("latent_classes", None)
    else:
        entry["latent_classes"] = regions
    manifest.write_text(json.dumps(raw))


def test_the_digit_buttons_show_for_the_shipped_sets_regions(web: SitePage) -> None:
    assert "latent_classes" in onnxdigits.Artifacts().json["models"]["vae.generator"]
    expect(web.page.locator("#digits")).to_be_visible()
    web.assert_clean()


def test_digit_buttons_draw_samples_from_the_digits_region(
    browser: Any, site: Path, artifacts_copy: Path, tmp_path: Path
) -> None:
    with_regions(artifacts_copy, "vae", REGIONS)
    with_regions(artifacts_copy, "ae", None)
    out = tmp_path / "site"
    result = export_web(
        "--out", str(out), "--artifacts", str(artifacts_copy), "--ort", str(site / "ort")
    )
    assert result.exit_code == 0, result.output
    with static_server(out) as url:
        web = SitePage(browser, url)
        expect(web.page.locator("#digits")).to_be_visible()
        web.page.click("#digit-buttons button[data-digit='7']")
        samples = web.page.locator("#samples")
        expect(samples).to_have_attribute("data-z", _ANY, timeout=30_000)
        z = np.array(json.loads(samples.get_attribute("data-z")), np.float32)
        assert z.shape == (8, 2) and len(np.unique(z, axis=0)) == 8
        np.testing.assert_allclose(z, np.broadcast_to(SEVEN_MEAN, z.shape), atol=0.01)
        # The strip shows those points decoded, as the SDK decodes them.
        decoded = onnxdigits.Generator("vae", artifacts=artifacts_copy, device="cpu").decode(z)
        strip = np.asarray(onnxdigits.to_image(onnxdigits.tile(decoded, 8)))
        assert web.poll(functools.partial(web.shows, "#samples", strip))
        # The ae's entry has no regions: its row is hidden.
        web.page.select_option("#model", "ae")
        expect(web.page.locator("#digits")).to_be_hidden()
        web.assert_clean()
        web.page.close()


def test_samples_follow_the_mixture_weights_and_covariances(web: SitePage) -> None:
    covs = [[[4.0, 1.2], [1.2, 1.0]], [[0.25, -0.1], [-0.1, 0.5]]]
    means = [[-8.0, 0.0], [4.0, 1.0]]
    regions = {
        "digits": [
            {
                "digit": 3,
                "components": [
                    {"weight": 1.0, "mean": means[0], "cov": covs[0]},
                    {"weight": 3.0, "mean": means[1], "cov": covs[1]},
                ],
            }
        ]
    }
    z = np.array(web.call("([r]) => onnxdigits.sampleDigit(r, 3, 20000, 5)", regions))
    again = np.array(web.call("([r]) => onnxdigits.sampleDigit(r, 3, 20000, 5)", regions))
    np.testing.assert_array_equal(z, again)  # seeded
    first = z[:, 0] < 0  # the components lie far apart along z[0]
    assert abs(first.mean() - 0.25) < 0.015
    for part, mean, cov in ((z[first], means[0], covs[0]), (z[~first], means[1], covs[1])):
        np.testing.assert_allclose(part.mean(axis=0), mean, atol=0.06)
        np.testing.assert_allclose(np.cov(part.T), cov, atol=0.1 * np.abs(cov).max())
    web.assert_clean()


def test_with_ort_from_a_folder_the_site_is_the_same(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    result = export_web("--out", str(out), "--ort", str(site / "ort"))
    assert result.exit_code == 0, result.output
    assert out.name in result.stdout and "http.server" in result.stderr
    names = sorted(str(p.relative_to(site)) for p in site.rglob("*"))
    assert names == sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert all(
        (site / n).read_bytes() == (out / n).read_bytes() for n in names if (site / n).is_file()
    )
    # Written again over itself: replaced whole, nothing left beside it.
    (out / "stale.txt").write_text("old")
    assert export_web("--out", str(out), "--ort", str(site / "ort")).exit_code == 0
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]


def test_a_tampered_onnx_file_fails_the_export(
    site: Path, artifacts_copy: Path, tmp_path: Path
) -> None:
    flip_byte(artifacts_copy / "cvae.generator.onnx")
    out = tmp_path / "site"
    result = export_web(
        "--out", str(out), "--artifacts", str(artifacts_copy), "--ort", str(site / "ort")
    )
    assert result.exit_code == 1
    assert "cvae.generator.onnx fails its checksum" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # no site, nothing half-written


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (None, ["--ort", "{tmp}/nowhere"], "--ort {tmp}/nowhere does not exist"),
        ("ort", ["--ort", "{tmp}/ort"], "lacks onnxruntime-web's ort.wasm.min.js"),
        (None, [], "npm is not on PATH"),
        ("notes", [], "holds files and no site.json"),
        ("other-ort", ["--ort", "{tmp}/other-ort"], "is not onnxruntime-web 1.31.1's"),
    ],
    ids=["ort-missing", "ort-empty", "no-npm", "out-not-a-site", "ort-of-another-release"],
)
def test_what_export_web_refuses(
    make: str | None,
    args: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm
    if make:
        (tmp_path / make).mkdir()
        (tmp_path / make / "notes.txt").write_text("mine")
    if make == "other-ort":  # the files' names, another release's bytes
        for name in ORT_FILES:
            (tmp_path / make / name).write_text("// another release")
    out = tmp_path / ("notes" if make == "notes" else "site")
    result = export_web("--out", str(out), *(a.format(tmp=tmp_path) for a in args))
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ") and message.format(tmp=tmp_path) in result.stderr
    assert not (tmp_path / "site").exists()
    if make == "notes":
        assert (out / "notes.txt").read_text() == "mine"
