"""Signed tree heads: C2SP tlog-checkpoint bodies in C2SP signed notes, Ed25519.

A checkpoint note looks like::

    <origin>
    <tree size>
    <base64 root hash>

    — <key name> <base64(4-byte key id || 64-byte Ed25519 signature)>

The signature covers the body (the first three lines, final newline included). The
key id is ``SHA-256(key name || 0x0A || 0x01 || public key)[:4]`` and a verifier key
is written ``<name>+<key id hex>+<base64(0x01 || public key)>``. See
https://c2sp.org/signed-note and https://c2sp.org/tlog-checkpoint.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointSigner",
    "CheckpointVerifier",
    "key_id",
    "parse_note",
]

ED25519_ALG = 0x01
"""Signed-note signature type byte for Ed25519."""

HASH_SIZE = 32
MAX_SIGNATURES = 100
"""Most signature lines a note may carry (the spec asks verifiers for a limit >= 16)."""
MAX_TREE_SIZE = 2**64 - 1

_SIG_PREFIX = "\u2014 "  # em dash, space
_SIZE_RE = re.compile(r"0|[1-9][0-9]*")
_B64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_HEX8_RE = re.compile(r"[0-9a-fA-F]{8}")


class CheckpointError(ValueError):
    """A checkpoint or signed note is malformed or not validly signed; says why."""


def _b64decode(text: str, what: str) -> bytes:
    """Strict standard base64: alphabet, padding and canonical encoding."""
    if not _B64_RE.fullmatch(text):
        raise CheckpointError(f"{what} is not valid base64: {text!r}")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointError(f"{what} is not valid base64: {text!r} ({exc})") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise CheckpointError(f"{what} is not canonical base64: {text!r}")
    return raw


def _check_text(text: str, what: str) -> None:
    """Valid UTF-8 with no ASCII control characters other than newline."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise CheckpointError(f"{what} is not valid UTF-8") from None
    for ch in text:
        if ch < " " and ch != "\n":
            raise CheckpointError(f"{what} contains control character {ch!r}")


def _check_key_name(name: str) -> None:
    if not name:
        raise CheckpointError("key name is empty")
    if any(ch.isspace() or ch == "+" for ch in name):
        raise CheckpointError(f"key name {name!r} contains a space or '+'")
    _check_text(name, f"key name {name!r}")


