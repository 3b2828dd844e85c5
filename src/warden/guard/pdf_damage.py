"""What is wrong with a PDF that could not be read, said so a person can act on it.

pypdf's exceptions describe its own state ("startxref not found", "'DictionaryObject'
object has no attribute 'get_data'") and pdfium says only "corrupted", so on a failure
`warden.guard.documents` asks this module to look at the raw bytes again: the
cross-reference pointer, stream /Length entries, object streams, the security handler.
Only failure paths pay for this, and an explanation that fails itself explains nothing
(`best_effort`): the refusal keeps its plain reason."""

from __future__ import annotations

import collections
import contextlib
import contextvars
import functools
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
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
_WIDTHS = re.compile(rb"/W" + WS + rb"*\[([^\]]*)\]")


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


#: A diagnosis reads at most this many object headers. Naming the damage needs the
#: objects a failure involves, and real files that fail have far fewer; a file of a
#: million bare `N 0 obj` headers would otherwise cost seconds and hundreds of MB.
MAX_HEADERS = 20_000
#: An object's dictionary is looked for in at most this many bytes after its header.
HEAD_WINDOW = 65_536
#: Wall-clock budget of one failure's diagnosis; past it the refusal keeps its plain
#: reason (the gate is synchronous: a slow explanation stalls a worker).
BUDGET_SECONDS = 0.5
_CHECK_EVERY = 256  # objects between two looks at the clock


class OutOfTime(Exception):
    """The diagnosis spent its budget (best_effort turns this into None)."""


@dataclass(frozen=True, slots=True)
class RawObject:
    """An indirect object as written in the file, found by its `N G obj` header. It keeps
    offsets into the file, not a copy of its bytes."""

    number: int
    generation: int
    offset: int
    #: offset of the stream data, None for an object without a stream
    stream_start: int | None
    data: bytes = field(repr=False, compare=False)
    #: where the bytes after the header start and end (at the stream keyword, the next
    #: header or HEAD_WINDOW bytes on)
    head_start: int = 0
    head_end: int = 0

    @property
    def label(self) -> str:
        return f"{self.number} {self.generation}"

    @property
    def head(self) -> bytes:
        """The bytes after the header up to the stream keyword (or to the next header)."""
        return self.data[self.head_start : self.head_end]

    def search(self, pattern: re.Pattern[bytes]) -> re.Match[bytes] | None:
        """`pattern` searched in the head, without copying it."""
        return pattern.search(self.data, self.head_start, self.head_end)

    def entry(self, key: bytes) -> tuple[int, int] | bytes | None:
        """A dictionary entry as written: (number, generation) for a reference, else the
        raw token (empty for a name, a string, an array or a dictionary)."""
        match = self.search(_entry_pattern(key))
        if match is None:
            return None
        if match[1] is not None:
            return int(match[1]), int(match[2])
        return bytes(match[3])

    def value(self) -> bytes:
        """The object's body when it is a plain value (`6 0 obj 42 endobj`)."""
        end = self.data.find(b"endobj", self.head_start, self.head_end)
        return self.data[self.head_start : end if end >= 0 else self.head_end].strip()


@functools.lru_cache(maxsize=32)
def _entry_pattern(key: bytes) -> re.Pattern[bytes]:
    return re.compile(re.escape(key) + rb"(?![A-Za-z0-9#])" + _ENTRY_PATTERN)


class RawObjects(dict[int, RawObject]):
    """The objects of a file by number. `complete` is False when the scan stopped at
    MAX_HEADERS (an object not here may then still be in the file), and `end` is where
    it stopped (the end of the file when complete); `headers` is how many headers were
    read; `deadline` is when the diagnosis they serve gives up."""

    def __init__(self, data: bytes, deadline: float) -> None:
        super().__init__()
        self.data = data
        self.deadline = deadline
        self.complete = True
        self.end = len(data)
        self.headers = 0

    def find(self, number: int) -> RawObject | None:
        """Object `number`, looked for in the rest of the file when the scan stopped
        short of it (one pass over the bytes: for single lookups, not in a loop)."""
        found = self.get(number)
        if found is not None or self.complete:
            return found
        self.check_time()
        header = re.compile(
            rb"(?<![0-9])0*%d" % number + WS + rb"+(\d{1,5})" + WS + rb"+obj(?![A-Za-z])"
        )
        matches = collections.deque(header.finditer(self.data, self.end), maxlen=1)
        if not matches:
            return None
        last = matches[0]
        following = _OBJ_HEADER.search(self.data, last.end(), last.end() + HEAD_WINDOW)
        end = following.start() if following is not None else len(self.data)
        return _raw_object(self.data, number, int(last[1]), last.start(), last.end(), end)

    def check_time(self) -> None:
        """Raise OutOfTime once the diagnosis's budget is spent."""
        if time.monotonic() > self.deadline:
            raise OutOfTime


def _raw_object(
    data: bytes, number: int, generation: int, start: int, body: int, end: int
) -> RawObject:
    """The object whose header starts at `start` and ends at `body`; `end` is where the
    next header starts."""
    limit = min(end, body + HEAD_WINDOW)
    keyword = _STREAM_KEYWORD.search(data, body, limit)
    if keyword is not None and data.find(b"endobj", body, keyword.start()) >= 0:
        keyword = None  # the keyword belongs to something after this object
    head_end = keyword.start() if keyword else limit
    stream_start = keyword.end() if keyword else None
    return RawObject(number, generation, start, stream_start, data, body, head_end)


