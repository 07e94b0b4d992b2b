"""The HTTP service on both hosts: every endpoint against the SDK, and every bad request's 4xx.

Answers are compared with the SDK's on the same images in this process. Floats are compared to
1e-6 rather than bit for bit: a host may batch images differently, and onnxruntime promises no
bitwise equality across batch shapes (on this CPU they happen to agree exactly).
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import onnxdigits
import pytest
from PIL import Image

from .conftest import MAX_BODY, MAX_IMAGES, TOKEN, Server, png_pixels

LATENT = ("ae", "vae", "cvae")
ATOL = 1e-6


@pytest.fixture(scope="module")
def encoders(artifacts: onnxdigits.Artifacts) -> dict[str, onnxdigits.Encoder]:
    return {m: onnxdigits.Encoder(m, artifacts=artifacts, device="cpu") for m in LATENT}


@pytest.fixture(scope="module")
def generators(artifacts: onnxdigits.Artifacts) -> dict[str, onnxdigits.Generator]:
    return {m: onnxdigits.Generator(m, artifacts=artifacts, device="cpu") for m in LATENT}


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def files(pngs: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (f"{i}.png", data, "image/png")) for i, data in enumerate(pngs)]


def assert_classified(answer: dict[str, Any], expected: np.ndarray) -> None:
    """A /v1/classify answer equals the SDK's probabilities `expected` (N, 10)."""
    assert set(answer) == {"labels", "probabilities"}
    assert answer["labels"] == expected.argmax(axis=1).tolist()
    np.testing.assert_allclose(answer["probabilities"], expected, rtol=0, atol=ATOL)


def png_of(array: np.ndarray) -> np.ndarray:
    """The pixels the service's PNG of `array` must hold."""
    return np.asarray(onnxdigits.to_image(array))


# --- health, readiness, the page and the docs ----------------------------------------------------


def test_health_and_readiness_need_no_token(server: Server) -> None:
    with server.client(token=None) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "host": server.host}


def test_page_and_its_files_are_served_without_a_token(server: Server) -> None:
    with server.client(token=None) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
            asset = client.get(f"/static/{name}")
            assert asset.status_code == 200 and kind in asset.headers["content-type"]
            assert f"static/{name}" in page.text
        # Offline: the page and its files name no other host.
        for text in (page.text, client.get("/static/app.js").text):
            assert "http://" not in text and "https://" not in text and "//cdn" not in text


def test_openapi_lists_every_endpoint(client: httpx.Client) -> None:
    assert "text/html" in client.get("/docs").headers["content-type"]
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("classify", "embed", "decode", "grid", "sample", "models", "latent"):
        assert f"/v1/{path}" in paths


# --- the endpoints against the SDK -------------------------------------------------------------


def test_classify_multipart_files(
    client: httpx.Client, pngs: list[bytes], classifier: onnxdigits.Classifier, sample: Any
) -> None:
    response = client.post("/v1/classify", files=files(pngs[:7]))
    assert response.status_code == 200, response.text
    expected = classifier.predict_proba(pngs[:7])
    assert_classified(response.json(), expected)
    # The shipped classifier gets real digits right: the answer is the digits', not noise.
    assert (np.array(response.json()["labels"]) == sample[1][:7]).sum() >= 6


def test_classify_one_raw_png_and_a_jpeg(
    client: httpx.Client, pngs: list[bytes], classifier: onnxdigits.Classifier, sample: Any
) -> None:
    response = client.post("/v1/classify", content=pngs[3], headers={"Content-Type": "image/png"})
    assert_classified(response.json(), classifier.predict_proba(pngs[3]))
    jpeg = io.BytesIO()
    Image.fromarray(sample[0][5]).resize((112, 112)).save(jpeg, format="JPEG", quality=95)
    response = client.post(
        "/v1/classify", content=jpeg.getvalue(), headers={"Content-Type": "image/jpeg"}
    )
    assert_classified(response.json(), classifier.predict_proba(jpeg.getvalue()))


