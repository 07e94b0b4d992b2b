"""`onnxdigits export --sign-key` and `onnxdigits verify --public-key`, on real sets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from onnxdigits.cli import main
from onnxdigits.signing import SIGNATURE, sign_set

from tests.conftest import flip_byte
from tests.sdk.test_signing import write_key_pair

pytest.importorskip("model_signing")


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    directory = tmp_path / "keys"
    directory.mkdir()
    write_key_pair(directory, "ours")
    write_key_pair(directory, "theirs")
    return directory


def test_verify_checks_the_signature_with_the_public_key(artifacts_copy, keys: Path) -> None:
    sign_set(artifacts_copy, keys / "ours.pem")
    args = ("verify", "--artifacts", str(artifacts_copy), "--device", "cpu")
    result = run(*args, "--public-key", str(keys / "ours.pub"))
    assert result.exit_code == 0, result.output
    assert f"signature {artifacts_copy / SIGNATURE} holds with" in result.output

    result = run(*args, "--public-key", str(keys / "theirs.pub"))
    assert result.exit_code == 1
    assert "does not hold with the key" in result.output

    flip_byte(artifacts_copy / "references" / "classifier.npz")
    result = run(*args, "--public-key", str(keys / "ours.pub"))
    assert result.exit_code == 1
    assert "changed after it was signed: references/classifier.npz changed" in result.output


def test_verify_without_a_public_key_checks_no_signature(artifacts_copy) -> None:
    result = run("verify", "--artifacts", str(artifacts_copy), "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "signature" not in result.output


def test_export_refuses_a_key_that_cannot_sign_before_exporting(tmp_path: Path, keys) -> None:
    out = tmp_path / "set"
    result = run("export", "--out", str(out), "--sign-key", str(keys / "ours.pub"))
    assert result.exit_code == 1
    assert "cannot sign with the key" in result.output
    assert not out.exists()


_TRAIN_AND_EXPORT = """
import sys
from onnxdigits.cli import main
data, run, key = sys.argv[1:]
main(["train", "--models", "classifier", "--epochs", "1", "--validation", "20", "--data", data,
      "--out", run], standalone_mode=False)
main(["export", "--out", run, "--data", data, "--no-metrics", "--sign-key", key],
     standalone_mode=False)
"""


def test_export_signs_the_set_it_writes(tmp_path: Path, keys: Path, sample) -> None:
    """A classifier trained for one epoch on 300 digits, exported and signed: `verify` holds
    the signature with the public key, and not with another."""
    pytest.importorskip("tf2onnx")
    images, labels = sample
    data = tmp_path / "mnist.npz"
    np.savez(
        data, x_train=images[:300], y_train=labels[:300], x_test=images[300:], y_test=labels[300:]
    )
    out = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", _TRAIN_AND_EXPORT, str(data), str(out), str(keys / "ours.pem")],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"{out / SIGNATURE}\tsigned with {keys / 'ours.pem'}" in done.stdout
    result = run(
        "verify", "--artifacts", str(out), "--device", "cpu", "--public-key", str(keys / "ours.pub")
    )
    assert result.exit_code == 0, result.output
    result = run("verify", "--artifacts", str(out), "--public-key", str(keys / "theirs.pub"))
    assert result.exit_code == 1 and "does not hold" in result.output
