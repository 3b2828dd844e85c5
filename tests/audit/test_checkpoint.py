"""Tests for warden.audit.checkpoint: C2SP signed-note checkpoints with Ed25519."""

from __future__ import annotations

import base64
import re
import stat
from hashlib import sha256
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from hypothesis import given
from hypothesis import strategies as st

from warden.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointSigner,
    CheckpointVerifier,
    key_id,
    parse_note,
)
from warden.audit.merkle import EMPTY_ROOT, leaf_hash

ORIGIN = "example.com/warden-test"
ROOT = leaf_hash(b"some root")
SEED = bytes(range(32))
EM = "\u2014"


@pytest.fixture
def signer() -> CheckpointSigner:
    return CheckpointSigner(Ed25519PrivateKey.from_private_bytes(SEED), ORIGIN)


@pytest.fixture
def verifier(signer: CheckpointSigner) -> CheckpointVerifier:
    return CheckpointVerifier(signer.vkey)


def raw_note(signer: CheckpointSigner, text: str, name: str | None = None) -> str:
    """A note over arbitrary text with a genuine signature from ``signer``'s key."""
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    sig = base64.b64encode(signer.key_id + key.sign(text.encode())).decode()
    return f"{text}\n{EM} {name or signer.name} {sig}\n"


# --- format ---


def test_round_trip(signer: CheckpointSigner, verifier: CheckpointVerifier) -> None:
    cp = Checkpoint(ORIGIN, 12345, ROOT)
    note = signer.sign(cp)
    assert verifier.verify(note) == cp
    assert signer.verifier().verify(note) == cp


def test_note_layout(signer: CheckpointSigner) -> None:
    cp = Checkpoint(ORIGIN, 7, ROOT)
    note = signer.sign(cp)
    root_b64 = base64.b64encode(ROOT).decode()
    assert cp.body() == f"{ORIGIN}\n7\n{root_b64}\n".encode()
    body, _, sigs = note.partition("\n\n")
    assert body + "\n" == cp.body().decode()
    m = re.fullmatch(rf"{EM} (\S+) ([A-Za-z0-9+/]+=*)\n", sigs)
    assert m is not None
    assert m.group(1) == ORIGIN
    raw = base64.b64decode(m.group(2))
    assert len(raw) == 4 + 64
    assert raw[:4] == signer.key_id
    Ed25519PublicKey.from_public_bytes(signer.public_key).verify(raw[4:], cp.body())
    parsed, sig_list = parse_note(note)
    assert parsed == cp
    assert sig_list == [(ORIGIN, raw)]


def test_empty_tree_checkpoint(signer: CheckpointSigner, verifier: CheckpointVerifier) -> None:
    cp = Checkpoint(ORIGIN, 0, EMPTY_ROOT)
    note = signer.sign(cp)
    assert note.startswith(f"{ORIGIN}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n")
    assert verifier.verify(note) == cp


def test_vkey_format_and_key_id(signer: CheckpointSigner) -> None:
    public = Ed25519PrivateKey.from_private_bytes(SEED).public_key()
    pk = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    want_id = sha256(ORIGIN.encode() + b"\n" + b"\x01" + pk).digest()[:4]
    assert signer.public_key == pk
    assert signer.key_id == want_id == key_id(ORIGIN, pk)
    name, id_hex, key_b64 = signer.vkey.split("+", 2)
    assert name == ORIGIN
    assert id_hex == want_id.hex()
    assert re.fullmatch(r"[0-9a-f]{8}", id_hex)
    assert base64.b64decode(key_b64) == b"\x01" + pk
    v = CheckpointVerifier(signer.vkey)
    assert (v.name, v.key_id, v.public_key, v.vkey) == (ORIGIN, want_id, pk, signer.vkey)


