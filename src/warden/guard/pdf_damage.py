"""What is wrong with a PDF that could not be read, said so a person can act on it.

pypdf's exceptions describe its own state ("startxref not found", "'DictionaryObject'
object has no attribute 'get_data'") and pdfium says only "corrupted", so on a failure
`warden.guard.documents` asks this module to look at the raw bytes again: the
cross-reference pointer, stream /Length entries, object streams, the security handler.
Only failure paths pay for this, and an explanation that fails itself explains nothing
(`best_effort`): the refusal keeps its plain reason."""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec

import pypdf
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, NullObject, StreamObject


def short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


OBJECT_REPR = re.compile(r"IndirectObject\((\d+), (\d+), \d+\)")
_SELF_REFERENCE = re.compile(r"loop with self reference for IndirectObject\((\d+), (\d+),")


# A refusal names what is wrong in the file. pypdf's exceptions describe its own state
# ("startxref not found", "'DictionaryObject' object has no attribute 'get_data'") and
# pdfium says only "corrupted", so on a failure the raw bytes are looked at again for
# the damage a person can act on. Only failure paths pay for this.

WS = rb"[ \t\r\n\f\x00]"
_OBJ_HEADER = re.compile(rb"(?<![0-9])(\d{1,10})" + WS + rb"+(\d{1,5})" + WS + rb"+obj(?![A-Za-z])")
_STREAM_KEYWORD = re.compile(rb"(?<![A-Za-z])stream(?:\r\n|\n|\r)?")
_TOKEN = rb"([^ \t\r\n\f\x00/<>\[\]()%]*)"
REFERENCE = rb"(\d+)" + WS + rb"+(\d+)" + WS + rb"+R(?![A-Za-z])"
_ENTRY_PATTERN = WS + rb"*(?:" + REFERENCE + rb"|" + _TOKEN + rb")"
_INTEGER = re.compile(rb"[+-]?\d+")
_NUMBER = re.compile(rb"[+-]?(?:\d+\.?\d*|\.\d+)")
_OBJECT_STREAM_TYPE = re.compile(rb"/Type" + WS + rb"*/ObjStm(?![A-Za-z0-9])")


_P = ParamSpec("_P")


def best_effort(explain: Callable[_P, str | None]) -> Callable[_P, str | None]:
    """An explanation of a failure that fails itself explains nothing (None): the
    refusal then keeps its plain reason instead of turning into another error."""

    @functools.wraps(explain)
    def guarded(*args: _P.args, **kwargs: _P.kwargs) -> str | None:
        try:
            return explain(*args, **kwargs)
        except Exception:
            return None

    return guarded


@dataclass(frozen=True)
class RawObject:
    """An indirect object as written in the file, found by its `N G obj` header."""

    number: int
    generation: int
    offset: int
    #: bytes after the header up to the stream keyword (or to the next header)
    head: bytes
    #: offset of the stream data, None for an object without a stream
    stream_start: int | None

    @property
    def label(self) -> str:
        return f"{self.number} {self.generation}"

    def entry(self, key: bytes) -> tuple[int, int] | bytes | None:
        """A dictionary entry as written: (number, generation) for a reference, else the
        raw token (empty for a name, a string, an array or a dictionary)."""
        match = re.search(re.escape(key) + rb"(?![A-Za-z0-9#])" + _ENTRY_PATTERN, self.head)
        if match is None:
            return None
        if match[1] is not None:
            return int(match[1]), int(match[2])
        return bytes(match[3])

    def value(self) -> bytes:
        """The object's body when it is a plain value (`6 0 obj 42 endobj`)."""
        return self.head.split(b"endobj", 1)[0].strip()


def raw_objects(data: bytes) -> dict[int, RawObject]:
    """Every object header in the file; a later header for a number wins (as in an
    incremental update)."""
    headers = list(_OBJ_HEADER.finditer(data))
    objects: dict[int, RawObject] = {}
    for index, match in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(data)
        body = data[match.end() : min(end, match.end() + 65_536)]
        keyword = _STREAM_KEYWORD.search(body)
        if keyword is not None and b"endobj" in body[: keyword.start()]:
            keyword = None  # the keyword belongs to something after this object
        head = body[: keyword.start()] if keyword else body
        start = match.end() + keyword.end() if keyword else None
        number = int(match[1])
        objects[number] = RawObject(number, int(match[2]), match.start(), head, start)
    return objects


