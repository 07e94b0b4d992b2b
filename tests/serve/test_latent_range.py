"""Latent points that are finite as JSON numbers (float64) but not in the models' float32: the
service answers 422 naming the point, never 200 with null pixels (issue 20, item 9)."""

from __future__ import annotations

import pytest

from tests.serve.conftest import Server

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("z", "message"),
    [
        ("[[1e39, 0]]", "z[0, 0] is 1e+39, beyond float32's range"),
        ("[[0, 0], [0, -1e308]]", "z[1, 1] is -1e+308, beyond float32's range"),
        ("[[3e38, 0]]", "z[0] = [3e+38, 0] is too far out to decode"),
    ],
)
@pytest.mark.parametrize("accept", ["application/json", "image/png"])
def test_a_point_beyond_float32_gets_422_naming_it(
    uvicorn_server: Server, z: str, message: str, accept: str
) -> None:
    with uvicorn_server.client() as client:
        response = client.post(
            "/v1/decode", content=f'{{"z": {z}}}'.encode(), headers={**JSON, "Accept": accept}
        )
        assert response.status_code == 422, response.text
        assert message in response.json()["error"]
        good = client.post("/v1/decode", json={"z": [[0.0, 0.0]]})
        assert good.status_code == 200 and None not in good.json()["images"][0][0]
