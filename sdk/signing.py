"""Signing an artifacts set and checking its signature, with OpenSSF's model-signing (the `sign`
extra): a key pair on elliptic curve P-256, P-384 or P-521 in PEM, offline.

A set's sha256s catch accidents; a signature says who made the set. It covers every file in the
set's directory, the manifest included, except the signature itself (`SIGNATURE`) and the
trained Keras models under keras/, which the SDK never reads: a file changed, added or removed
after signing fails the check.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import ArtifactError
from .files import new_file, staging_name, swap_in

__all__ = ["SIGNATURE", "UNSIGNED", "check_private_key", "sign_set", "verify_set"]

SIGNATURE = "model.sig"  # model-signing's own default name, so that its CLI finds it too
UNSIGNED = (SIGNATURE, "keras")


def sign_set(
    root: str | os.PathLike[str], private_key: str | os.PathLike[str], password: str | None = None
) -> Path:
    """Sign the set at `root` with an elliptic-curve private key, writing `root/model.sig`.

    Args:
        root: the set's directory.
        private_key: a PEM file of the private key.
        password: the key's password, when it is encrypted.

    Returns:
        The signature's path. It is written whole or not at all.

    Raises:
        ArtifactError: model-signing is not installed, the key cannot be read or is of an
            unsupported kind, or the set cannot be hashed (a symlink, or a file that is not a
            regular file, in it).
    """
    config = _signer(private_key, password)
    root = Path(root)
    # Written beside the set, not in it: the signature covers every file in the set.
    partial = new_file(staging_name(root.parent / f"{root.name}.sig"))
    try:
        config.sign(root, partial)
        swap_in(partial, root / SIGNATURE)
    except Exception as exc:
        raise ArtifactError(f"cannot sign {root}: {_reason(exc)}") from None
    finally:
        partial.unlink(missing_ok=True)
    return root / SIGNATURE


def check_private_key(private_key: str | os.PathLike[str], password: str | None = None) -> None:
    """Check that a key can sign before anything long starts (an export, say).

    Raises:
        ArtifactError: as `sign_set` for the key.
    """
    _signer(private_key, password)


def _signer(private_key: str | os.PathLike[str], password: str | None) -> Any:
    """model-signing's signing configuration for this key, hashing the set as `UNSIGNED` says."""
    signing, _, hashing = _model_signing()
    try:
        config = signing.Config().use_elliptic_key_signer(
            private_key=private_key, password=password
        )
    except Exception as exc:  # cryptography's and model-signing's own kinds
        raise ArtifactError(f"cannot sign with the key {private_key}: {_reason(exc)}") from None
    return config.set_hashing_config(hashing.Config().set_ignored_paths(paths=list(UNSIGNED)))


def verify_set(root: str | os.PathLike[str], public_key: str | os.PathLike[str]) -> None:
    """Check the signature of the set at `root` against an elliptic-curve public key (PEM).

    Raises:
        ArtifactError: model-signing is not installed; the set has no signature; the key cannot
            be read; or the signature does not hold: made with another key, or a file was
            changed, added or removed since (the message names them).
    """
    _, verifying, _ = _model_signing()
    root = Path(root)
    signature = root / SIGNATURE
    if not signature.is_file():
        raise ArtifactError(
            f"{root} has no signature ({SIGNATURE}); sign the set with `onnxdigits export "
            "--sign-key KEY`, or leave the public key out to use it unsigned"
        )
    try:
        config = verifying.Config().use_elliptic_key_verifier(public_key=public_key)
    except Exception as exc:
        raise ArtifactError(f"cannot read the public key {public_key}: {_reason(exc)}") from None
    try:
        config.verify(root, signature)
    except Exception as exc:
        changes = _changes(str(exc))
        if changes:
            raise ArtifactError(
                f"{root} was changed after it was signed: {changes}; export the set again or "
                "restore it"
            ) from None
        raise ArtifactError(
            f"the signature of {root} does not hold with the key {public_key}: {_reason(exc)}; "
            "it was made with another key, or the signature was changed"
        ) from None


def _changes(message: str) -> str:
    """What model-signing's "Signature mismatch: [...]" says changed, in words; "" for any
    other failure. Its list is the repr of a list of strings, read back as one."""
    prefix = "Signature mismatch: "
    if not message.startswith(prefix):
        return ""
    try:
        lines = ast.literal_eval(message[len(prefix) :])
    except (ValueError, SyntaxError):
        return message
    found = []
    for line in lines if isinstance(lines, list) else []:
        changed = re.match(r"Hash mismatch for '(.*)': Expected", str(line))
        listed = re.match(r"(Extra|Missing) files (?:found )?in model '.*': (.*)$", str(line))
        if changed:
            found.append(f"{changed[1]} changed")
        elif listed:
            found.append(f"{listed[2]} {'added' if listed[1] == 'Extra' else 'removed'}")
        else:
            found.append(str(line))
    return "; ".join(found) or message


def _model_signing() -> tuple[Any, Any, Any]:
    """model-signing's signing, verifying and hashing modules."""
    try:
        from model_signing import hashing, signing, verifying
    except ModuleNotFoundError as exc:
        raise ArtifactError(
            f"signing and checking signatures need model-signing ({exc}): install the sign "
            "extra, pip install '.[sign]' in a clone"
        ) from None
    modules: tuple[ModuleType, ModuleType, ModuleType] = (signing, verifying, hashing)
    return modules


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc).strip().rstrip(".") or type(exc).__name__