@pytest.mark.parametrize("scale", ["uint8", "float"])
def test_classify_json_arrays(
    client: httpx.Client, sample: Any, classifier: onnxdigits.Classifier, scale: str
) -> None:
    images = sample[0][10:16]
    if scale == "float":
        images = images.astype(np.float64) / 255  # floats 0..1, as the SDK takes them
    response = client.post("/v1/classify", json={"images": images.tolist()})
    assert response.status_code == 200, response.text
    assert_classified(response.json(), classifier.predict_proba(images))


@pytest.mark.parametrize("model", LATENT)
def test_embed(
    client: httpx.Client,
    pngs: list[bytes],
    sample: Any,
    encoders: dict[str, onnxdigits.Encoder],
    model: str,
) -> None:
    response = client.post(f"/v1/embed?model={model}", files=files(pngs[20:25]))
    assert response.status_code == 200, response.text
    assert list(response.json()) == ["embeddings"]
    expected = encoders[model].embed(pngs[20:25])
    np.testing.assert_allclose(response.json()["embeddings"], expected, rtol=0, atol=ATOL)
    arrays = client.post(f"/v1/embed?model={model}", json={"images": sample[0][:3].tolist()})
    np.testing.assert_allclose(
        arrays.json()["embeddings"], encoders[model].embed(sample[0][:3]), rtol=0, atol=ATOL
    )


@pytest.mark.parametrize("model", LATENT)
def test_decode_to_arrays_and_to_a_png(
    client: httpx.Client, generators: dict[str, onnxdigits.Generator], model: str
) -> None:
    z = np.array([[0.0, 0.0], [1.5, -0.5], [-2.0, 1.0]], np.float32)
    expected = generators[model].decode(z)
    response = client.post(f"/v1/decode?model={model}", json={"z": z.tolist()})
    assert response.status_code == 200, response.text
    images = np.array(response.json()["images"])
    assert images.shape == (3, 28, 28)
    np.testing.assert_allclose(images, expected, rtol=0, atol=ATOL)
    tiled = client.post(
        f"/v1/decode?model={model}", json={"z": z.tolist()}, headers={"Accept": "image/png"}
    )
    assert tiled.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(png_pixels(tiled.content), png_of(onnxdigits.tile(expected)))


def test_grid(client: httpx.Client, generators: dict[str, onnxdigits.Generator]) -> None:
    response = client.get("/v1/grid", params={"model": "cvae", "n": 5, "lo": 0.1, "hi": 0.8})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    expected = png_of(generators["cvae"].grid(5, 0.1, 0.8))
    np.testing.assert_array_equal(png_pixels(response.content), expected)
    default = png_pixels(client.get("/v1/grid").content)  # vae, n=15, 0.05..0.95
    np.testing.assert_array_equal(default, png_of(generators["vae"].grid()))


def test_sample(client: httpx.Client, generators: dict[str, onnxdigits.Generator]) -> None:
    response = client.get("/v1/sample", params={"model": "ae", "count": 6, "seed": 3})
    assert response.status_code == 200, response.text
    expected = png_of(onnxdigits.tile(generators["ae"].sample(6, seed=3)))
    np.testing.assert_array_equal(png_pixels(response.content), expected)
    # Without a seed each draw is fresh.
    fresh = [png_pixels(client.get("/v1/sample?count=4").content) for _ in range(2)]
    assert fresh[0].shape == (56, 56) and not np.array_equal(*fresh)


def test_sample_of_a_digit(
    client: httpx.Client,
    generators: dict[str, onnxdigits.Generator],
    classifier: onnxdigits.Classifier,
) -> None:
    params = {"model": "cvae", "count": 16, "seed": 5, "digit": 7}
    response = client.get("/v1/sample", params=params)
    assert response.status_code == 200, response.text
    pixels = png_pixels(response.content)
    expected = png_of(onnxdigits.tile(generators["cvae"].sample(16, seed=5, digit=7)))
    np.testing.assert_array_equal(pixels, expected)
    tiles = pixels.reshape(4, 28, 4, 28).transpose(0, 2, 1, 3).reshape(16, 28, 28)
    assert np.mean(classifier.predict(tiles) == 7) >= 0.75
    for digit in (10, -1, "seven"):
        refused = client.get("/v1/sample", params={"digit": digit})
        assert refused.status_code == 422 and "digit" in refused.json()["error"]