def test_known_signed_note_vector() -> None:
    # The example key and signed message from the Go golang.org/x/mod/sumdb/note docs.
    v = CheckpointVerifier("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
    assert key_id("PeterNeumann", v.public_key).hex() == "c74f20a3"
    text = (
        b"If you think cryptography is the answer to your problem,\n"
        b"then you don't know what your problem is.\n"
    )
    sig = base64.b64decode(
        "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
    )
    assert sig[:4] == v.key_id
    Ed25519PublicKey.from_public_bytes(v.public_key).verify(sig[4:], text)


@given(
    origin=st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40
    ),
    size=st.integers(min_value=0, max_value=2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
)
def test_round_trip_property(origin: str, size: int, root: bytes) -> None:
    signer = CheckpointSigner(Ed25519PrivateKey.from_private_bytes(SEED), "k")
    cp = Checkpoint(origin, size, root)
    assert CheckpointVerifier(signer.vkey).verify(signer.sign(cp)) == cp


# --- tampering and foreign keys ---


def _replace_line(note: str, index: int, new: str) -> str:
    lines = note.split("\n")
    lines[index] = new
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("line", "value"),
    [
        (0, "example.com/other-log"),
        (1, "12346"),
        (1, "1234"),
        (2, base64.b64encode(leaf_hash(b"other root")).decode()),
    ],
    ids=["origin", "size+1", "size-truncated", "root"],
)
def test_tampered_checkpoint_rejected(
    signer: CheckpointSigner, verifier: CheckpointVerifier, line: int, value: str
) -> None:
    note = signer.sign(Checkpoint(ORIGIN, 12345, ROOT))
    with pytest.raises(CheckpointError, match="bad signature"):
        verifier.verify(_replace_line(note, line, value))


def test_flipped_signature_bit_rejected(
    signer: CheckpointSigner, verifier: CheckpointVerifier
) -> None:
    note = signer.sign(Checkpoint(ORIGIN, 3, ROOT))
    text, _, sig_line = note.rstrip("\n").rpartition("\n")
    raw = bytearray(base64.b64decode(sig_line.split(" ")[2]))
    raw[10] ^= 0x01
    forged = f"{text}\n{EM} {ORIGIN} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(CheckpointError, match="bad signature"):
        verifier.verify(forged)


def test_signature_from_other_key_same_name_rejected(verifier: CheckpointVerifier) -> None:
    other = CheckpointSigner(Ed25519PrivateKey.generate(), ORIGIN)
    note = other.sign(Checkpoint(ORIGIN, 3, ROOT))
    with pytest.raises(CheckpointError, match="different key with that name"):
        verifier.verify(note)


def test_signature_from_unknown_key_name_rejected(verifier: CheckpointVerifier) -> None:
    other = CheckpointSigner(Ed25519PrivateKey.from_private_bytes(SEED), "someone.else/log")
    note = other.sign(Checkpoint(ORIGIN, 3, ROOT))
    with pytest.raises(CheckpointError, match=r"unknown key name.*someone\.else/log"):
        verifier.verify(note)


def test_stolen_key_id_with_bad_signature_rejected(
    signer: CheckpointSigner, verifier: CheckpointVerifier
) -> None:
    # An attacker's key whose signature claims our name and key id fails verification.
    attacker = Ed25519PrivateKey.generate()
    body = Checkpoint(ORIGIN, 99, ROOT).body()
    sig = base64.b64encode(signer.key_id + attacker.sign(body)).decode()
    with pytest.raises(CheckpointError, match="bad signature"):
        verifier.verify(f"{body.decode()}\n{EM} {ORIGIN} {sig}\n")


def test_unknown_cosignatures_are_ignored(
    signer: CheckpointSigner, verifier: CheckpointVerifier
) -> None:
    cp = Checkpoint(ORIGIN, 5, ROOT)
    witness = CheckpointSigner(Ed25519PrivateKey.generate(), "witness.example/w1")
    ours = signer.sign(cp)
    theirs = witness.sign(cp).split("\n\n", 1)[1]
    assert verifier.verify(ours + theirs) == cp
    both_first = cp.text() + "\n" + theirs + ours.split("\n\n", 1)[1]
    assert verifier.verify(both_first) == cp
    assert len(parse_note(ours + theirs)[1]) == 2


def test_one_bad_signature_from_our_key_rejects_the_note(
    signer: CheckpointSigner, verifier: CheckpointVerifier
) -> None:
    cp = Checkpoint(ORIGIN, 5, ROOT)
    good = signer.sign(cp)
    sig_line = good.split("\n\n", 1)[1]
    bad_sig = base64.b64encode(signer.key_id + bytes(64)).decode()
    with pytest.raises(CheckpointError, match="bad signature"):
        verifier.verify(good + f"{EM} {ORIGIN} {bad_sig}\n")
    with pytest.raises(CheckpointError, match="64"):
        short = base64.b64encode(signer.key_id + bytes(10)).decode()
        verifier.verify(cp.text() + "\n" + sig_line + f"{EM} {ORIGIN} {short}\n")