def _scan(data: bytes, deadline: float) -> RawObjects:
    """The object headers of the file, at most MAX_HEADERS of them; a later header for
    a number wins (as in an incremental update)."""
    objects = RawObjects(data, deadline)
    objects.check_time()
    headers = _OBJ_HEADER.finditer(data)
    current = next(headers, None)
    while current is not None:
        if objects.headers == MAX_HEADERS:
            objects.complete, objects.end = False, current.start()
            break
        if objects.headers % _CHECK_EVERY == 0:
            objects.check_time()
        following = next(headers, None)
        end = following.start() if following is not None else len(data)
        number = int(current[1])
        objects[number] = _raw_object(
            data, number, int(current[2]), current.start(), current.end(), end
        )
        objects.headers += 1
        current = following
    return objects


@dataclass
class _Scope:
    data: bytes
    deadline: float
    objects: RawObjects | None = None


_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar(
    "pdf_damage_scope", default=None
)


class Diagnosis:
    """One failure's diagnosis of `data`: within it the headers are parsed at most once
    and every explanation gives up (None) once BUDGET_SECONDS, or `deadline` (a
    time.monotonic() value, e.g. the job's) if sooner, has passed. Nested for the same
    bytes, the outer one holds."""

    def __init__(self, data: bytes, deadline: float | None = None) -> None:
        self._data = data
        self._deadline = math.inf if deadline is None else deadline
        self._token: contextvars.Token[_Scope | None] | None = None

    def __enter__(self) -> None:
        current = _SCOPE.get()
        if current is None or current.data is not self._data:
            deadline = min(self._deadline, time.monotonic() + BUDGET_SECONDS)
            self._token = _SCOPE.set(_Scope(self._data, deadline))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _SCOPE.reset(self._token)
            self._token = None


def raw_objects(data: bytes) -> RawObjects:
    """Every object header in the file (up to MAX_HEADERS); a later header for a number
    wins (as in an incremental update). Parsed once per `Diagnosis` of these bytes;
    raises OutOfTime once its budget is spent."""
    scope = _SCOPE.get()
    if scope is None or scope.data is not data:
        return _scan(data, time.monotonic() + BUDGET_SECONDS)
    if scope.objects is None:
        scope.objects = _scan(data, scope.deadline)
    scope.objects.check_time()
    return scope.objects


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
        start = offset + len(data[offset : offset + 64]) - len(target)
        following = _OBJ_HEADER.search(data, start + header.end(), start + HEAD_WINDOW)
        stream = _raw_object(
            data,
            int(header[1]),
            int(header[2]),
            start,
            start + header.end(),
            following.start() if following is not None else len(data),
        )
        widths = stream.search(_WIDTHS)
        if widths is not None:
            values = widths[1].split()
            if len(values) != 3 or not all(v.isdigit() for v in values):
                return (
                    f"the cross-reference stream {stream.label} is damaged (its /W is "
                    f"{_quoted(b'[' + widths[1].strip() + b']')}, not three byte widths)"
                )
    return None


def length_damage(data: bytes, objects: RawObjects, only: set[int] | None = None) -> str | None:
    """The first stream (of `only`, if given) whose /Length is not a usable byte count.
    Raises OutOfTime once the diagnosis's budget is spent."""
    for index, obj in enumerate(objects.values()):
        if index % _CHECK_EVERY == 0:
            objects.check_time()
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
                if not objects.complete:
                    continue  # it may be past the headers read
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
    objects: RawObjects,
    reader: pypdf.PdfReader | None,
    holds: str = "",
) -> str | None:
    """What is wrong with object stream `number`'s /N and /First, if anything. `holds`
    follows its name in the message (", which holds it,")."""
    obj = objects.find(number)
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
    for index, obj in enumerate(objects.values()):
        if index % _CHECK_EVERY == 0:
            objects.check_time()
        if obj.search(_OBJECT_STREAM_TYPE):
            damage = object_stream_damage(obj.number, objects, reader)
            if damage:
                return damage
    return None


def structure_damage(data: bytes, reader: pypdf.PdfReader | None = None) -> str | None:
    """The first damage found in the file's structure: its cross-reference pointer, a
    stream /Length, an object stream."""
    with Diagnosis(data):
        return xref_damage(data) or stream_damage(data, reader)


_INVALID_OBJECT = re.compile(r"Invalid Elementary Object starting with b'(.+?)' @(\d+)")
_INVALID_HEX = re.compile(r"Invalid hexadecimal character (b'.+?') in hex string")


@best_effort
def _syntax_damage(message: str, data: bytes) -> str | None:
    """pypdf's syntax errors, said with the place they are in."""
    invalid = _INVALID_OBJECT.search(message)
    if invalid:
        offset = int(invalid[2])
        scanned = raw_objects(data)
        if offset >= scanned.end:
            return None  # the object it is in may be past the headers read
        objects = [o for o in scanned.values() if o.offset <= offset]
        inside = max(objects, key=lambda o: o.offset) if objects else None
        trailer = data.rfind(b"trailer", 0, offset + 1)
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
    with Diagnosis(data):
        return _failure_reason(exc, data)


@best_effort
def _self_reference_damage(data: bytes, number: int) -> str | None:
    return length_damage(data, raw_objects(data), {number})


def _failure_reason(exc: Exception, data: bytes) -> str:
    message = str(exc)
    loop = _SELF_REFERENCE.search(message)
    if loop:
        damage = _self_reference_damage(data, int(loop[1]))
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


@best_effort
def _raw_security_handler(data: bytes) -> str | None:
    """The /Filter of the trailer's /Encrypt, read from the bytes (when pypdf gave up)."""
    direct = re.search(rb"/Encrypt" + WS + rb"*<<(.{0,4000}?)>>", data[-65_536:], re.DOTALL)
    if direct is not None:
        head = direct[1]
    else:
        ref = re.search(rb"/Encrypt" + WS + rb"*" + REFERENCE, data[-65_536:])
        target = raw_objects(data).find(int(ref[1])) if ref else None
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