def _quoted(raw: bytes, limit: int = 40) -> str:
    """Raw PDF bytes for a message: printable, short, quoted."""
    text = raw[:limit].decode("latin-1")
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return repr(text + ("…" if len(raw) > limit else ""))


def _describe_raw(raw: bytes) -> str:
    """What a raw PDF value is, in words."""
    if not raw:
        return "nothing"
    if _NUMBER.fullmatch(raw):
        return f"the number {raw.decode()}"
    if raw.startswith(b"/"):
        return f"the name {_quoted(raw)}"
    if raw.startswith(b"<<"):
        return "a dictionary"
    if raw.startswith(b"["):
        return "an array"
    if raw.startswith((b"(", b"<")):
        return "a string"
    if raw in (b"null", b"true", b"false"):
        return raw.decode()
    return _quoted(raw)


def describe(value: Any) -> str:
    """What a parsed PDF value is, in words (for 'X is not a dictionary' messages)."""
    if value is None or isinstance(value, NullObject):
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, StreamObject):
        return "a stream"
    if isinstance(value, DictionaryObject):
        return "a dictionary"
    if isinstance(value, ArrayObject):
        return "an array"
    if isinstance(value, str) and value.startswith("/"):
        return f"the name {value}"
    if isinstance(value, str | bytes):
        return "a string"
    return type(value).__name__


@best_effort
def xref_damage(data: bytes) -> str | None:
    """What is wrong with the pointer to the cross-reference table, if anything."""
    damaged = "the cross-reference table is damaged"
    at = data.rfind(b"startxref")
    if at < 0:
        if _OBJ_HEADER.search(data) is None:
            return "no PDF objects follow the %PDF- header (the file is damaged throughout)"
        return (
            f"{damaged} (there is no startxref at the end of the file; "
            "part of the file is missing — was the upload cut off?)"
        )
    token = re.match(rb"startxref" + WS + rb"*" + _TOKEN, data[at : at + 64])
    raw = token[1] if token else b""
    if not raw.isdigit():
        return f"{damaged} (startxref is followed by {_quoted(raw)}, not a byte offset)"
    offset = int(raw)
    if offset >= len(data):
        return (
            f"{damaged} (startxref points to offset {offset:,}, past the end of the "
            f"{len(data):,}-byte file)"
        )
    target = data[offset : offset + 64].lstrip(b" \t\r\n\f\x00")
    if not (target.startswith(b"xref") or _OBJ_HEADER.match(target)):
        return (
            f"{damaged} (startxref points to offset {offset:,}, where there is no "
            "cross-reference table)"
        )
    header = _OBJ_HEADER.match(target)
    if header is not None:  # a cross-reference stream: its /W says how to read the rows
        stream = raw_objects(data[offset:]).get(int(header[1]))
        widths = re.search(rb"/W" + WS + rb"*\[([^\]]*)\]", stream.head) if stream else None
        if stream is not None and widths is not None:
            values = widths[1].split()
            if len(values) != 3 or not all(v.isdigit() for v in values):
                return (
                    f"the cross-reference stream {stream.label} is damaged (its /W is "
                    f"{_quoted(b'[' + widths[1].strip() + b']')}, not three byte widths)"
                )
    return None


def length_damage(
    data: bytes, objects: dict[int, RawObject], only: set[int] | None = None
) -> str | None:
    """The first stream (of `only`, if given) whose /Length is not a usable byte count."""
    for obj in objects.values():
        if obj.stream_start is None or (only is not None and obj.number not in only):
            continue
        entry = obj.entry(b"/Length")
        if entry is None:
            continue
        stream = f"stream {obj.label}"
        if isinstance(entry, tuple):
            number, generation = entry
            target = objects.get(number)
            if target is None:
                return (
                    f"{stream} has a /Length that refers to object {number} {generation}, "
                    "which is not in the file"
                )
            if number == obj.number:
                return f"{stream} has a /Length that refers to the stream itself"
            raw = target.value()
            if not _INTEGER.fullmatch(raw):
                return (
                    f"{stream} has a /Length that refers to object {target.label}, which is "
                    f"not a number (it is {_describe_raw(raw)})"
                )
        else:
            raw = entry
        if not _INTEGER.fullmatch(raw):
            if _NUMBER.fullmatch(raw):
                return f"{stream} has a /Length that is not a whole number ({_quoted(raw)})"
            return f"{stream} has a /Length that is not a number ({_quoted(raw)})"
        length = int(raw)
        if length < 0:
            return f"{stream} has a negative /Length ({length:,})"
        if obj.stream_start + length > len(data):
            return (
                f"{stream} has a /Length of {length:,} bytes, past the end of the "
                f"{len(data):,}-byte file"
            )
    return None