def key_id(name: str, public_key: bytes) -> bytes:
    """4-byte signed-note key id of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || key)[:4]."""
    if len(public_key) != 32:
        raise CheckpointError(f"Ed25519 public key must be 32 bytes, got {len(public_key)}")
    return sha256(name.encode("utf-8") + b"\n" + bytes([ED25519_ALG]) + public_key).digest()[:4]


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: origin line, tree size and RFC 6962 root hash."""

    origin: str
    size: int
    root: bytes

    def __post_init__(self) -> None:
        if not self.origin:
            raise CheckpointError("checkpoint origin is empty")
        _check_text(self.origin, "checkpoint origin")
        if "\n" in self.origin:
            raise CheckpointError(f"checkpoint origin {self.origin!r} contains a newline")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise CheckpointError(f"checkpoint size must be an int, got {self.size!r}")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError(f"checkpoint size {self.size} out of range")
        if len(self.root) != HASH_SIZE:
            raise CheckpointError(
                f"checkpoint root hash must be {HASH_SIZE} bytes, got {len(self.root)}"
            )

    def text(self) -> str:
        """The note text: ``origin\\nsize\\nbase64(root)\\n``."""
        root = base64.b64encode(self.root).decode("ascii")
        return f"{self.origin}\n{self.size}\n{root}\n"

    def body(self) -> bytes:
        """The signed bytes: :meth:`text` in UTF-8."""
        return self.text().encode("utf-8")


def _parse_body(text: str) -> Checkpoint:
    """Parse a checkpoint note text (ends in newline; exactly three lines)."""
    lines = text.split("\n")
    if lines[-1] != "":
        raise CheckpointError("checkpoint body does not end in a newline")
    lines.pop()
    if "" in lines:
        raise CheckpointError(f"checkpoint body line {lines.index('') + 1} is empty")
    if len(lines) < 3:
        raise CheckpointError(
            f"checkpoint body has {len(lines)} lines, expected origin, size and root hash"
        )
    if len(lines) > 3:
        raise CheckpointError(
            f"checkpoint body has {len(lines) - 3} extension line(s); none are accepted"
        )
    origin, size_text, root_text = lines
    if not _SIZE_RE.fullmatch(size_text):
        raise CheckpointError(
            f"checkpoint tree size {size_text!r} is not a decimal number without leading zeros"
        )
    size = int(size_text)
    if size > MAX_TREE_SIZE:
        raise CheckpointError(f"checkpoint tree size {size} is too large")
    root = _b64decode(root_text, "checkpoint root hash")
    if len(root) != HASH_SIZE:
        raise CheckpointError(f"checkpoint root hash is {len(root)} bytes, expected {HASH_SIZE}")
    return Checkpoint(origin, size, root)


def _split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """Split a signed note into its text and (key name, key id || signature) pairs."""
    _check_text(note, "note")
    if not note.endswith("\n"):
        raise CheckpointError("note does not end in a newline")
    cut = note.rfind("\n\n")
    if cut < 0:
        raise CheckpointError("note has no blank line between the text and the signatures")
    text, block = note[: cut + 1], note[cut + 2 :]
    if not block:
        raise CheckpointError("note has no signature lines")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError(f"note has {len(lines)} signatures, more than {MAX_SIGNATURES}")
    sigs: list[tuple[str, bytes]] = []
    for number, line in enumerate(lines, start=1):
        if not line.startswith(_SIG_PREFIX):
            raise CheckpointError(
                f"signature line {number} does not start with an em dash and a space: {line!r}"
            )
        parts = line[len(_SIG_PREFIX) :].split(" ")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise CheckpointError(
                f"signature line {number} is not '— <key name> <base64 signature>': {line!r}"
            )
        name, sig_text = parts
        _check_key_name(name)
        sig = _b64decode(sig_text, f"signature line {number}")
        if len(sig) < 5:
            raise CheckpointError(
                f"signature line {number} decodes to {len(sig)} bytes; need a 4-byte key id "
                "and a signature"
            )
        sigs.append((name, sig))
    return text, sigs


def parse_note(note: str) -> tuple[Checkpoint, list[tuple[str, bytes]]]:
    """Parse a checkpoint note without verifying it.

    Returns the checkpoint and, per signature line, the key name and the decoded
    ``key id || signature`` bytes. Raises :class:`CheckpointError` if malformed.
    """
    text, sigs = _split_note(note)
    checkpoint = _parse_body(text)
    if checkpoint.text() != text:  # unreachable given the strict grammar; kept as a guard
        raise CheckpointError("checkpoint body is not in canonical form")
    return checkpoint, sigs


class CheckpointSigner:
    """Signs checkpoints with an Ed25519 key under a signed-note key name."""

    def __init__(self, private_key: Ed25519PrivateKey, name: str) -> None:
        _check_key_name(name)
        self._key = private_key
        self.name = name
        self.public_key = _raw_public(private_key.public_key())
        self.key_id = key_id(name, self.public_key)

    @property
    def vkey(self) -> str:
        """Verifier key: ``<name>+<hex key id>+<base64(0x01 || public key)>``."""
        encoded = base64.b64encode(bytes([ED25519_ALG]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def verifier(self) -> CheckpointVerifier:
        """A verifier for this signer's notes."""
        return CheckpointVerifier(self.vkey)

    def sign(self, checkpoint: Checkpoint) -> str:
        """The full signed note for ``checkpoint``."""
        body = checkpoint.body()
        signature = self._key.sign(body)
        sig = base64.b64encode(self.key_id + signature).decode("ascii")
        return f"{checkpoint.text()}\n{_SIG_PREFIX}{self.name} {sig}\n"

    @classmethod
    def generate(cls, name: str) -> CheckpointSigner:
        """A signer with a fresh random key."""
        return cls(Ed25519PrivateKey.generate(), name)

    @classmethod
    def load_or_create(cls, path: Path, name: str) -> CheckpointSigner:
        """Load the PKCS#8 PEM private key at ``path``, or create one there (mode 0600).

        Parent directories are created as needed. Creation is atomic: a concurrent
        creator either wins or loads the winner's key.
        """
        path = Path(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            try:
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(pem)
                    fh.flush()
                    os.fsync(fh.fileno())
                with contextlib.suppress(FileExistsError):
                    os.link(tmp, path)  # fails if another process created it first
            finally:
                os.unlink(tmp)
        return cls(_load_private_key(path), name)


def _load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"{path}: not an Ed25519 private key")
    return key