# --- malformed notes ---

GOOD_ROOT = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{ORIGIN}\n01\n{GOOD_ROOT}\n", "leading zeros"),
        (f"{ORIGIN}\n-1\n{GOOD_ROOT}\n", "not a decimal"),
        (f"{ORIGIN}\n+1\n{GOOD_ROOT}\n", "not a decimal"),
        (f"{ORIGIN}\n1_000\n{GOOD_ROOT}\n", "not a decimal"),
        (f"{ORIGIN}\n 1\n{GOOD_ROOT}\n", "not a decimal"),
        (f"{ORIGIN}\n\uff11\n{GOOD_ROOT}\n", "not a decimal"),
        (f"{ORIGIN}\n\n{GOOD_ROOT}\n", "line 2 is empty"),
        (f"{ORIGIN}\n{2**64}\n{GOOD_ROOT}\n", "too large"),
        (f"{ORIGIN}\n5\n{GOOD_ROOT[:-1]}\n", "base64"),
        (f"{ORIGIN}\n5\n{GOOD_ROOT.rstrip('=')}\n", "base64"),
        (f"{ORIGIN}\n5\n{GOOD_ROOT[:-2]}B=\n", "canonical"),
        (f"{ORIGIN}\n5\n{GOOD_ROOT.replace('=', '')}%=\n", "base64"),
        (f"{ORIGIN}\n5\n{base64.b64encode(ROOT[:31]).decode()}\n", "31 bytes"),
        (f"{ORIGIN}\n5\n{base64.b64encode(ROOT + b'x').decode()}\n", "33 bytes"),
        (f"{ORIGIN}\n5\n{GOOD_ROOT}\nextension\n", "extension"),
        (f"{ORIGIN}\n5\n", "2 lines"),
        (f"{ORIGIN}\n", "1 lines"),
        (f"\n5\n{GOOD_ROOT}\n", "line 1 is empty"),
    ],
)
def test_malformed_body_rejected(
    signer: CheckpointSigner, verifier: CheckpointVerifier, text: str, message: str
) -> None:
    with pytest.raises(CheckpointError, match=message):
        verifier.verify(raw_note(signer, text))


def test_malformed_note_structure_rejected(
    signer: CheckpointSigner, verifier: CheckpointVerifier
) -> None:
    good = signer.sign(Checkpoint(ORIGIN, 5, ROOT))
    body, sig_block = good.split("\n\n")
    sig_line = sig_block.rstrip("\n")
    _, name, sig_b64 = sig_line.split(" ")
    cases = {
        "not end in a newline": good.rstrip("\n"),
        "no blank line": body + "\n" + sig_block,
        "no signature lines": body + "\n\n",
        "not start with an em dash": body + "\n\n" + sig_line.replace(EM, "-") + "\n",
        "not start with an em dash ": body + "\n\n" + EM + sig_line[1:].lstrip() + "\n",
        "not '— <key name>": body + "\n\n" + sig_line.replace(" ", "  ", 1) + "\n",
        "not '— <key name> ": body + "\n\n" + sig_line + " extra\n",
        "not valid base64": body + "\n\n" + f"{EM} {name} {sig_b64[:-1]}*\n",
        "need a 4-byte key id": body + "\n\n" + f"{EM} {name} AAAA\n",
        "control character": good.replace("\n", "\r\n", 1),
        "control character ": good.replace(ORIGIN, ORIGIN + "\x00"),
        "not valid UTF-8": good.replace(ORIGIN, ORIGIN + "\ud800"),
        "more than 100": good + (sig_line + "\n") * 100,
        "body line 4 is empty": body + "\n\n" + sig_block + "\n" + sig_block,
    }
    for message, note in cases.items():
        with pytest.raises(CheckpointError, match=re.escape(message.strip())):
            verifier.verify(note)
    # exactly 100 signature lines is still fine
    assert verifier.verify(good + (sig_line + "\n") * 99).size == 5


def test_invalid_key_name_in_signature_line(verifier: CheckpointVerifier) -> None:
    cp = Checkpoint(ORIGIN, 5, ROOT)
    sig = base64.b64encode(bytes(68)).decode()
    with pytest.raises(CheckpointError, match="space or"):
        verifier.verify(f"{cp.text()}\n{EM} a+b {sig}\n")
    with pytest.raises(CheckpointError, match="space or"):
        verifier.verify(f"{cp.text()}\n{EM} a\u00a0b {sig}\n")