def object_stream_damage(
    number: int,
    objects: dict[int, RawObject],
    reader: pypdf.PdfReader | None,
    holds: str = "",
) -> str | None:
    """What is wrong with object stream `number`'s /N and /First, if anything. `holds`
    follows its name in the message (", which holds it,")."""
    obj = objects.get(number)
    if obj is None:
        return f"object stream {number}{holds.rstrip(',')} is not in the file"
    what = f"object stream {obj.label}{holds}"
    values: dict[str, int] = {}
    for key in ("/N", "/First"):
        entry = obj.entry(key.encode())
        if entry is None:
            return f"{what} has no {key}"
        if isinstance(entry, tuple):
            continue  # a reference: not checked
        raw = entry
        if not _INTEGER.fullmatch(raw):
            return f"{what} has a {key} that is not a number ({_quoted(raw)})"
        values[key] = int(raw)
        if values[key] < 0:
            return f"{what} has a negative {key} ({values[key]:,})"
    if reader is None or len(values) < 2:
        return None
    try:
        stream = reader.get_object(number)
        decoded = stream.get_data() if isinstance(stream, StreamObject) else None
    except Exception:
        decoded = None
    if decoded is None:
        return f"{what} cannot be decoded"
    first, count = values["/First"], values["/N"]
    if first > len(decoded):
        return f"{what} has a /First ({first:,}) past the end of its {len(decoded):,} bytes of data"
    header = decoded[:first].split()
    if len(header) != 2 * count or not all(token.isdigit() for token in header):
        return (
            f"{what} has a /First ({first:,}) that does not point at the start of its "
            f"first object (or a /N ({count:,}) that does not match its index)"
        )
    return None


@best_effort
def stream_damage(data: bytes, reader: pypdf.PdfReader | None) -> str | None:
    """The first damaged stream /Length or object stream in the file, if any."""
    objects = raw_objects(data)
    damage = length_damage(data, objects)
    if damage:
        return damage
    for obj in objects.values():
        if _OBJECT_STREAM_TYPE.search(obj.head):
            damage = object_stream_damage(obj.number, objects, reader)
            if damage:
                return damage
    return None


def structure_damage(data: bytes, reader: pypdf.PdfReader | None = None) -> str | None:
    """The first damage found in the file's structure: its cross-reference pointer, a
    stream /Length, an object stream."""
    return xref_damage(data) or stream_damage(data, reader)


_INVALID_OBJECT = re.compile(r"Invalid Elementary Object starting with b'(.+?)' @(\d+)")
_INVALID_HEX = re.compile(r"Invalid hexadecimal character (b'.+?') in hex string")


@best_effort
def _syntax_damage(message: str, data: bytes) -> str | None:
    """pypdf's syntax errors, said with the place they are in."""
    invalid = _INVALID_OBJECT.search(message)
    if invalid:
        offset = int(invalid[2])
        objects = [o for o in raw_objects(data).values() if o.offset <= offset]
        trailer = data.rfind(b"trailer", 0, offset + 1)
        inside = max(objects, key=lambda o: o.offset) if objects else None
        if trailer >= 0 and (inside is None or trailer > inside.offset):
            where = "in the trailer"
        elif inside is not None:
            where = f"in object {inside.label}"
        else:
            where = "before the first object"
        return (
            f"the PDF's syntax is damaged at byte {offset:,} {where} "
            f"(no PDF value starts with {invalid[1]!r})"
        )
    hex_char = _INVALID_HEX.search(message)
    if hex_char:
        return (
            "the PDF's syntax is damaged (a hexadecimal string contains the character "
            f"{hex_char[1][1:]})"
        )
    for kind, words in (("Null", "null"), ("Boolean", "true or false")):
        if f"Could not read {kind} object" in message:
            return f"the PDF's syntax is damaged (a value that should be {words} is not)"
    return None


