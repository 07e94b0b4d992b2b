"""The grid's latent points, made once per grid, and the CPU path that runs chunks in parallel."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import onnxdigits
import pytest
from onnxdigits import Generator, grid_points


def test_every_call_gets_its_own_points() -> None:
    first = grid_points(4)
    first[:] = 0  # a caller may do what it likes with its points
    second = grid_points(4)
    assert second.flags.writeable and second is not first
    ppf = NormalDist().inv_cdf
    q = np.linspace(0.05, 0.95, 4)
    assert np.allclose(second[1], [ppf(q[1]), ppf(q[0])])  # row 0, column 1
    assert np.allclose(second[4], [ppf(q[0]), ppf(q[1])])  # row 1, column 0


def test_grids_of_other_bounds_are_their_own() -> None:
    assert not np.array_equal(grid_points(3), grid_points(3, 0.1, 0.9))
    assert grid_points(3, 0.1, 0.9)[0, 0] == pytest.approx(NormalDist().inv_cdf(0.1), abs=1e-6)


class _FailingSecondChunk:
    """A session whose run fails for the chunk that starts past row 0."""

    def __init__(self, session: object) -> None:
        self.session = session
        self.calls = 0

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.calls += 1
        (batch,) = feed.values()
        if not np.array_equal(batch[0], self.first):
            raise RuntimeError("this chunk failed")
        return self.session.run(names, feed)  # type: ignore[attr-defined]


def test_chunks_join_in_order_and_pass_on_failures(artifacts) -> None:
    generator = Generator("vae", artifacts=artifacts, device="cpu", batch_size=50)
    points = np.random.default_rng(0).standard_normal((173, 2)).astype(np.float32)
    whole = onnxdigits.Generator("vae", artifacts=artifacts, device="cpu").session.run(
        ["image"], {"z": points}
    )[0][..., 0]
    assert np.max(np.abs(generator.decode(points) - whole)) <= 1e-6  # 4 chunks
    failing = _FailingSecondChunk(generator.session)
    failing.first = points[0]  # type: ignore[attr-defined]
    generator.session = failing  # type: ignore[assignment]
    with pytest.raises(RuntimeError, match="this chunk failed"):
        generator.decode(points)
    assert failing.calls == 2  # the chunks run in turn: the failure stops the call
