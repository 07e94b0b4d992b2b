"""The HTTP service: one FastAPI app over the SDK, whichever host runs it.

`create_app` builds the app over a backend, the thing that runs the models: `LocalBackend` in
this process under uvicorn, or Ray Serve's model deployments (`deployments.py`). The app parses
and checks what clients send, normalises images with the SDK (`to_batch`), and answers every
mistake with a JSON `{"error": "..."}` and a 4xx: 400 unparsable, 401 no or a wrong token, 404
and 405 as usual, 413 over a limit, 415 an unknown content type, 422 whatever the SDK refuses,
with its message. (503 is the Ray host's answer when its replicas cannot.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib import resources
from typing import Any, Protocol

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from onnxdigits import __version__, images, tile, to_batch, to_image
from onnxdigits.errors import ImageTooLargeError, InputError, NoClassRegionsError, OnnxDigitsError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .backend import check_model
from .errors import AbsentModelError
from .limits import MAX_IMAGE_PIXELS, MAX_PIXELS, Limits

# Without a token on loopback, only these Host names are answered: a page on another site that
# rebinds its own name to 127.0.0.1 sends its own name, and gets 400.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
PNG = "image/png"
# The page loads only its own files; decoded digits and grids are shown from blob: URLs.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


class Backend(Protocol):
    """Where the models run. Arrays come in the models' input form; SDK errors propagate."""

    host: str

    async def classify(self, batch: np.ndarray) -> np.ndarray: ...
    async def embed(self, model: str, batch: np.ndarray) -> np.ndarray: ...
    async def decode(self, model: str, z: np.ndarray) -> np.ndarray: ...
    async def grid(self, model: str, n: int, lo: float, hi: float) -> np.ndarray: ...
    async def sample(
        self, model: str, count: int, seed: int | None, digit: int | None = None
    ) -> np.ndarray: ...
    async def sample_latent(self, model: str) -> tuple[np.ndarray, np.ndarray]: ...
    async def describe(self) -> dict[str, Any]: ...
    async def ready(self) -> str | None:
        """None when every model answers; else what is not ready."""
        ...


class BodyLimit:
    """ASGI middleware: a body over `limit` bytes gets 413 without being read whole.

    A declared Content-Length over the limit is answered before a byte of the body is read; a
    body without one (chunked) is counted as it arrives and refused once it passes the limit.
    (FastAPI's own `max_body_size` answers the first case in plain text; this API answers JSON.)
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body exceeds the limit of {self.limit} bytes; send less"
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            response = _error(413, message, {"Connection": "close"})
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, message)  # answered by the app's handler
            return event

        await self.app(scope, counted, send)


class HostCheck:
    """ASGI middleware: a request whose Host header names none of `hosts` gets 400.

    Starlette's TrustedHostMiddleware answers in plain text and reads "[::1]:8000" as "["; this
    one answers JSON and takes bracketed IPv6 literals.
    """

    def __init__(self, app: ASGIApp, hosts: Sequence[str]) -> None:
        self.app = app
        self.hosts = {host.lower() for host in hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("host", "")
        if _host_name(given) not in self.hosts:
            shown = given[:100] or "none"
            response = _error(
                400,
                f"the Host header ({shown!r}) is not a name of this service; without a token it "
                f"answers only {', '.join(sorted(self.hosts))}, so that another site's page cannot "
                "reach it by rebinding its name (serve with --token to accept any)",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _host_name(host: str) -> str:
    """The name in a Host header, without its port: "[::1]:8000" -> "[::1]"."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _token_check(token: str) -> Callable[[Request], Awaitable[None]]:
    expected = token.encode()

    async def check(request: Request) -> None:
        given = request.headers.get("authorization")
        scheme, _, value = (given or "").partition(" ")
        if given is None or not given.strip():
            problem = "this service needs a token: send the header Authorization: Bearer <token>"
        elif scheme.lower() != "bearer":
            problem = (
                f"the Authorization header uses the scheme {scheme[:20]!r}; send "
                "Authorization: Bearer <token>"
            )
        elif not hmac.compare_digest(value.strip().encode(), expected):
            problem = "the token is wrong: send the token the service was started with"
        else:
            return
        raise HTTPException(401, problem, headers={"WWW-Authenticate": "Bearer"})

    return check


