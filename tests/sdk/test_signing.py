"""Signed sets: a copy of the shipped set signed with a fresh key passes `Artifacts(...,
public_key=)`; a file changed, added or removed since, or another key, is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from onnxdigits import ArtifactError, Artifacts, Classifier
from onnxdigits.manifest import sha256_of
from onnxdigits.signing import SIGNATURE, check_private_key, sign_set, verify_set
from onnxdigits.specs import MANIFEST

from tests.conftest import flip_byte

pytest.importorskip("model_signing")


def write_key_pair(directory: Path, name: str, curve: ec.EllipticCurve | None = None) -> Path:
    """A fresh elliptic-curve key pair: NAME.pem (private) and NAME.pub (public)."""
    key = ec.generate_private_key(curve or ec.SECP256R1())
    (directory / f"{name}.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (directory / f"{name}.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return directory / f"{name}.pem"


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """Two key pairs, "ours" and "theirs", in one directory."""
    directory = tmp_path / "keys"
    directory.mkdir()
    write_key_pair(directory, "ours")
    write_key_pair(directory, "theirs", ec.SECP384R1())
    return directory


@pytest.fixture
def signed(artifacts_copy: Path, keys: Path) -> Path:
    assert sign_set(artifacts_copy, keys / "ours.pem") == artifacts_copy / SIGNATURE
    return artifacts_copy


def test_a_signed_set_loads_with_its_public_key(signed: Path, keys: Path, sample) -> None:
    store = Artifacts(signed, public_key=keys / "ours.pub")
    classifier = Classifier(artifacts=store, device="cpu")
    labels = classifier.predict(sample[0][:50])
    assert (labels == sample[1][:50]).mean() > 0.9


def test_a_signature_made_with_another_key_is_refused(signed: Path, keys: Path) -> None:
    with pytest.raises(ArtifactError, match="does not hold with the key .*theirs.pub"):
        Artifacts(signed, public_key=keys / "theirs.pub")
    with pytest.raises(ArtifactError, match="does not hold"):
        Classifier(artifacts=Artifacts(signed, public_key=keys / "theirs.pub"), device="cpu")


def _swap_classifier(root: Path) -> None:
    """Another valid classifier with its digest written into the manifest: every sha256 holds."""
    model = onnx.load(root / "classifier.onnx")
    bias = model.graph.initializer[-1]
    bias.raw_data = bytes(len(bias.raw_data))
    data = model.SerializeToString()
    (root / "classifier.onnx").write_bytes(data)
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["models"]["classifier"].update(sha256=sha256_of(data), bytes=len(data))
    (root / MANIFEST).write_text(json.dumps(manifest))


TAMPERING = [
    ("swapped-classifier", _swap_classifier, "classifier.onnx changed; manifest.json changed"),
    ("flipped-sample-byte", lambda root: flip_byte(root / "sample.npz"), "sample.npz changed"),
    (
        "added-file",
        lambda root: (root / "references" / "extra.npz").write_bytes(b"x"),
        "references/extra.npz added",
    ),
    (
        "removed-reference",
        lambda root: (root / "references" / "vae.encoder.npz").unlink(),
        "removed",
    ),
    ("truncated-signature", lambda root: (root / SIGNATURE).write_bytes(b"{}"), "does not hold"),
    ("removed-signature", lambda root: (root / SIGNATURE).unlink(), "has no signature"),
]


@pytest.mark.parametrize(
    ("tamper", "message"), [pytest.param(t, m, id=name) for name, t, m in TAMPERING]
)
def test_a_set_changed_after_signing_is_refused(signed: Path, keys: Path, tamper, message) -> None:
    if tamper is _swap_classifier:  # without the key, the swap passes every checksum
        _swap_classifier(signed)
        assert all(problem is None for problem in Artifacts(signed).verify().values())
    else:
        tamper(signed)
    with pytest.raises(ArtifactError, match=message):
        Artifacts(signed, public_key=keys / "ours.pub")


def test_trained_keras_models_beside_the_set_are_outside_the_signature(
    signed: Path, keys: Path
) -> None:
    """keras/ holds what the set was exported from; the SDK never reads it."""
    (signed / "keras").mkdir()
    (signed / "keras" / "classifier.keras").write_bytes(b"trained later")
    Artifacts(signed, public_key=keys / "ours.pub")


def test_resigning_after_a_change_makes_the_set_pass_again(signed: Path, keys: Path) -> None:
    flip_byte(signed / "sample.npz")
    with pytest.raises(ArtifactError):
        verify_set(signed, keys / "ours.pub")
    sign_set(signed, keys / "theirs.pem")
    verify_set(signed, keys / "theirs.pub")


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("ours.pub", "cannot sign with the key"),  # a public key where a private one goes
        ("missing.pem", "cannot sign with the key"),
        ("rsa.pem", "cannot sign with the key"),
    ],
)
def test_a_key_that_cannot_sign_is_refused_before_anything_is_written(
    artifacts_copy: Path, keys: Path, key: str, message: str
) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (keys / "rsa.pem").write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ArtifactError, match=message):
        check_private_key(keys / key)
    with pytest.raises(ArtifactError, match=message):
        sign_set(artifacts_copy, keys / key)
    assert not (artifacts_copy / SIGNATURE).exists()
    assert not list(artifacts_copy.parent.glob("*.sig"))  # no partial signature left


def test_a_public_key_that_is_not_one_is_refused(signed: Path, keys: Path) -> None:
    with pytest.raises(ArtifactError, match="cannot read the public key"):
        Artifacts(signed, public_key=keys / "ours.pem")


def test_the_shipped_set_is_unsigned_and_says_so(keys: Path) -> None:
    """The shipped set is pinned instead; a public key for it finds no signature."""
    with pytest.raises(ArtifactError, match="has no signature"):
        Artifacts(public_key=keys / "ours.pub")
    assert np.asarray(Artifacts().sample()[0]).shape[1:] == (28, 28)