class CheckpointVerifier:
    """Verifies checkpoint notes against one Ed25519 verifier key (vkey string)."""

    def __init__(self, vkey: str) -> None:
        parts = vkey.split("+", 2)  # the name has no "+"; base64 may
        if len(parts) != 3:
            raise CheckpointError(
                f"verifier key {vkey!r} is not '<name>+<hex key id>+<base64 key>'"
            )
        name, id_hex, key_text = parts
        try:
            _check_key_name(name)
        except CheckpointError as exc:
            raise CheckpointError(f"verifier key: {exc}") from None
        if not _HEX8_RE.fullmatch(id_hex):
            raise CheckpointError(f"verifier key id {id_hex!r} is not 8 hex digits")
        raw = _b64decode(key_text, "verifier key")
        if len(raw) != 33 or raw[0] != ED25519_ALG:
            raise CheckpointError("verifier key is not an Ed25519 key (0x01 followed by 32 bytes)")
        self.name = name
        self.public_key = raw[1:]
        self.key_id = key_id(name, self.public_key)
        if self.key_id != bytes.fromhex(id_hex):
            raise CheckpointError(
                f"verifier key id {id_hex} does not match its name and key "
                f"(computed {self.key_id.hex()})"
            )
        try:
            self._key = Ed25519PublicKey.from_public_bytes(self.public_key)
        except ValueError as exc:
            raise CheckpointError(f"verifier key is not a valid Ed25519 key ({exc})") from None

    @property
    def vkey(self) -> str:
        """This verifier's key string, normalised."""
        encoded = base64.b64encode(bytes([ED25519_ALG]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def verify(self, note: str) -> Checkpoint:
        """Return the checkpoint of ``note`` if this key signed it, else raise.

        Signatures by other keys (different name or key id) are ignored, as the
        signed-note spec requires; a bad signature from this key rejects the note.
        """
        checkpoint, sigs = parse_note(note)
        body = checkpoint.body()
        mine = [sig for name, sig in sigs if name == self.name and sig[:4] == self.key_id]
        if not mine:
            same_name = [sig[:4].hex() for name, sig in sigs if name == self.name]
            if same_name:
                raise CheckpointError(
                    f"no signature from key {self.name} ({self.key_id.hex()}): the note is "
                    f"signed by a different key with that name (key id {', '.join(same_name)})"
                )
            others = ", ".join(sorted({name for name, _ in sigs}))
            raise CheckpointError(
                f"no signature from key {self.name}: the note is signed only by unknown "
                f"key name(s): {others}"
            )
        for sig in mine:
            if len(sig) != 4 + 64:
                raise CheckpointError(
                    f"bad signature from {self.name}: {len(sig) - 4} bytes, expected 64"
                )
            try:
                self._key.verify(sig[4:], body)
            except InvalidSignature:
                raise CheckpointError(
                    f"bad signature from {self.name}: the checkpoint (origin, size or root) "
                    "was altered or was signed by another key"
                ) from None
        return checkpoint