def create_app(
    backend: Backend,
    *,
    token: str | None = None,
    limits: Limits = Limits(),  # noqa: B008  frozen, so one shared default is safe
    hosts: Sequence[str] | None = None,
) -> FastAPI:
    """Build the service over `backend`.

    Args:
        backend: runs the models (`backend.LocalBackend`, or Ray Serve's deployments).
        token: when given, every /v1 request needs `Authorization: Bearer <token>` (else 401).
        limits: the largest body and the most images a request may send or ask for.
        hosts: the Host names answered (with any port), others get 400; None for any. The CLI
            gives `LOOPBACK_HOSTS` when it serves loopback without a token.

    Returns:
        The FastAPI app: the /v1 API, /healthz, /readyz, the web page at / and OpenAPI at /docs.
    """
    app = FastAPI(
        title="onnxdigits",
        version=__version__,
        summary="Keras MNIST models exported to ONNX: labels, embeddings, digits from latents.",
        docs_url=None,  # served below from the package's files rather than a CDN
        redoc_url=None,
    )
    app.add_middleware(BodyLimit, limit=limits.max_body)
    if hosts is not None:
        app.add_middleware(HostCheck, hosts=hosts)
    _add_error_handlers(app)
    needs = [Depends(_token_check(token))] if token else []
    v1 = APIRouter(prefix="/v1", dependencies=needs)

    async def images_of(request: Request) -> np.ndarray:
        """The request's images in the models' input form (see `read_images`)."""
        return await read_images(request, limits.max_images, limits.max_pixels)

    def refuse_large_count(what: str, count: int) -> None:
        if count > limits.max_images:
            raise HTTPException(
                413,
                f"{count} {what} exceed the limit of {limits.max_images} per request; "
                "split the request",
            )

    @v1.post(
        "/classify",
        summary="Label images",
        description="Images as multipart files (field `images`, repeatable), one raw PNG/JPEG "
        'body (`Content-Type: image/*`), or JSON `{"images": [28x28 nested lists, ...]}`, '
        "uint8 0..255 or floats 0..1. Returns the labels and the ten probabilities of each.",
    )
    async def classify(request: Request) -> dict[str, Any]:
        probs = await backend.classify(await images_of(request))
        return {"labels": probs.argmax(axis=1).tolist(), "probabilities": probs.tolist()}

    @v1.post(
        "/embed",
        summary="Embed images in a model's 2-D latent space",
        description="The same inputs as /v1/classify. Returns z (ae) or z_mean (vae, cvae).",
    )
    async def embed(request: Request, model: str = "vae") -> dict[str, Any]:
        check_model(model)
        return {"embeddings": (await backend.embed(model, await images_of(request))).tolist()}

    @v1.post(
        "/decode",
        summary="Decode latent points to digits",
        description='JSON `{"z": [[z0, z1], ...]}`. Returns `{"images": [28x28 nested lists]}` '
        "in [0, 1], or one tiled PNG when the request says `Accept: image/png`.",
        responses={200: {"content": {PNG: {}}}},
    )
    async def decode(request: Request, model: str = "vae") -> Any:
        check_model(model)
        raw = await _json_body(request)
        if not isinstance(raw, dict) or "z" not in raw:
            raise InputError('expected a JSON object {"z": [[z0, z1], ...]}')
        z = _numbers(raw["z"], "z")
        if z.ndim:
            refuse_large_count("latent points", len(z))
        images = await backend.decode(model, z)
        if PNG in request.headers.get("accept", ""):
            return Response(await run_in_threadpool(_png, tile(images)), media_type=PNG)
        return {"images": images.tolist()}

    @v1.get(
        "/grid",
        summary="A model's latent manifold as a PNG",
        description="The n x n grid of decoded normal quantiles, as `onnxdigits grid` draws it.",
        response_class=Response,
        responses={200: {"content": {PNG: {}}}},
    )
    async def grid(model: str = "vae", n: int = 15, lo: float = 0.05, hi: float = 0.95) -> Response:
        check_model(model)
        if n > 0:
            refuse_large_count("grid cells", n * n)
        picture = await backend.grid(model, n, lo, hi)
        return Response(await run_in_threadpool(_png, picture), media_type=PNG)

    @v1.get(
        "/sample",
        summary="Digits from a model's prior, or of one digit, as a PNG",
        description="`count` digits decoded from points drawn from N(0, I), tiled; with "
        "`digit`, from that digit's region of the latent space (404 if the set has no class "
        "regions); `seed` makes the draw repeatable.",
        response_class=Response,
        responses={200: {"content": {PNG: {}}}},
    )
    async def sample(
        model: str = "vae",
        count: int = Query(64, ge=1),
        seed: int | None = Query(None, ge=0, le=2**63 - 1),
        digit: int | None = Query(None, ge=0, le=9),
    ) -> Response:
        check_model(model)
        refuse_large_count("samples", count)
        try:
            digits = await backend.sample(model, count, seed, digit)
        except NoClassRegionsError:  # the set lacks them: nothing to find here
            raise HTTPException(
                404,
                f"the set this service runs has no class regions for the {model}, so it draws "
                "no chosen digit; add them to the set with `onnxdigits fit-classes --data "
                "mnist.npz --artifacts DIR` and restart, or leave digit out",
            ) from None
        return Response(await run_in_threadpool(_png, tile(digits)), media_type=PNG)

    @v1.get(
        "/latent",
        summary="The shipped sample's embeddings and labels",
        description="The points the web page plots on a model's latent plane.",
    )
    async def latent(model: str = "vae") -> dict[str, Any]:
        check_model(model)
        z, labels = await backend.sample_latent(model)
        return {"model": model, "z": z.tolist(), "labels": labels.tolist()}

    @v1.get(
        "/models",
        summary="The set in use and where each model runs",
        description="Each submodel's file, sha256, size, tensors, export parity and test metrics "
        "from the manifest, and the device and providers its session really got.",
    )
    async def models() -> dict[str, Any]:
        return await backend.describe()

    app.include_router(v1)

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="The models are loaded and answer")
    async def readyz() -> JSONResponse:
        problem = await backend.ready()
        if problem:
            return _error(503, problem)
        return JSONResponse({"status": "ready", "host": backend.host})

    page = (resources.files(__package__) / "static" / "index.html").read_bytes()

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    app.mount("/static", StaticFiles(packages=[(__package__, "static")]), name="static")
    _add_docs(app)
    return app