def test_tolerates_nothing_after_signatures(
    signer: CheckpointSigner, verifier: CheckpointVerifier
) -> None:
    note = signer.sign(Checkpoint(ORIGIN, 5, ROOT))
    with pytest.raises(CheckpointError):
        verifier.verify(note + "\n")
    with pytest.raises(CheckpointError):
        verifier.verify(note + "trailing\n")


# --- verifier keys ---


@pytest.mark.parametrize(
    ("vkey", "message"),
    [
        ("nameonly", "is not '<name>"),
        ("a+12345678", "is not '<name>"),
        ("a+b+c+d", "8 hex digits"),
        ("+00000000+AQ==", "key name is empty"),
        ("a b+00000000+AQ==", "space"),
        ("n+xyz+AQ==", "8 hex digits"),
        ("n+123456789+AQ==", "8 hex digits"),
        ("n+12345678+not base64!", "base64"),
        ("n+12345678+" + base64.b64encode(b"\x02" + bytes(32)).decode(), "not an Ed25519"),
        ("n+12345678+" + base64.b64encode(b"\x01" + bytes(31)).decode(), "not an Ed25519"),
        ("n+12345678+" + base64.b64encode(b"\x01" + bytes(32)).decode(), "does not match"),
    ],
)
def test_invalid_vkey(vkey: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        CheckpointVerifier(vkey)


def test_vkey_key_id_hex_case_insensitive(signer: CheckpointSigner) -> None:
    name, id_hex, key = signer.vkey.split("+", 2)
    v = CheckpointVerifier(f"{name}+{id_hex.upper()}+{key}")
    assert v.vkey == signer.vkey


# --- checkpoint and signer arguments ---


@pytest.mark.parametrize(
    ("origin", "size", "root", "message"),
    [
        ("", 1, ROOT, "origin is empty"),
        ("a\nb", 1, ROOT, "newline"),
        ("a\tb", 1, ROOT, "control character"),
        ("o", -1, ROOT, "out of range"),
        ("o", 2**64, ROOT, "out of range"),
        ("o", True, ROOT, "must be an int"),
        ("o", 1, ROOT[:31], "32 bytes"),
    ],
)
def test_invalid_checkpoint(origin: str, size: int, root: bytes, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        Checkpoint(origin, size, root)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\nb"])
def test_invalid_signer_name(name: str) -> None:
    with pytest.raises(CheckpointError):
        CheckpointSigner(Ed25519PrivateKey.generate(), name)


def test_error_is_value_error() -> None:
    assert issubclass(CheckpointError, ValueError)


# --- key storage ---


def test_load_or_create_persists_key(tmp_path: Path) -> None:
    path = tmp_path / "data" / "keys" / "checkpoint-ed25519.pem"
    first = CheckpointSigner.load_or_create(path, ORIGIN)
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pem = path.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp files left

    second = CheckpointSigner.load_or_create(path, ORIGIN)
    assert second.vkey == first.vkey
    assert path.read_bytes() == pem
    cp = Checkpoint(ORIGIN, 1, ROOT)
    assert CheckpointVerifier(first.vkey).verify(second.sign(cp)) == cp

    renamed = CheckpointSigner.load_or_create(path, "other.example/log")
    assert renamed.public_key == first.public_key
    assert renamed.key_id != first.key_id


def test_load_or_create_fresh_keys_differ(tmp_path: Path) -> None:
    a = CheckpointSigner.load_or_create(tmp_path / "a.pem", ORIGIN)
    b = CheckpointSigner.load_or_create(tmp_path / "b.pem", ORIGIN)
    assert a.public_key != b.public_key


def test_load_rejects_non_ed25519_or_garbage(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a key")
    with pytest.raises(CheckpointError, match="not an unencrypted PEM"):
        CheckpointSigner.load_or_create(garbage, ORIGIN)

    from cryptography.hazmat.primitives.asymmetric import ec

    ec_path = tmp_path / "ec.pem"
    ec_path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(CheckpointError, match="not an Ed25519"):
        CheckpointSigner.load_or_create(ec_path, ORIGIN)