def test_a_digit_from_a_set_without_regions_is_not_found(artifacts_copy) -> None:
    from onnxdigits.serve.app import create_app
    from onnxdigits.serve.backend import LocalBackend, Models

    path = artifacts_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    for entry in manifest["models"].values():
        entry.pop("latent_classes", None)
    path.write_text(json.dumps(manifest))
    app = create_app(LocalBackend(Models(artifacts_copy, "cpu", classifier=False)))

    async def ask() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://local") as local:
            return (
                await local.get("/v1/sample", params={"model": "ae", "digit": 3}),
                await local.get("/v1/sample", params={"model": "ae", "count": 4}),
            )

    missing, prior = asyncio.run(ask())
    assert missing.status_code == 404
    assert "no class regions for the ae" in missing.json()["error"]
    assert "onnxdigits fit-classes" in missing.json()["error"]
    assert str(artifacts_copy) not in missing.text  # the server's paths stay its own
    assert prior.status_code == 200  # the prior still draws


def test_latent_points_of_the_sample(
    client: httpx.Client, sample: Any, encoders: dict[str, onnxdigits.Encoder]
) -> None:
    answer = client.get("/v1/latent?model=cvae").json()
    assert answer["model"] == "cvae"
    assert answer["labels"] == sample[1].tolist()
    np.testing.assert_allclose(answer["z"], encoders["cvae"].embed(sample[0]), rtol=0, atol=ATOL)


def test_models_come_from_the_manifest_with_their_devices(
    client: httpx.Client, server: Server, artifacts: onnxdigits.Artifacts
) -> None:
    answer = client.get("/v1/models").json()
    manifest = artifacts.manifest
    assert answer["host"] == server.host
    assert answer["created"] == manifest.created
    assert answer["schema_version"] == manifest.schema_version
    assert set(answer["models"]) == set(manifest.models)
    for key, entry in manifest.models.items():
        described = answer["models"][key]
        assert described["file"] == entry.file
        assert described["sha256"] == entry.sha256
        assert described["bytes"] == entry.bytes
        assert [t["name"] for t in described["inputs"]] == entry.spec.input_names
        assert [t["name"] for t in described["outputs"]] == entry.spec.output_names
        assert described["parity"] == (entry.parity.to_json() if entry.parity else None)
        assert described["metrics"] == entry.metrics
        assert described["device"] == "cpu"
        assert described["providers"] == ["CPUExecutionProvider"]


# --- bad requests: each gets its 4xx, and the next good request is served ----------------------


def _huge_png() -> bytes:
    """A real, valid 20000x20000 PNG: one bit a pixel keeps it small to make and to send."""
    out = io.BytesIO()
    Image.new("1", (20000, 20000)).save(out, format="PNG")
    return out.getvalue()