def failure_reason(exc: Exception, data: bytes) -> str:
    """What to tell a person about an exception pypdf raised on this file."""
    message = str(exc)
    loop = _SELF_REFERENCE.search(message)
    if loop:
        damage = best_effort(length_damage)(data, raw_objects(data), {int(loop[1])})
        if damage and "refers to the stream itself" not in damage:
            return damage
        return f"malformed PDF (object {loop[1]} {loop[2]} contains a reference to itself)"
    if isinstance(exc, pypdf.errors.DependencyError) and "jbig2" in message.lower():
        return (
            "part of the PDF's structure (not an image) is JBIG2-compressed, which this "
            "gateway cannot decode"
        )
    if "startxref" in message or message.startswith("Trailer cannot be read"):
        return structure_damage(data) or (
            "the cross-reference table is damaged (the trailer or the cross-reference "
            "stream cannot be read)"
        )
    known = _pypdf_reasons(message)
    if known:
        return known
    damage = stream_damage(data, None) or _syntax_damage(message, data) or xref_damage(data)
    if damage:
        return damage
    reason = short(OBJECT_REPR.sub(r"object \1 \2", message) or type(exc).__name__, 160)
    return f"malformed PDF ({reason})"


def _pypdf_reasons(message: str) -> str | None:
    """pypdf messages that are precise already, said for a person."""
    entry = re.search(r"(/\w+) entry of the encryption dictionary is missing", message)
    if entry:
        return f"the encryption dictionary is damaged (its {entry[1]} entry is missing)"
    if "/Encrypt entry of the trailer is not a dictionary" in message:
        return "the encryption dictionary is damaged (the trailer's /Encrypt is not a dictionary)"
    crypt_filter = re.search(r"Crypt filter (/\S+) is missing from /CF", message)
    if crypt_filter:
        return (
            f"the encryption dictionary is damaged (its crypt filter {crypt_filter[1]} is "
            "missing from /CF)"
        )
    if "not a multiple of the block length" in message:
        return (
            "an encrypted string or stream is damaged (its length is not a whole number "
            "of AES blocks)"
        )
    return None


_NAME = rb"(/[^ \t\r\n\f\x00/<>\[\]()%]+)"


def _raw_security_handler(data: bytes) -> str | None:
    """The /Filter of the trailer's /Encrypt, read from the bytes (when pypdf gave up)."""
    direct = re.search(rb"/Encrypt" + WS + rb"*<<(.{0,4000}?)>>", data[-65_536:], re.DOTALL)
    if direct is not None:
        head = direct[1]
    else:
        ref = re.search(rb"/Encrypt" + WS + rb"*" + REFERENCE, data[-65_536:])
        target = raw_objects(data).get(int(ref[1])) if ref else None
        head = target.head if target else b""
    found = re.search(rb"/Filter" + WS + rb"*" + _NAME, head)
    return found[1].decode("latin-1") if found else None


def unsupported_encryption(exc: Exception, reader: pypdf.PdfReader | None, data: bytes) -> str:
    """Which encryption method the file uses that cannot be opened, in words."""
    message = str(exc)
    handler = None
    if reader is not None:
        with contextlib.suppress(Exception):
            encrypt = reader.trailer.get("/Encrypt")
            encrypt = encrypt.get_object() if isinstance(encrypt, IndirectObject) else encrypt
            if isinstance(encrypt, DictionaryObject):
                handler = str(encrypt.get("/Filter", "")) or None
    if handler is None:
        handler = _raw_security_handler(data)
    upload = "; upload it unencrypted"
    if "only Standard PDF encryption handler" in message or (
        handler not in (None, "/Standard") and "Standard" not in message
    ):
        if handler == "/Adobe.PubSec":
            return (
                "encrypted PDF with certificate (public-key) security (/Adobe.PubSec), "
                f"which this gateway cannot open{upload}"
            )
        if handler is None:
            return f"encrypted PDF whose encryption dictionary names no security handler{upload}"
        return (
            f"encrypted PDF with the security handler {handler}, which this gateway does not "
            f"support (only password security, /Standard){upload}"
        )
    version = re.search(r"Encryption V=(\S+) NOT supported", message)
    if version:
        return f"encrypted PDF with an unknown encryption version (/V {version[1]}){upload}"
    method = re.search(r"(StmF|StrF|EFF) Method (\S+) NOT supported", message)
    if method:
        return (
            f"encrypted PDF with an unsupported crypt filter method ({method[2]} for "
            f"/{method[1]}){upload}"
        )
    return f"encrypted PDF with an unsupported method ({short(message, 80)}){upload}"