def _add_docs(app: FastAPI) -> None:
    """/docs: Swagger UI from fastapi-offline's copy of its files, served here under
    /docs-static, with a CSP that lets the page load nothing from elsewhere."""
    assert app.openapi_url is not None
    html = get_swagger_ui_html(
        openapi_url=app.openapi_url,
        title=f"{app.title} - Swagger UI",
        swagger_js_url="/docs-static/swagger-ui-bundle.js",
        swagger_css_url="/docs-static/swagger-ui.css",
        swagger_favicon_url="/docs-static/favicon.png",
    ).body
    # The page starts Swagger UI from one inline script: allowed by its hash, and nothing else.
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in re.findall(rb"<script>(.*?)</script>", bytes(html), re.S)
    )
    headers = {
        "Content-Security-Policy": f"default-src 'self'; script-src 'self' {hashes}; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff",
    }

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(bytes(html), headers=headers)

    app.mount(
        "/docs-static", StaticFiles(packages=[("fastapi_offline", "static")]), name="docs-static"
    )


async def read_images(
    request: Request, max_images: int, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Read the images a request sends and bring them to the models' input form.

    Args:
        request: multipart files in the field `images`; or one raw image body with a
            Content-Type of image/*; or JSON `{"images": [...]}` of nested lists of numbers.
        max_images: the most images it may hold.
        max_pixels: the most pixels its image files may declare, all together.

    Returns:
        float32 (N, 28, 28, 1) in [0, 1], from `onnxdigits.to_batch`.

    Raises:
        HTTPException: 400 unparsable, 413 too many images or pixels (checked on the files'
            headers before any is decoded), 415 another content type.
        InputError: what the SDK refuses (unreadable images, NaN, wrong shapes, ...).
    """
    kind = _media_type(request)
    sources: list[bytes] | np.ndarray
    if kind == "multipart/form-data":
        sources = await _multipart_images(request, max_images)
    elif kind.startswith("image/"):
        sources = [await request.body()]
    elif kind == "application/json":
        raw = await _json_body(request)
        if not isinstance(raw, dict) or "images" not in raw:
            raise InputError('expected a JSON object {"images": [28x28 nested lists, ...]}')
        sources = _numbers(raw["images"], "images")
    else:
        raise HTTPException(
            415,
            f"cannot read images from a {kind or 'request without a Content-Type'}; send "
            'multipart/form-data (files in the field "images"), image/png or image/jpeg, or '
            "application/json",
        )
    if isinstance(sources, list):
        await run_in_threadpool(check_pixels, sources, max_pixels)
    batch = await run_in_threadpool(to_batch, sources)
    if len(batch) > max_images:
        raise HTTPException(
            413, f"{len(batch)} images exceed the limit of {max_images} per request; split them"
        )
    return batch


def check_pixels(files: Sequence[bytes], max_pixels: int) -> None:
    """Refuse image files that declare too many pixels, from their headers alone.

    Raises:
        HTTPException: 413 when one file declares more than `MAX_IMAGE_PIXELS`, or all of them
            together more than `max_pixels`. Files whose header cannot be read pass, for the
            SDK to refuse by name.
    """
    total = 0
    for index, data in enumerate(files):
        where = f"images[{index}]" if len(files) > 1 else "the image"
        pixels = _image_pixels(data, where)
        if pixels > MAX_IMAGE_PIXELS:
            raise HTTPException(
                413,
                f"{where} declares {pixels:,} pixels, over the limit of {MAX_IMAGE_PIXELS:,} "
                "per image; send it smaller (a digit needs no more than a few hundred pixels a "
                "side)",
            )
        total += pixels
        if total > max_pixels:
            raise HTTPException(
                413,
                f"the images declare more than {max_pixels:,} pixels in all (by images[{index}]); "
                "send them smaller, or fewer per request",
            )


def _image_pixels(data: bytes, where: str) -> int:
    """How many pixels the SDK will decode an image file to, from its header alone; 0 when the
    header cannot be read, for the SDK to refuse by name (with the image's index) as it decodes.

    Raises:
        HTTPException: 413 when the SDK refuses it as too large even to open.
    """
    try:
        return images.image_pixels(data)
    except ImageTooLargeError as exc:
        raise HTTPException(413, f"{where}: {exc}") from None
    except InputError:
        return 0


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _multipart_images(request: Request, max_images: int) -> list[bytes]:
    try:
        form = await request.form(max_files=max_images, max_fields=max_images)
    except HTTPException as exc:
        # Starlette says "Too many files" with a 400; over the image limit is a 413 here.
        if str(exc.detail).startswith("Too many files"):
            raise HTTPException(
                413, f"more than {max_images} files in one request; split them"
            ) from None
        raise
    try:
        files = form.getlist("images")
        if not files:
            raise InputError('no images: send image files in the multipart field "images"')
        if any(isinstance(item, str) for item in files):
            raise InputError('the multipart field "images" must hold files, not text')
        return [await item.read() for item in files if not isinstance(item, str)]
    finally:
        await form.close()


async def _json_body(request: Request) -> Any:
    if _media_type(request) != "application/json":
        raise HTTPException(415, "send application/json")
    body = await request.body()
    try:
        return json.loads(body)  # accepts NaN and Infinity, which the SDK then refuses by name
    except (ValueError, RecursionError) as exc:
        raise HTTPException(400, f"the body is not valid JSON: {exc}") from None


def _numbers(value: object, what: str) -> np.ndarray:
    """A JSON value as an array of numbers; never strings, which the SDK would read as paths."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, RecursionError) as exc:
        raise InputError(f"{what} are not a rectangular array of numbers: {exc}") from None
    if array.dtype.kind not in "biuf":
        raise InputError(f"{what} must be nested lists of numbers; got {array.dtype} values")
    return array


def _png(picture: np.ndarray) -> bytes:
    out = io.BytesIO()
    to_image(picture).save(out, format="PNG")
    return out.getvalue()


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(part) for part in error['loc'][1:]) or 'request'}: {error['msg']}"
            for error in exc.errors()
        ]
        return _error(422, "; ".join(problems))

    @app.exception_handler(AbsentModelError)
    async def absent(request: Request, exc: AbsentModelError) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(InputError)
    async def refused(request: Request, exc: InputError) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(OnnxDigitsError)
    async def failed(request: Request, exc: OnnxDigitsError) -> JSONResponse:
        return _error(500, str(exc))