def _chunks(total: int) -> Iterator[bytes]:
    """A body of `total` bytes sent in chunks, without a Content-Length."""
    for _ in range(total // 65536 + 1):
        yield b"\0" * 65536


Request = Callable[[httpx.Client, list[bytes]], httpx.Response]
JSON = {"Content-Type": "application/json"}
RAW_PNG = {"Content-Type": "image/png"}


def _json(path: str, text: str) -> Request:
    return lambda c, p: c.post(path, content=text.encode(), headers=JSON)


BAD_REQUESTS: dict[str, tuple[Request, int, str]] = {
    "wrong content type": (
        lambda c, p: c.post("/v1/classify", content=b"7", headers={"Content-Type": "text/plain"}),
        415,
        "cannot read images from a text/plain",
    ),
    "no content type": (
        lambda c, p: c.post("/v1/classify", content=p[0], headers={"Content-Type": ""}),
        415,
        "cannot read images",
    ),
    "decode given a PNG": (
        lambda c, p: c.post("/v1/decode", content=p[0], headers=RAW_PNG),
        415,
        "application/json",
    ),
    "malformed JSON": (_json("/v1/classify", '{"images": [[1, 2'), 400, "not valid JSON"),
    "JSON without images": (_json("/v1/classify", '{"pictures": []}'), 422, '{"images"'),
    "JSON strings, not pixels": (
        _json("/v1/classify", '{"images": ["/etc/passwd"]}'),
        422,
        "nested lists of numbers",
    ),
    "ragged JSON": (_json("/v1/classify", '{"images": [[1, 2], [3]]}'), 422, "rectangular"),
    "JSON of the wrong shape": (_json("/v1/classify", '{"images": [[0, 1]]}'), 422, "shape"),
    "uint8 out of range": (
        _json("/v1/classify", json.dumps({"images": [[[300] * 28] * 28]})),
        422,
        "0..255",
    ),
    "truncated PNG": (
        lambda c, p: c.post("/v1/classify", content=p[0][:60], headers=RAW_PNG),
        422,
        "not a readable image",
    ),
    "empty raw body": (
        lambda c, p: c.post("/v1/classify", content=b"", headers=RAW_PNG),
        422,
        "not a readable image",
    ),
    "NaN pixels": (
        _json("/v1/classify", '{"images": [' + ",".join(["[" + "NaN," * 27 + "0]"] * 28) + "]}"),
        422,
        "NaN",
    ),
    "NaN latent point": (_json("/v1/decode", '{"z": [[NaN, 0]]}'), 422, "NaN"),
    "latent points of the wrong width": (_json("/v1/decode", '{"z": [[1, 2, 3]]}'), 422, "(N, 2)"),
    "decode without z": (_json("/v1/decode", '{"points": []}'), 422, '{"z"'),
    "20000x20000 PNG": (
        lambda c, p: c.post("/v1/classify", content=_huge_png(), headers=RAW_PNG),
        413,
        "too large to decode safely",
    ),
    "too many files": (
        lambda c, p: c.post("/v1/classify", files=files([p[0]] * (MAX_IMAGES + 1))),
        413,
        f"more than {MAX_IMAGES} files",
    ),
    "too many JSON images": (
        lambda c, p: c.post(
            "/v1/embed", json={"images": np.zeros((MAX_IMAGES + 1, 28, 28), int).tolist()}
        ),
        413,
        f"limit of {MAX_IMAGES}",
    ),
    "too many latent points": (
        lambda c, p: c.post("/v1/decode", json={"z": [[0, 0]] * (MAX_IMAGES + 1)}),
        413,
        f"limit of {MAX_IMAGES}",
    ),
    "too large a grid": (lambda c, p: c.get("/v1/grid?n=17"), 413, "289 grid cells"),
    "too many samples": (
        lambda c, p: c.get(f"/v1/sample?count={MAX_IMAGES + 1}"),
        413,
        f"limit of {MAX_IMAGES}",
    ),
    "too large a body": (
        lambda c, p: c.post("/v1/classify", content=b"\0" * (MAX_BODY + 1), headers=RAW_PNG),
        413,
        f"limit of {MAX_BODY} bytes",
    ),
    "too large a chunked body": (
        lambda c, p: c.post("/v1/classify", content=_chunks(MAX_BODY + 1), headers=RAW_PNG),
        413,
        f"limit of {MAX_BODY} bytes",
    ),
    "unknown model to embed": (
        lambda c, p: c.post("/v1/embed?model=gan", content=p[0], headers=RAW_PNG),
        422,
        "unknown model 'gan'; choose one of ae, vae, cvae",
    ),
    "unknown model for the grid": (lambda c, p: c.get("/v1/grid?model=pca"), 422, "unknown model"),
    "quantiles out of order": (
        lambda c, p: c.get("/v1/grid?lo=0.9&hi=0.1"),
        422,
        "0 < lo < hi < 1",
    ),
    "a grid of no cells": (lambda c, p: c.get("/v1/grid?n=0"), 422, "n must be a positive"),
    "a count that is no number": (lambda c, p: c.get("/v1/sample?count=many"), 422, "count"),
    "a negative seed": (lambda c, p: c.get("/v1/sample?seed=-1"), 422, "seed"),
    "text where files belong": (
        lambda c, p: c.post("/v1/classify", data={"images": "seven"}, files=[("x", b"")]),
        422,
        "must hold files",
    ),
    "files in another field": (
        lambda c, p: c.post("/v1/classify", files=[("digit", ("0.png", p[0], "image/png"))]),
        422,
        'multipart field "images"',
    ),
    "unknown path": (lambda c, p: c.get("/v1/nothing"), 404, "Not Found"),
    "wrong method": (lambda c, p: c.get("/v1/classify"), 405, "Method Not Allowed"),
    "missing token": (
        lambda c, p: c.post("/v1/classify", content=p[0], headers={**RAW_PNG, "Authorization": ""}),
        401,
        "Authorization: Bearer",
    ),
    "wrong token": (
        lambda c, p: c.post(
            "/v1/classify", content=p[0], headers={**RAW_PNG, "Authorization": "Bearer nope"}
        ),
        401,
        "the token is wrong",
    ),
    "token in another scheme": (
        lambda c, p: c.get("/v1/models", headers={"Authorization": f"Basic {TOKEN}"}),
        401,
        "Authorization: Bearer",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_gets_its_4xx_and_the_next_is_served(
    client: httpx.Client, pngs: list[bytes], classifier: onnxdigits.Classifier, case: str
) -> None:
    send, status, message = BAD_REQUESTS[case]
    response = send(client, pngs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["error"]
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    good = client.post("/v1/classify", files=files(pngs[40:43]))
    assert good.status_code == 200, good.text
    assert_classified(good.json(), classifier.predict_proba(pngs[40:43]))


def test_a_body_over_the_limit_is_refused_unread(server: Server) -> None:
    """A declared 10 GB body, of which a few bytes come: 413 at once, not a wait for the rest."""
    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=20) as sock:
        sock.sendall(
            b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
            b"Content-Length: 10000000000\r\n\r\n\x89PNG"
        )
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 413"), head


# --- load: 32 clients x 50 requests ------------------------------------------------------------


def test_32_clients_50_requests_each_no_errors_and_the_sdks_answers(
    server: Server, pngs: list[bytes], sample: Any, classifier: onnxdigits.Classifier
) -> None:
    clients, each = 32, 50
    expected = classifier.predict_proba(pngs)
    # The JSON requests send the sample's arrays; the PNGs were made from the same digits.
    from_arrays = classifier.predict_proba(sample[0][: len(pngs)])

    async def one_client(index: int, http: httpx.AsyncClient) -> list[tuple[list[int], Any]]:
        answers = []
        for step in range(each):
            # Varied requests: one raw PNG, two PNG files, or three images as JSON arrays.
            first = (index * each + step) % (len(pngs) - 3)
            count = 1 + step % 3
            if count == 1:
                response = await http.post("/v1/classify", content=pngs[first], headers=RAW_PNG)
            elif count == 2:
                response = await http.post("/v1/classify", files=files(pngs[first : first + 2]))
            else:
                arrays = sample[0][first : first + 3].tolist()
                response = await http.post("/v1/classify", json={"images": arrays})
            answers.append(([first, count, response.status_code], response.json()))
        return answers

    async def run() -> list[list[tuple[list[int], Any]]]:
        async with httpx.AsyncClient(
            base_url=server.url,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=120,
            limits=httpx.Limits(max_connections=clients),
        ) as http:
            return await asyncio.gather(*(one_client(i, http) for i in range(clients)))

    results = [answer for per_client in asyncio.run(run()) for answer in per_client]
    assert len(results) == clients * each
    errors = [(request, answer) for request, answer in results if request[2] != 200]
    assert not errors, f"{len(errors)} errors, first: {errors[0]}"
    for (first, count, _), answer in results:
        reference = from_arrays if count == 3 else expected
        assert_classified(answer, reference[first : first + count])
