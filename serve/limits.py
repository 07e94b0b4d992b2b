"""What one request to the service may ask for: the limits and their defaults.

Apart from the app so that the CLI's options default to these same numbers without importing
FastAPI.
"""

from __future__ import annotations

from dataclasses import dataclass

from onnxdigits import images

MAX_BODY = 16 * 2**20
MAX_IMAGES = 1024
# The most pixels one image file may declare: the SDK's own budget. A digit needs nothing near
# Pillow's 89 million, and decoding costs memory by the pixel, not by the file's bytes (a 392 KB
# PNG can declare 89 million RGBA pixels).
MAX_IMAGE_PIXELS = images.MAX_PIXELS
MAX_PIXELS = 2 * MAX_IMAGE_PIXELS  # the most pixels all of one request's image files may declare


@dataclass(frozen=True)
class Limits:
    """What one request may ask for.

    Attributes:
        max_body: the largest request body in bytes; a larger one gets 413 unread.
        max_images: the most images one request may send or ask for (files, JSON images, latent
            points, grid cells, samples); more get 413.
        max_pixels: the most pixels the image files of one request may declare in their
            headers, all together, checked before any is decoded; more get 413. (Each file may
            declare at most `MAX_IMAGE_PIXELS`.)
    """

    max_body: int = MAX_BODY
    max_images: int = MAX_IMAGES
    max_pixels: int = MAX_PIXELS
