"""Document validation for the adversarial-input gate: PDFs, plain text and e-mail.

A document reaches a model as text. What a person sees when they open it and what a
text extractor pulls out of it can differ a lot, and that gap is where instructions get
hidden. `analyze_pdf` reads a PDF twice, with two parsers:

* pypdf, pure Python, for the dictionary level: the cross-reference table, encryption,
  the object count, every stream's decoded size (decompression bombs), metadata (the
  Info dictionary and XMP), annotations, form-field values, embedded files and
  JavaScript wherever it hides (name tree, /OpenAction, /AA, annotation actions);
* pdfium (pypdfium2's raw API), for the page content: it walks every text object on
  every page, nested form XObjects included, and reads render mode, fill/stroke colour
  and alpha, font size and text matrix, and bounds against the page box. pdfium's text
  page gives the visible text; the characters of hidden text objects are left out.

Hidden text is a signal on its own, whatever it says: each hidden piece becomes a
`HiddenText` and a `Signal`, and the text goes, clearly delimited, into
`all_text_for_scanning` so that the injection detector reads everything a model might.

Limits are checked before the expensive work they protect: bytes before parsing,
object count and object-stream sizes before pdfium sees the file, the page count
before any page is loaded, every stream's decoded size (bounded decompression) and
each page's content size before pdfium parses the page. A refused document raises
`DocumentError` (HTTP 422) with a precise reason; nothing is written anywhere and the
pdfium handles are closed on every path.

`analyze_document` dispatches on the content type: PDF, `text/plain`, `message/rfc822`.
"""

from __future__ import annotations

import contextlib
import ctypes
import email
import email.policy
import hashlib
import html
import io
import math
import re
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from html.parser import HTMLParser
from typing import Any, Literal, NoReturn, get_args

import pypdf
import pypdfium2.raw as pdfium
from pypdf.errors import FileNotDecryptedError, LimitReachedError
from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    IndirectObject,
    NullObject,
    StreamObject,
)

from warden.errors import RequestError
from warden.guard.isolated import ChildStopped, run_isolated
from warden.guard.isolated_answer import ChildError
from warden.guard.pdf_damage import (
    OBJECT_REPR,
    Diagnosis,
    best_effort,
    describe,
    failure_reason,
    length_damage,
    object_stream_damage,
    raw_objects,
    short,
    stream_damage,
    structure_damage,
    unsupported_encryption,
    xref_damage,
)
from warden.guard.signals import Signal

Technique = Literal[
    "invisible_render_mode",
    "background_colour",
    "low_alpha",
    "tiny_font",
    "outside_page",
    "metadata",
    "annotation",
    "form_field",
    "embedded_file",
    "javascript",
]
TECHNIQUES: tuple[str, ...] = get_args(Technique)
#: techniques that are active content rather than hidden text
ACTIVE_CONTENT: frozenset[str] = frozenset({"javascript", "embedded_file"})

HIDDEN_TEXT_DETECTOR = "document.hidden_text"
ACTIVE_CONTENT_DETECTOR = "document.active_content"

#: how much hidden text a HiddenText keeps (the full text goes to all_text_for_scanning)
HIDDEN_TEXT_PREVIEW = 500

# Thresholds of the content-level detectors.
TINY_FONT_PT = 2.0  # effective glyph height under this is unreadable
SQUEEZED_PT = 1.0  # effective glyph width scale under this: squeezed flat (Tz, matrix)
LOW_ALPHA = 0.1  # fill/stroke alpha at or under this is near-transparent
COLOUR_DISTANCE = 0.06  # normalised RGB distance (0..1) of painted colour to background
COLOUR_CERTAIN = 0.015  # at or under this the colour match counts as exact
OUTSIDE_FRACTION = 0.1  # at most this share of the text box inside the page box
PROSE_WORDS = 8  # metadata longer than a label: this many words ...
PROSE_CHARS = 100  # ... or this many characters

_WHITE = (255, 255, 255)
_MAX_COLOUR_DISTANCE = math.sqrt(3 * 255**2)

# pdfium is not thread-safe: every call into it runs under this lock.
_PDFIUM_LOCK = threading.Lock()


@dataclass(frozen=True)
class DocumentLimits:
    """What a document may cost. Each limit is checked before the work it protects."""

    max_bytes: int = 10_000_000
    max_pages: int = 200
    #: indirect objects in the cross-reference table
    max_objects: int = 200_000
    #: visible plus hidden text, in characters
    max_text_chars: int = 2_000_000
    #: wall-clock budget, checked between steps (a single pdfium call is not interrupted)
    max_seconds: float = 10.0
    #: one stream, decoded (decompression bombs)
    max_stream_bytes: int = 50_000_000
    #: all streams together, decoded
    max_decoded_bytes: int = 200_000_000
    #: content one page makes pdfium parse: its content streams plus the form XObjects
    #: it draws, counted once per use (a small stream drawn 10,000 times is a bomb too)
    max_page_content_bytes: int = 10_000_000
    #: page objects walked across the whole document
    max_page_objects: int = 500_000


class DocumentError(RequestError):
    """The document cannot be analysed: refused with a precise reason (HTTP 422)."""

    code = "document.invalid"
    http_status = 422


@dataclass(frozen=True)
class HiddenText:
    """Text a person does not see (or content that is not text at all, for active content),
    grouped per technique and page."""

    technique: Technique
    #: 1-based page number; None for document-level places (metadata, name trees)
    page: int | None
    #: the hidden text, at most HIDDEN_TEXT_PREVIEW characters
    text: str
    #: what was found where; never the full text
    detail: str
    score: float = 1.0
    #: length of the full hidden text
    chars: int = 0


@dataclass
class DocumentReport:
    content_type: str
    pages: int
    #: what a person sees, page by page, pages joined with form feeds
    visible_text: str
    hidden: list[HiddenText]
    signals: list[Signal]
    #: visible text, then every hidden piece and all other non-page text, delimited
    all_text_for_scanning: str
    sha256: str
    #: names of embedded files (PDF) or attachments (e-mail)
    attachments: list[str] = field(default_factory=list)

    def as_record(self) -> dict[str, Any]:
        """A summary for the audit record: counts, hashes and findings, no document text."""
        return {
            "content_type": self.content_type,
            "pages": self.pages,
            "sha256": self.sha256,
            "visible_chars": len(self.visible_text),
            "attachments": list(self.attachments),
            "hidden": [
                {
                    "technique": h.technique,
                    "page": h.page,
                    "detail": h.detail,
                    "score": h.score,
                    "chars": h.chars,
                }
                for h in self.hidden
            ],
            "signals": [s.as_record() for s in self.signals],
        }


# --------------------------------------------------------------------------- helpers


class _Job:
    """Per-call state: names for messages, limits, the deadline and the decode budget."""

    def __init__(self, name: str, field_path: str | None, limits: DocumentLimits) -> None:
        self.name = name
        self.field = field_path if field_path is not None else name
        self.limits = limits
        self.deadline = time.monotonic() + limits.max_seconds
        self.decoded_total = 0

    def fail(self, code: str, reason: str) -> NoReturn:
        raise DocumentError(f"{self.name}: {reason}", code=f"document.{code}", field=self.field)

    def check_time(self, doing: str) -> None:
        if time.monotonic() > self.deadline:
            self.fail(
                "timeout",
                f"analysis took longer than {self.limits.max_seconds:g} s (stopped while "
                f"{doing}); the document is too complex to check",
            )

    def add_decoded(self, size: int, what: str) -> None:
        limits = self.limits
        if size > limits.max_stream_bytes:
            self.fail(
                "too_large",
                f"{what} decompresses to more than {limits.max_stream_bytes:,} bytes "
                "(decompression bomb?)",
            )
        self.decoded_total += size
        if self.decoded_total > limits.max_decoded_bytes:
            self.fail(
                "too_large",
                f"streams decompress to more than {limits.max_decoded_bytes:,} bytes in total",
            )


@dataclass
class _Finding:
    technique: Technique
    page: int | None
    text: str
    where: str
    score: float


def _is_prose(text: str) -> bool:
    text = text.strip()
    return len(text.split()) >= PROSE_WORDS or len(text) >= PROSE_CHARS


_TAG = re.compile(r"<[^>]*>")


def _strip_markup(text: str) -> str:
    """Text of an XML/XHTML fragment without an XML parser (no entity expansion)."""
    return html.unescape(_TAG.sub(" ", text))


def _sniff(data: bytes) -> str:
    head = data[:64]
    signatures: list[tuple[bytes, str]] = [
        (b"\x89PNG", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"GIF8", "a GIF image"),
        (b"PK\x03\x04", "a ZIP archive (an Office document?)"),
        (b"\xd0\xcf\x11\xe0", "an old Microsoft Office document"),
        (b"{\\rtf", "an RTF document"),
        (b"II*\x00", "a TIFF image"),
        (b"MM\x00*", "a TIFF image"),
        (b"\x1f\x8b", "a gzip file"),
    ]
    for magic, kind in signatures:
        if head.startswith(magic):
            return kind
    lowered = head.lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    if lowered.startswith(b"<?xml"):
        return "an XML document"
    if not data:
        return "an empty file"
    try:
        data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return "binary data"
    return "text"


# --------------------------------------------------------------------------- PDF: entry


def analyze_pdf(
    data: bytes,
    *,
    name: str = "document",
    field: str | None = None,
    limits: DocumentLimits = DocumentLimits(),
) -> DocumentReport:
    """Validate a PDF and report its visible text, its hidden text and active content.

    `name` starts every error message; `field` (default: `name`) is the request field
    the document came in, set on the error. Raises `DocumentError` only; pure otherwise.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"analyze_pdf needs bytes, not {type(data).__name__}")
    data = bytes(data)
    job = _Job(name, field, limits)
    _check_envelope(data, job)
    try:  # pdfium cannot be interrupted: a child that can be (`warden.guard.isolated`)
        answer = run_isolated(_read_in_child, job.deadline, quiet=_PDFIUM_LOCK, args=(data, job))
    except DocumentError as exc:  # rebuilt from what the caller knows, never taken as sent
        raise _refusal_of_child(exc, job) from None
    except (ChildError, MemoryError, RecursionError) as exc:  # did not come back as itself
        job.fail("malformed", f"malformed PDF ({short(_said(exc), 160)})")
    except ChildStopped as stopped:
        if stopped.timed_out:
            job.fail(
                "timeout",
                f"analysis took longer than {limits.max_seconds:g} s and was stopped; "
                "the document is too complex to check",
            )
        job.fail(  # what pdfium does when an allocation fails under the child's cap
            "too_large",
            "the PDF needs more memory than allowed to read, or crashed the PDF reader "
            f"(the analysis {stopped})",
        )

    return _report_of_child(answer, data, job)


#: the most findings (hidden pieces, signals, attachment names) a report may carry, and
#: the longest text of one; far above what the analysis produces (it groups findings)
_MAX_FINDINGS = 10_000
_MAX_FINDING_CHARS = 4_000


def _said(exc: BaseException) -> str:
    """An exception's message, bounded before it is formatted (it came from the child)."""
    args = exc.args
    first = args[0] if args else ""
    return first[:_MAX_FINDING_CHARS] if type(first) is str else type(exc).__name__


def _refusal_of_child(exc: DocumentError, job: _Job) -> DocumentError:
    """The child's refusal as the caller states it: a known code, a bounded message,
    the caller's own field (a taken-over child could set any code, status or size)."""
    code = exc.code if type(exc.code) is str and _DOCUMENT_CODE.fullmatch(exc.code) else None
    message = _said(exc)
    if code is None or not message.startswith(f"{job.name}: "):
        message = f"{job.name}: malformed PDF (the analysis answered a refusal that does not hold)"
        code = "document.malformed"
    return DocumentError(message, code=code, field=job.field)


#: the shape of the codes `_Job.fail` gives (`document.too_large`, `document.timeout`, ...)
_DOCUMENT_CODE = re.compile(r"document\.[a-z_]{1,40}")


def _report_of_child(answer: object, data: bytes, job: _Job) -> DocumentReport:
    """The child's report, if it is one that holds: exact types, findings and texts within
    what the analysis can produce, the hash of the bytes the caller sent. The child has
    just parsed an attacker's file; were the PDF library taken over, its answer is
    anything the unpickler lets through (a shared 1 MB string listed a million times)."""
    limits = job.limits
    text_cap = 2 * limits.max_text_chars + 1_000_000

    def text(value: object, cap: int = _MAX_FINDING_CHARS) -> bool:
        return type(value) is str and len(value) <= cap

    def optional_int(value: object) -> bool:
        return value is None or type(value) is int

    def score(value: object) -> bool:
        return type(value) in (float, int) and 0.0 <= value <= 1.0  # type: ignore[operator]

    report = answer
    ok = (
        type(report) is DocumentReport
        and report.content_type == "application/pdf"
        and type(report.pages) is int
        and 0 < report.pages <= limits.max_pages
        and text(report.visible_text, text_cap)
        and text(report.all_text_for_scanning, text_cap)
        and report.sha256 == hashlib.sha256(data).hexdigest()
        and all(
            type(items) is list and len(items) <= _MAX_FINDINGS
            for items in (report.hidden, report.signals, report.attachments)
        )
        and all(text(a) for a in report.attachments)
        and all(
            type(h) is HiddenText
            and h.technique in TECHNIQUES
            and optional_int(h.page)
            and text(h.text)
            and text(h.detail)
            and score(h.score)
            and type(h.chars) is int
            for h in report.hidden
        )
        and all(
            type(s) is Signal
            and text(s.detector, 100)
            and text(s.name, 200)
            and score(s.score)
            and s.surface == "document"
            and text(s.detail)
            and all(optional_int(v) for v in (s.start, s.end, s.chunk, s.page))
            for s in report.signals
        )
    )
    if not ok:
        job.fail("malformed", "malformed PDF (the analysis answered a report that does not hold)")
    assert isinstance(report, DocumentReport)
    return report


def _read_in_child(data: bytes, job: _Job) -> DocumentReport:
    global _PDFIUM_LOCK
    _PDFIUM_LOCK = threading.Lock()  # the parent's was held at the fork
    return _read(data, job)


def _read(data: bytes, job: _Job) -> DocumentReport:
    """The analysis proper; any failure is a DocumentError."""
    limits = job.limits
    try:
        with pypdf.apply_configuration(
            zlib_maximum_output_length=limits.max_stream_bytes,
            lzw_maximum_output_length=limits.max_stream_bytes,
            run_length_maximum_output_length=limits.max_stream_bytes,
            brotli_maximum_output_length=limits.max_stream_bytes,
            jbig2_maximum_output_length=limits.max_stream_bytes,
            stream_decoding_work_maximum_length=limits.max_stream_bytes,
            array_based_stream_maximum_output_length=limits.max_stream_bytes,
            image_maximum_buffer_size=limits.max_stream_bytes,
            form_fields_maximum_entries=limits.max_objects,
            xmp_maximum_input_length=min(limits.max_stream_bytes, 5_000_000),
        ):
            return _analyze_pdf(data, job)
    except DocumentError:
        raise
    except MemoryError:
        job.fail("too_large", "the PDF needs more memory than allowed to read")
    except RecursionError:
        job.fail("malformed", "malformed PDF (objects nested too deeply)")
    except Exception as exc:
        # pypdf names objects with their Python address: not part of a stable message
        reason = short(OBJECT_REPR.sub(r"object \1 \2", str(exc)) or type(exc).__name__, 160)
        if _caused_by_limit(exc):
            job.fail("too_large", f"a resource limit was reached while reading the PDF ({reason})")
        with Diagnosis(data, job.deadline):
            job.fail("malformed", failure_reason(exc, data))


def _caused_by_limit(exc: BaseException) -> bool:
    """A size limit (not a reference loop, which pypdf also reports as a limit)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        text = str(seen)
        if "loop" in text or "self reference" in text:
            return False
        if isinstance(seen, LimitReachedError) or "Limit reached" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


#: dictionaries and arrays nested directly in one another, more than pdfium reads (64)
MAX_NESTING = 100
#: a run of opening brackets, each maybe after a key: one match per run (possessive, so
#: the scan stays linear in the file size)
_OPENERS = re.compile(rb"(?:(?:<<|\[)\s*+(?:/[^\s/<>\[\]()%{}]*+\s*+)?+){2,}+")


def _deep_nesting(data: bytes) -> int | None:
    """Offset of a run of more than MAX_NESTING nested openers, or None."""
    for run in _OPENERS.finditer(data):
        text = run.group()
        if text.count(b"<<") + text.count(b"[") > MAX_NESTING:
            return run.start()
    return None


def _check_envelope(data: bytes, job: _Job) -> None:
    limits = job.limits
    if len(data) > limits.max_bytes:
        job.fail("too_large", f"{len(data):,} bytes, more than the limit of {limits.max_bytes:,}")
    if not data:
        job.fail("not_pdf", "not a PDF (the file is empty)")
    if b"%PDF-" not in data[:1024]:
        job.fail("not_pdf", f"not a PDF (no %PDF- header; the bytes look like {_sniff(data)})")
    if b"%%EOF" not in data[-1024:]:
        job.fail(
            "malformed",
            "malformed PDF (truncated: no %%EOF marker at the end; was the upload cut off?)",
        )
    nested = _deep_nesting(data)
    if nested is not None:
        # pypdf would recurse until Python's recursion limit and then re-read the file
        # object by object, failing the same way each time (seconds per megabyte)
        job.fail(
            "malformed",
            f"malformed PDF (dictionaries or arrays nested more than {MAX_NESTING} levels "
            f"deep at byte {nested:,})",
        )


def _analyze_pdf(data: bytes, job: _Job) -> DocumentReport:
    reader = _open_reader(data, job)
    _check_object_streams(reader, job)
    # pdfium reads the page count from the page tree root without loading any page.
    # The lock is held only while pdfium works, not during the pure-Python steps.
    with _PDFIUM_LOCK, _PdfiumDocument(data, job) as doc:
        page_count = doc.page_count()
    if page_count > job.limits.max_pages:
        job.fail(
            "too_many_pages",
            f"{page_count:,} pages, more than the limit of {job.limits.max_pages:,}",
        )
    if page_count == 0:
        job.fail("malformed", "malformed PDF (no pages)")
    # Dictionary level, with pypdf.
    pages = _walk_page_tree(reader, job, page_count)
    scan = _scan_objects(reader, job, pages)
    operations = 0
    for page in pages:
        operations += _check_page_content(reader, job, page, scan)
        if operations > job.limits.max_page_objects:
            job.fail(
                "too_large",
                f"more than {job.limits.max_page_objects:,} page objects "
                f"(reached on page {page.number})",
            )
    _check_type3_fonts(job, pages, scan)
    findings = list(scan.findings)
    findings += _annotation_findings(pages, scan)
    findings += _form_findings(reader, job, scan)
    meta_findings, meta_text = _metadata_findings(reader, job)
    findings += meta_findings
    # Page content, page by page, with pdfium.
    page_texts: list[str] = []
    walked = 0
    chars = 0
    with _PDFIUM_LOCK, _PdfiumDocument(data, job) as doc:
        for index in range(page_count):
            job.check_time(f"reading page {index + 1}")
            result = doc.analyse_page(index, job, walked, pages[index])
            walked = result.objects_walked
            page_texts.append(result.visible_text)
            findings += result.findings
            chars += len(result.visible_text) + sum(len(f.text) for f in result.findings)
            if chars > job.limits.max_text_chars:
                job.fail(
                    "too_large",
                    f"more than {job.limits.max_text_chars:,} characters of text "
                    f"(reached on page {index + 1})",
                )
    return _build_report(data, page_count, page_texts, findings, meta_text, scan, job)


def _open_reader(data: bytes, job: _Job) -> pypdf.PdfReader:
    try:
        reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
    except NotImplementedError as exc:
        job.fail("encrypted", unsupported_encryption(exc, None, data))
    objects = sum(len(entries) for entries in reader.xref.values()) + len(reader.xref_objStm)
    if objects > job.limits.max_objects:
        job.fail(
            "too_large", f"{objects:,} objects, more than the limit of {job.limits.max_objects:,}"
        )
    if reader.is_encrypted:
        try:
            decrypted = reader.decrypt("")
        except (NotImplementedError, pypdf.errors.DependencyError) as exc:
            job.fail("encrypted", unsupported_encryption(exc, reader, data))
        if not decrypted:
            job.fail("encrypted", "encrypted PDF (needs a password); upload it unencrypted")
    reference = reader.trailer.get("/Root")
    try:
        root = reference.get_object() if isinstance(reference, IndirectObject) else reference
    except FileNotDecryptedError:
        job.fail("encrypted", "encrypted PDF (needs a password); upload it unencrypted")
    except (LimitReachedError, RecursionError, MemoryError):
        raise
    except Exception as exc:  # e.g. in an object stream pypdf cannot read
        with Diagnosis(data, job.deadline):  # the headers are parsed once for both
            job.fail(
                "malformed", _catalog_damage(reader, data, reference) or failure_reason(exc, data)
            )
    if root is None or isinstance(root, NullObject):
        job.fail(
            "malformed",
            _catalog_damage(reader, data, reference) or "malformed PDF (no document catalog)",
        )
    if not isinstance(root, DictionaryObject):
        job.fail(
            "malformed",
            _catalog_damage(reader, data, reference)
            or f"the document catalog{_ref_label(reference)} is not a dictionary "
            f"(it is {describe(root)})",
        )
    _check_page_tree_root(root, job)
    return reader


def _ref_label(reference: Any) -> str:
    return (
        f" (object {reference.idnum} {reference.generation})"
        if isinstance(reference, IndirectObject)
        else ""
    )


@best_effort
def _catalog_damage(reader: pypdf.PdfReader, data: bytes, reference: Any) -> str | None:
    """Why the trailer's /Root does not lead to a catalog: no /Root, a reference to an
    object that is not there, or one in a damaged object stream."""
    if reference is None or isinstance(reference, NullObject):
        return "the trailer has no /Root entry, so the document catalog cannot be found"
    if not isinstance(reference, IndirectObject):
        return None
    catalog = f"the document catalog (object {reference.idnum} {reference.generation})"
    container = reader.xref_objStm.get(reference.idnum)
    if container is not None:
        damage = object_stream_damage(container[0], raw_objects(data), reader, ", which holds it,")
        return f"{catalog} cannot be read: {damage}" if damage else None
    in_table = any(reference.idnum in entries for entries in reader.xref.values())
    if not in_table and raw_objects(data).find(reference.idnum) is None:
        return (
            f"the trailer's /Root refers to object {reference.idnum} {reference.generation}, "
            "which is not in the file"
        )
    return None


def _check_page_tree_root(root: DictionaryObject, job: _Job) -> None:
    """The catalog's /Pages, checked before pdfium opens the file (pdfium says only
    "corrupted" when it is missing)."""
    reference = root.get("/Pages")
    if reference is None or isinstance(reference, NullObject):
        job.fail("malformed", "the document catalog has no /Pages entry (the page tree)")
    top = reference.get_object() if isinstance(reference, IndirectObject) else reference
    if top is None or isinstance(top, NullObject):
        job.fail(
            "malformed",
            f"the document catalog's /Pages refers to object {reference.idnum} "
            f"{reference.generation}, which is not in the file",
        )
    if not isinstance(top, DictionaryObject):
        job.fail(
            "malformed",
            f"the document catalog's /Pages (the page tree) is not a dictionary "
            f"(it is {describe(top)})",
        )


@best_effort
def _page_damage(data: bytes, page: _Page | None) -> str | None:
    """What is wrong with a page pdfium cannot load: its node in the page tree, or the
    /Length of the page dictionary or of one of its content streams."""
    if page is None:
        return None
    if page.problems:
        return page.problems[0]
    numbers = {page.ref} if page.ref is not None else set()
    contents = page.node.get("/Contents")
    with contextlib.suppress(Exception):
        if isinstance(contents, IndirectObject):
            numbers.add(contents.idnum)
            contents = contents.get_object()
        if isinstance(contents, ArrayObject):
            numbers.update(c.idnum for c in contents[:1000] if isinstance(c, IndirectObject))
    return length_damage(data, raw_objects(data), numbers)


def _catalog(reader: pypdf.PdfReader) -> DictionaryObject:
    """The document catalog, checked to be a dictionary by _open_reader."""
    root = reader.trailer["/Root"].get_object()
    assert isinstance(root, DictionaryObject)
    return root


def _check_object_streams(reader: pypdf.PdfReader, job: _Job) -> None:
    """pdfium decodes object streams as soon as it needs an object inside one (the page
    tree root, for the page count), so their sizes are checked first."""
    containers = sorted({stream_number for stream_number, _ in reader.xref_objStm.values()})
    for number in containers:
        job.check_time("checking object streams")
        stream = reader.get_object(number)
        if isinstance(stream, StreamObject):
            job.add_decoded(_decoded_size(stream, job), f"object stream {number}")


# --------------------------------------------------------------------------- streams


_IMAGE_CODECS = frozenset(
    {"/DCTDecode", "/DCT", "/JPXDecode", "/JBIG2Decode", "/CCITTFaxDecode", "/CCF"}
)
_FLATE = frozenset({"/FlateDecode", "/Fl"})
_SHRINKING = frozenset({"/ASCIIHexDecode", "/AHx", "/ASCII85Decode", "/A85", "/Crypt"})


def _filters(stream: StreamObject) -> list[str]:
    value = stream.get("/Filter")
    if isinstance(value, IndirectObject):
        value = value.get_object()
    if value is None or isinstance(value, NullObject):
        return []
    if isinstance(value, ArrayObject):
        return [str(v.get_object() if isinstance(v, IndirectObject) else v) for v in value]
    return [str(value)]


def _raw_bytes(stream: StreamObject) -> bytes:
    raw = getattr(stream, "_data", b"")
    return raw if isinstance(raw, bytes) else bytes(raw or b"")


def _decoded_size(stream: StreamObject, job: _Job) -> int:
    """How many bytes a stream decodes to, without holding them (FlateDecode) or with
    pypdf's bounded decoders (the rest). Undecodable streams count what decoded."""
    filters = _filters(stream)
    raw = _raw_bytes(stream)
    if not filters:
        return len(raw)
    if filters[0] in _FLATE:
        return _inflated_size(raw, job.limits.max_stream_bytes)
    if all(f in _SHRINKING for f in filters):
        return len(raw)
    if any(f in _IMAGE_CODECS for f in filters) and not any(f in _FLATE for f in filters):
        return 0  # image codecs: decoded only when rendering, which we never do
    try:
        return len(stream.get_data())
    except LimitReachedError:
        return job.limits.max_stream_bytes + 1
    except Exception:
        return 0


def _inflated_size(raw: bytes, cap: int) -> int:
    """Size of zlib/deflate data once inflated, counted in 1 MB chunks, stopping past cap
    or at the first error (pdfium keeps what decoded up to an error, so that counts)."""
    total = 0
    for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):
        inflater = zlib.decompressobj(wbits)
        pending = raw
        chunk = 1 << 20
        total = 0
        try:
            while True:
                out = inflater.decompress(pending, chunk)
                total += len(out)
                if total > cap:
                    return total
                pending = inflater.unconsumed_tail
                if inflater.eof or (not pending and len(out) < chunk):
                    break
        except zlib.error:
            if total == 0 and wbits > 0:
                continue  # no zlib header: try raw deflate
        return total
    return total


def _stream_text(value: Any, job: _Job, limit: int = 200_000) -> str:
    """A PDF text value that may be a string or a stream (e.g. /JS), as text."""
    value = value.get_object() if isinstance(value, IndirectObject) else value
    if isinstance(value, StreamObject):
        try:
            raw = value.get_data()
        except LimitReachedError:
            job.fail("too_large", "a script stream is too large to check")
        except Exception:
            return ""
        return _decode_pdf_bytes(raw[:limit])
    return _pdf_text(value)[:limit]


def _pdf_text(value: Any) -> str:
    value = value.get_object() if isinstance(value, IndirectObject) else value
    if value is None or isinstance(value, NullObject):
        return ""
    if isinstance(value, bytes):
        return _decode_pdf_bytes(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, ArrayObject):
        return " ".join(_pdf_text(v) for v in value)
    return ""


def _decode_pdf_bytes(raw: bytes) -> str:
    if raw.startswith((b"\xfe\xff", b"\xff\xfe")):
        return raw.decode("utf-16", errors="replace")
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8", errors="replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


# --------------------------------------------------------------------------- page tree


@dataclass
class _Page:
    number: int  # 1-based
    node: DictionaryObject
    ref: int | None  # object number of the page dictionary
    resources: DictionaryObject | None
    box: tuple[float, float, float, float]  # visible box (crop box within media box)
    #: what the page tree walk found wrong (a page pdfium cannot load is explained by it)
    problems: list[str] = field(default_factory=list)


def _rect(value: Any) -> tuple[float, float, float, float] | None:
    value = value.get_object() if isinstance(value, IndirectObject) else value
    if not isinstance(value, ArrayObject) or len(value) != 4:
        return None
    try:
        numbers: list[float] = []
        for v in value:
            number = v.get_object() if isinstance(v, IndirectObject) else v
            if not isinstance(number, int | float):
                return None
            numbers.append(float(number))
        x0, y0, x1, y1 = numbers
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        return None
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def _intersect(
    a: tuple[float, float, float, float], b: tuple[float, float, float, float]
) -> tuple[float, float, float, float] | None:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    if x0 >= x1 or y0 >= y1:
        return None
    return (x0, y0, x1, y1)


def _walk_page_tree(reader: pypdf.PdfReader, job: _Job, page_count: int) -> list[_Page]:
    """The leaves of the page tree in order, with inherited resources and boxes, walked
    iteratively with a visited set and a bound (never pypdf's unbounded flattening)."""
    root = _catalog(reader)
    top = root.get("/Pages")
    top_ref = top.idnum if isinstance(top, IndirectObject) else None
    top = top.get_object() if isinstance(top, IndirectObject) else top
    if not isinstance(top, DictionaryObject):
        job.fail("malformed", "malformed PDF (no page tree)")
    pages: list[_Page] = []
    seen: set[int] = set()
    #: node -> the node that first listed it, to tell a loop from a page listed twice
    parent_of: dict[int, int | None] = {}
    #: what is wrong in the tree, said only if pypdf and pdfium then disagree on it
    problems: list[str] = []
    letter = (0.0, 0.0, 612.0, 792.0)
    # (node, ref, parent ref, inherited resources, inherited media box, inherited crop box)
    stack: list[tuple[Any, int | None, int | None, Any, Any, Any]] = [
        (top, top_ref, None, None, None, None)
    ]
    visits = 0
    while stack:
        entry, ref, parent, resources, media, crop = stack.pop()
        visits += 1
        if visits % 256 == 0:
            job.check_time("walking the page tree")
        if visits > job.limits.max_objects:
            job.fail("malformed", "malformed PDF (page tree too large or cyclic)")
        if ref is not None:
            if ref in seen:
                if len(problems) < 4:
                    problems.append(_revisit(ref, parent, parent_of))
                continue
            seen.add(ref)
            parent_of[ref] = parent
        node = entry.get_object() if isinstance(entry, IndirectObject) else entry
        if not isinstance(node, DictionaryObject):
            continue
        resources = node.get("/Resources", resources)
        media = node.get("/MediaBox", media)
        crop = node.get("/CropBox", crop)
        kids = node.get("/Kids")
        kids = kids.get_object() if isinstance(kids, IndirectObject) else kids
        is_leaf = node.get("/Type") == "/Page" or not isinstance(kids, ArrayObject)
        if is_leaf:
            if node.get("/Type") == "/Pages" and "/Kids" in node and len(problems) < 4:
                label = f"page tree node {ref}" if ref is not None else "a page tree node"
                problems.append(
                    f"{label} has a /Kids that is not an array (it is {describe(kids)})"
                )
            media_box = _rect(media) or letter
            crop_box = _rect(crop) or media_box
            box = _intersect(media_box, crop_box) or media_box
            res = resources.get_object() if isinstance(resources, IndirectObject) else resources
            pages.append(
                _Page(
                    number=len(pages) + 1,
                    node=node,
                    ref=ref,
                    resources=res if isinstance(res, DictionaryObject) else None,
                    box=box,
                )
            )
            if len(pages) > job.limits.max_pages:
                job.fail(
                    "too_many_pages",
                    f"more than {job.limits.max_pages:,} pages in the page tree "
                    f"(the limit is {job.limits.max_pages:,})",
                )
            continue
        assert isinstance(kids, ArrayObject)
        for kid in reversed(kids):  # resolved when popped, not all at once
            kid_ref = kid.idnum if isinstance(kid, IndirectObject) else None
            stack.append((kid, kid_ref, ref, resources, media, crop))
    if len(pages) != page_count:
        if problems:
            job.fail("malformed", f"the page tree is damaged: {problems[0]}")
        noun = "page" if len(pages) == 1 else "pages"
        job.fail(
            "malformed",
            f"malformed PDF (the page tree holds {len(pages)} {noun} but its /Count "
            f"says {page_count})",
        )
    for page in pages:
        page.problems = problems
    return pages


def _revisit(ref: int, parent: int | None, parent_of: dict[int, int | None]) -> str:
    """Why the page tree reached node `ref` a second time, from `parent`."""
    lister = f"node {parent}" if parent is not None else "a node"
    ancestor, steps = parent, 0
    while ancestor is not None and steps < 10_000:
        if ancestor == ref:
            kind = "itself" if parent == ref else "one of its own ancestors"
            return f"it has a loop ({lister} lists object {ref}, {kind}, as a kid)"
        ancestor, steps = parent_of.get(ancestor), steps + 1
    return f"object {ref} is listed twice (again by {lister})"


# --------------------------------------------------------------------------- object scan


@dataclass
class _Scan:
    findings: list[_Finding] = field(default_factory=list)
    attachments: list[str] = field(default_factory=list)
    #: object number -> decoded size, for streams measured
    sizes: dict[int, int] = field(default_factory=dict)
    #: object number of a page or annotation -> page number
    page_of: dict[int, int] = field(default_factory=dict)
    #: object number -> where it is referenced from (for messages)
    referenced_as: dict[int, str] = field(default_factory=dict)
    #: object numbers of file specifications already reported
    filespecs: set[int] = field(default_factory=set)
    #: (form XObject number, nesting level, resources) -> what it costs per use
    form_costs: dict[tuple[int, int, int], _Cost] = field(default_factory=dict)
    #: form XObject number -> its own content, summarised
    form_contents: dict[int, _Content] = field(default_factory=dict)
    #: object numbers of Type3 fonts (their glyphs are content streams pdfium parses)
    type3_fonts: list[tuple[int, DictionaryObject]] = field(default_factory=list)


def _scan_objects(reader: pypdf.PdfReader, job: _Job, pages: list[_Page]) -> _Scan:
    """Every indirect object once: measure each stream's decoded size, find JavaScript
    and embedded files wherever they are, without following references."""
    scan = _Scan()
    for page in pages:
        if page.ref is not None:
            scan.page_of[page.ref] = page.number
        annots = page.node.get("/Annots")
        annots = annots.get_object() if isinstance(annots, IndirectObject) else annots
        if isinstance(annots, ArrayObject):
            for annot in annots:
                if isinstance(annot, IndirectObject):
                    scan.page_of.setdefault(annot.idnum, page.number)
    _label_catalog_references(reader, job, scan)

    numbers: list[tuple[int, int]] = []
    for generation, entries in reader.xref.items():
        numbers.extend((number, generation) for number in entries)
    numbers.extend((number, 0) for number in reader.xref_objStm)
    embedded_streams = 0
    for count, (number, generation) in enumerate(sorted(set(numbers))):
        if number == 0:
            continue
        if count % 64 == 0:
            job.check_time("scanning objects")
        try:
            obj = reader.get_object(IndirectObject(number, generation, reader))
        except (LimitReachedError, FileNotDecryptedError):
            raise
        except Exception:
            continue  # an unreadable object: pdfium will not read it either
        if isinstance(obj, StreamObject):
            kind = obj.get("/Type")
            if kind == "/EmbeddedFile":
                embedded_streams += 1
            elif obj.get("/Subtype") != "/Image" and kind != "/XRef":
                size = _decoded_size(obj, job)
                scan.sizes[number] = size
                job.add_decoded(size, f"stream {number}")
        if isinstance(obj, DictionaryObject) and obj.get("/Subtype") == "/Type3":
            scan.type3_fonts.append((number, obj))
        if isinstance(obj, DictionaryObject | ArrayObject):
            _scan_value(obj, number, reader, job, scan)
    if embedded_streams and not scan.filespecs:
        scan.attachments.append(f"({embedded_streams} unnamed embedded file stream(s))")
        scan.findings.append(
            _Finding(
                "embedded_file",
                None,
                "",
                f"{embedded_streams} embedded file stream(s) without a file specification",
                1.0,
            )
        )
    return scan


def _label_catalog_references(reader: pypdf.PdfReader, job: _Job, scan: _Scan) -> None:
    root = _catalog(reader)
    for key in ("/OpenAction", "/AA"):
        value = root.get(key)
        if isinstance(value, IndirectObject):
            scan.referenced_as[value.idnum] = f"catalog {key}"
        elif isinstance(value, DictionaryObject):
            for sub_key, sub in value.items():
                if isinstance(sub, IndirectObject):
                    scan.referenced_as[sub.idnum] = f"catalog {key} {sub_key}"
    names = root.get("/Names")
    names = names.get_object() if isinstance(names, IndirectObject) else names
    if not isinstance(names, DictionaryObject):
        return
    for tree_key in ("/JavaScript", "/EmbeddedFiles"):
        for leaf_name, value in _name_tree_leaves(names.get(tree_key), job):
            if isinstance(value, IndirectObject):
                scan.referenced_as[value.idnum] = f"/Names {tree_key} {leaf_name!r}"


def _name_tree_leaves(node: Any, job: _Job) -> Iterator[tuple[str, Any]]:
    stack: list[tuple[Any, int]] = [(node, 0)]
    seen: set[int] = set()
    visits = 0
    while stack:
        node, depth = stack.pop()
        if isinstance(node, IndirectObject):
            if node.idnum in seen:
                continue
            seen.add(node.idnum)
            node = node.get_object()
        visits += 1
        if not isinstance(node, DictionaryObject) or depth > 32 or visits > job.limits.max_objects:
            continue
        names = node.get("/Names")
        names = names.get_object() if isinstance(names, IndirectObject) else names
        if isinstance(names, ArrayObject):
            for i in range(0, len(names) - 1, 2):
                yield short(_pdf_text(names[i]), 80), names[i + 1]
        kids = node.get("/Kids")
        kids = kids.get_object() if isinstance(kids, IndirectObject) else kids
        if isinstance(kids, ArrayObject):
            stack.extend((kid, depth + 1) for kid in kids)


def _scan_value(
    top: DictionaryObject | ArrayObject,
    number: int,
    reader: pypdf.PdfReader,
    job: _Job,
    scan: _Scan,
) -> None:
    """Look through one indirect object's direct values (references are not followed:
    each indirect object is scanned on its own)."""
    stack: list[tuple[Any, str, int]] = [(top, "", 0)]
    budget = 200_000
    while stack and budget > 0:
        value, path, depth = stack.pop()
        budget -= 1
        if depth > 64:
            continue
        if isinstance(value, DictionaryObject):
            if "/JS" in value or value.get("/S") == "/JavaScript":
                _javascript_finding(value, number, path, job, scan)
            if "/EF" in value and number not in scan.filespecs:
                _filespec_finding(value, number, path, scan)
            for key, sub in value.items():
                if key == "/Parent" or isinstance(sub, IndirectObject):
                    continue
                if isinstance(sub, DictionaryObject | ArrayObject):
                    stack.append((sub, f"{path} {key}", depth + 1))
        elif isinstance(value, ArrayObject):
            for index, sub in enumerate(value):
                if isinstance(sub, DictionaryObject | ArrayObject):
                    stack.append((sub, f"{path}[{index}]", depth + 1))


def _where(number: int, path: str, scan: _Scan) -> str:
    label = scan.referenced_as.get(number)
    place = f"object {number}{path}"
    return f"{place} ({label})" if label else place


def _javascript_finding(
    action: DictionaryObject, number: int, path: str, job: _Job, scan: _Scan
) -> None:
    script = _stream_text(action.get("/JS"), job) if "/JS" in action else ""
    where = _where(number, path, scan)
    scan.findings.append(
        _Finding(
            "javascript",
            scan.page_of.get(number),
            script,
            f"JavaScript action in {where}",
            1.0,
        )
    )


def _filespec_finding(spec: DictionaryObject, number: int, path: str, scan: _Scan) -> None:
    scan.filespecs.add(number)
    name = _pdf_text(spec.get("/UF")) or _pdf_text(spec.get("/F")) or "(unnamed)"
    description = _pdf_text(spec.get("/Desc"))
    scan.attachments.append(name)
    text = name if not description else f"{name}: {description}"
    scan.findings.append(
        _Finding(
            "embedded_file",
            scan.page_of.get(number),
            text,
            f"embedded file {short(name, 60)!r} in {_where(number, path, scan)}",
            1.0,
        )
    )


# --------------------------------------------------------------------------- page content size


_DRAW_XOBJECT = re.compile(rb"/([^\s/\[\]<>(){}%]+)\s*Do\b")
_SHOW_TEXT = re.compile(rb"\bT[jJ]\b")
_NAME_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
#: XObject draws (Do) one page's content may make, forms included
MAX_DRAWS_PER_PAGE = 10_000
#: pdfium parses a form XObject's content only down to this nesting level (the page's
#: own content is level 0); it has no other guard against a form that draws itself
PDFIUM_MAX_FORM_LEVEL = 40


def _check_page_content(reader: pypdf.PdfReader, job: _Job, page: _Page, scan: _Scan) -> int:
    """What pdfium will parse for a page, before it parses any of it: the bytes of its
    content streams plus, for every form XObject drawn, the form's own content, counted
    once per draw (a small form drawn 10,000 times is a bomb too), recursively.
    Returns a rough count of the page objects it makes (text-showing operators and
    XObject draws), for the document-wide object limit."""
    contents = page.node.get("/Contents")
    if isinstance(contents, IndirectObject) and isinstance(contents.get_object(), ArrayObject):
        contents = contents.get_object()
    refs = list(contents) if isinstance(contents, ArrayObject) else [contents]
    where = f"page {page.number}"
    data = b"\n".join(_content_data(ref, job, scan, where) for ref in refs)
    cost = _content_cost(_summarise(data, job, where), page.resources, job, scan, where, 0)
    if cost.draws > MAX_DRAWS_PER_PAGE:
        job.fail(
            "too_large",
            f"page {page.number} draws more than {MAX_DRAWS_PER_PAGE:,} XObjects (form "
            "XObjects counted per use, nested forms included)",
        )
    if cost.size > job.limits.max_page_content_bytes:
        job.fail(
            "too_large",
            f"page {page.number} has {cost.size:,} bytes of content (form XObjects counted per "
            f"use), more than the limit of {job.limits.max_page_content_bytes:,}",
        )
    return cost.operations


def _content_data(ref: Any, job: _Job, scan: _Scan, where: str) -> bytes:
    size = _stream_size(ref, job, scan)
    if size > job.limits.max_page_content_bytes:
        job.fail(
            "too_large",
            f"{where} has {size:,} bytes of content, more than the limit of "
            f"{job.limits.max_page_content_bytes:,}",
        )
    stream = ref.get_object() if isinstance(ref, IndirectObject) else ref
    if not isinstance(stream, StreamObject):
        return b""
    try:
        return stream.get_data()
    except LimitReachedError:
        raise
    except Exception:
        return b""  # undecodable: pdfium gets nothing (or less) out of it either


@dataclass(frozen=True)
class _Content:
    """What one content stream holds, for costing: its size, its text-showing operators
    and the names of the XObjects it draws."""

    size: int
    operations: int
    draws: tuple[str, ...]


@dataclass(frozen=True)
class _Cost:
    """What pdfium parses for one content stream and the forms it draws, per use."""

    size: int
    operations: int
    draws: int


def _summarise(data: bytes, job: _Job, where: str) -> _Content:
    draws = _DRAW_XOBJECT.findall(data)
    if len(draws) > MAX_DRAWS_PER_PAGE:
        job.fail(
            "too_large",
            f"{where} draws {len(draws):,} XObjects, more than the limit of {MAX_DRAWS_PER_PAGE:,}",
        )
    names = tuple(
        "/"
        + _NAME_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw).decode(
            "utf-8", errors="replace"
        )
        for raw in draws
    )
    return _Content(len(data), sum(1 for _ in _SHOW_TEXT.finditer(data)), names)


def _content_cost(
    content: _Content,
    resources: Any,
    job: _Job,
    scan: _Scan,
    where: str,
    level: int,
) -> _Cost:
    """What pdfium parses for one content stream at form nesting `level` (0 for the page)
    and for the forms it draws. pdfium does not stop at a form that draws itself: it
    parses forms again on every use, down to PDFIUM_MAX_FORM_LEVEL, so a cycle is
    unrolled here the same way (memoised per form and level, so it is cheap to count
    even when it is not cheap to parse)."""
    size, operations, draws = content.size, content.operations, len(content.draws)
    if not content.draws or level >= PDFIUM_MAX_FORM_LEVEL:
        return _Cost(size, operations, draws)
    resources = resources.get_object() if isinstance(resources, IndirectObject) else resources
    xobjects = resources.get("/XObject") if isinstance(resources, DictionaryObject) else None
    xobjects = xobjects.get_object() if isinstance(xobjects, IndirectObject) else xobjects
    if not isinstance(xobjects, DictionaryObject):
        return _Cost(size, operations, draws)
    job.check_time(f"measuring the content of {where}")
    for name in content.draws:
        operations += 1
        ref = xobjects.get(name)
        if not isinstance(ref, IndirectObject):
            continue  # a stream is always an indirect object
        form = ref.get_object()
        if not isinstance(form, StreamObject) or form.get("/Subtype") != "/Form":
            continue
        inner = form.get("/Resources", resources)
        # a form without resources of its own uses its caller's: part of the key
        key = (ref.idnum, level + 1, id(inner))
        cost = scan.form_costs.get(key)
        if cost is None:
            summary = scan.form_contents.get(ref.idnum)
            if summary is None:
                data = _content_data(ref, job, scan, where)
                summary = _summarise(data, job, where)
                scan.form_contents[ref.idnum] = summary
            cost = _content_cost(summary, inner, job, scan, where, level + 1)
            scan.form_costs[key] = cost
        size += cost.size
        operations += cost.operations
        draws += cost.draws
        if size > job.limits.max_page_content_bytes or draws > MAX_DRAWS_PER_PAGE:
            break  # over a limit already: the caller refuses the page
    return _Cost(size, operations, draws)


def _check_type3_fonts(job: _Job, pages: list[_Page], scan: _Scan) -> None:
    """A Type3 font's glyphs are content streams (CharProcs), parsed by pdfium when the
    page that uses the font is loaded, each once, with the form XObjects they draw
    unrolled like a page's. A glyph without resources of its own draws from the font's
    or, without those, from the page's: every page's resources are tried then — only for
    the glyphs that draw anything (each glyph is read once)."""
    limit = job.limits.max_page_content_bytes
    for number, font in scan.type3_fonts:
        where = f"Type3 font {number}"
        procs = font.get("/CharProcs")
        procs = procs.get_object() if isinstance(procs, IndirectObject) else procs
        if not isinstance(procs, DictionaryObject):
            continue
        glyphs = []
        for glyph in list(procs.values())[:10_000]:
            job.check_time(f"measuring {where}")
            glyphs.append(_summarise(_content_data(glyph, job, scan, where), job, where))
        plain = sum(g.size for g in glyphs if not g.draws)
        drawing = [g for g in glyphs if g.draws]
        own = font.get("/Resources")
        contexts: list[Any] = [own] if own is not None else [p.resources for p in pages]
        for resources in {id(r): r for r in contexts}.values() if drawing else [None]:
            size, draws = plain, 0
            for summary in drawing:
                job.check_time(f"measuring {where}")
                cost = _content_cost(summary, resources, job, scan, where, 0)
                size += cost.size
                draws += cost.draws
                if draws > MAX_DRAWS_PER_PAGE:
                    job.fail(
                        "too_large",
                        f"the glyphs of {where} draw more than "
                        f"{MAX_DRAWS_PER_PAGE:,} XObjects (form XObjects counted per use, "
                        "nested forms included)",
                    )
            if size > limit:
                job.fail(
                    "too_large",
                    f"the glyphs of {where} have more than {limit:,} bytes "
                    "of content (form XObjects counted per use)",
                )


def _stream_size(ref: Any, job: _Job, scan: _Scan) -> int:
    if isinstance(ref, IndirectObject):
        if ref.idnum in scan.sizes:
            return scan.sizes[ref.idnum]
        obj = ref.get_object()
        if not isinstance(obj, StreamObject):
            return 0
        size = _decoded_size(obj, job)
        scan.sizes[ref.idnum] = size
        job.add_decoded(size, f"stream {ref.idnum}")
        return size
    if isinstance(ref, StreamObject):
        return _decoded_size(ref, job)
    return 0


# --------------------------------------------------------------------------- annotations, forms


_ANNOT_HIDDEN = 1 << 1
_ANNOT_NOVIEW = 1 << 5


def _annotation_hidden(annot: DictionaryObject, page: _Page | None) -> str | None:
    """Why an annotation (or widget) would not be seen, or None."""
    try:
        flags = int(annot.get("/F", 0))
    except (TypeError, ValueError):
        flags = 0
    if flags & _ANNOT_HIDDEN:
        return "flagged Hidden"
    if flags & _ANNOT_NOVIEW:
        return "flagged NoView"
    rect = _rect(annot.get("/Rect"))
    if rect is None or (rect[2] - rect[0]) * (rect[3] - rect[1]) <= 0.01:
        return "zero-size"
    if page is not None and _intersect(rect, page.box) is None:
        return "outside the page box"
    return None


def _annotation_findings(pages: list[_Page], scan: _Scan) -> list[_Finding]:
    findings: list[_Finding] = []
    skip = {"/Link", "/Widget", "/Popup"}
    for page in pages:
        annots = page.node.get("/Annots")
        annots = annots.get_object() if isinstance(annots, IndirectObject) else annots
        if not isinstance(annots, ArrayObject):
            continue
        for entry in annots[:10_000]:
            annot = entry.get_object() if isinstance(entry, IndirectObject) else entry
            if not isinstance(annot, DictionaryObject):
                continue
            subtype = str(annot.get("/Subtype", ""))
            if subtype == "/FileAttachment":
                spec_ref = annot.get("/FS")
                spec = spec_ref.get_object() if isinstance(spec_ref, IndirectObject) else spec_ref
                spec_number = spec_ref.idnum if isinstance(spec_ref, IndirectObject) else None
                if isinstance(spec, DictionaryObject) and spec_number not in scan.filespecs:
                    if spec_number is not None:
                        scan.filespecs.add(spec_number)
                    name = _pdf_text(spec.get("/UF")) or _pdf_text(spec.get("/F")) or "(unnamed)"
                    scan.attachments.append(name)
                    findings.append(
                        _Finding(
                            "embedded_file",
                            page.number,
                            name,
                            f"file attachment annotation {short(name, 60)!r}",
                            1.0,
                        )
                    )
                else:
                    # already reported via its file specification: give it the page
                    marker = f"object {spec_number} "
                    for finding in scan.findings:
                        if (
                            finding.technique == "embedded_file"
                            and finding.page is None
                            and spec_number is not None
                            and marker in finding.where + " "
                        ):
                            finding.page = page.number
            if subtype in skip:
                continue
            text = _pdf_text(annot.get("/Contents"))
            rich = _pdf_text(annot.get("/RC"))
            if rich:
                rich_text = " ".join(_strip_markup(rich).split())
                if rich_text and rich_text not in text:
                    text = f"{text}\n{rich_text}" if text else rich_text
            if not text.strip():
                continue
            hidden = _annotation_hidden(annot, page)
            kind = subtype.lstrip("/") or "annotation"
            where = f"{kind} annotation" + (f" ({hidden})" if hidden else "")
            findings.append(
                _Finding("annotation", page.number, text, where, 1.0 if hidden else 0.7)
            )
    return findings


def _form_findings(reader: pypdf.PdfReader, job: _Job, scan: _Scan) -> list[_Finding]:
    root = _catalog(reader)
    acroform = root.get("/AcroForm")
    acroform = acroform.get_object() if isinstance(acroform, IndirectObject) else acroform
    if not isinstance(acroform, DictionaryObject):
        return []
    fields = acroform.get("/Fields")
    fields = fields.get_object() if isinstance(fields, IndirectObject) else fields
    if not isinstance(fields, ArrayObject):
        return []
    findings: list[_Finding] = []
    # (field, fully qualified name, inherited field type)
    stack: list[tuple[Any, str, str]] = [(f, "", "") for f in reversed(fields)]
    seen: set[int] = set()
    visits = 0
    while stack:
        ref, parent_name, parent_type = stack.pop()
        visits += 1
        if visits % 256 == 0:
            job.check_time("reading form fields")
        if visits > job.limits.max_objects:
            break
        if isinstance(ref, IndirectObject):
            if ref.idnum in seen:
                continue
            seen.add(ref.idnum)
        node = ref.get_object() if isinstance(ref, IndirectObject) else ref
        if not isinstance(node, DictionaryObject):
            continue
        partial = _pdf_text(node.get("/T"))
        name = f"{parent_name}.{partial}" if parent_name and partial else partial or parent_name
        field_type = str(node.get("/FT", parent_type))
        kids = node.get("/Kids")
        kids = kids.get_object() if isinstance(kids, IndirectObject) else kids
        kid_fields = []
        widgets: list[tuple[DictionaryObject, int | None]] = []
        if node.get("/Subtype") == "/Widget":
            widgets.append((node, ref.idnum if isinstance(ref, IndirectObject) else None))
        if isinstance(kids, ArrayObject):
            for kid in kids:
                kid_node = kid.get_object() if isinstance(kid, IndirectObject) else kid
                if isinstance(kid_node, DictionaryObject) and "/T" not in kid_node:
                    widgets.append(
                        (kid_node, kid.idnum if isinstance(kid, IndirectObject) else None)
                    )
                else:
                    kid_fields.append(kid)
        for kid in reversed(kid_fields):
            stack.append((kid, name, field_type))
        if field_type not in ("/Tx", "/Ch"):
            continue  # buttons hold state names, signatures hold signatures
        value = _pdf_text(node.get("/V"))
        if not value.strip():
            continue
        page_number: int | None = None
        reasons: list[str] = []
        for widget, widget_number in widgets:
            if widget_number is not None and widget_number in scan.page_of:
                page_number = scan.page_of[widget_number]
            reason = _annotation_hidden(widget, None)
            if reason is None:
                reasons = []
                break
            reasons.append(reason)
        if not widgets:
            reasons = ["no widget on any page"]
        hidden = reasons[0] if reasons else None
        where = f"form field {short(name, 60)!r}" + (f" ({hidden})" if hidden else "")
        findings.append(_Finding("form_field", page_number, value, where, 1.0 if hidden else 0.6))
    return findings


# --------------------------------------------------------------------------- metadata


_DATE_KEYS = frozenset({"/CreationDate", "/ModDate", "/Trapped"})
_XMP_NOISE = re.compile(
    r"^(uuid:[0-9a-f-]+|[0-9a-f-]{30,}|\d{4}-\d\d-\d\d[T\d:.+\-Z]*|[\w.+-]+/[\w.+-]+|True|False)$",
    re.IGNORECASE,
)


def _metadata_findings(
    reader: pypdf.PdfReader, job: _Job
) -> tuple[list[_Finding], list[tuple[str, str]]]:
    """Metadata longer than a label (a sentence, an instruction) is a finding; all
    metadata text goes to the scanning text either way."""
    values: list[tuple[str, str]] = []
    info = reader.trailer.get("/Info")
    info = info.get_object() if isinstance(info, IndirectObject) else info
    if isinstance(info, DictionaryObject):
        for key, value in list(info.items())[:1000]:
            if key in _DATE_KEYS:
                continue
            text = _pdf_text(value).strip()
            if text:
                values.append((f"Info {key}", text))
    root = _catalog(reader)
    xmp = root.get("/Metadata")
    xmp = xmp.get_object() if isinstance(xmp, IndirectObject) else xmp
    if isinstance(xmp, StreamObject):
        job.check_time("reading XMP metadata")
        try:
            raw = xmp.get_data()
        except LimitReachedError:
            job.fail("too_large", "the XMP metadata stream is too large")
        except Exception:
            raw = b""
        known = {text for _, text in values}
        xml = _decode_pdf_bytes(raw[:5_000_000])
        for node in re.split(r"<[^>]*>", xml):
            text = " ".join(html.unescape(node).split())
            if not text or text in known or _XMP_NOISE.match(text):
                continue
            known.add(text)
            values.append(("XMP", text))
    findings = [
        _Finding("metadata", None, text, f"document metadata {label}", 0.6)
        for label, text in values
        if _is_prose(text)
    ]
    unflagged = [(label, text) for label, text in values if not _is_prose(text)]
    return findings, unflagged


# --------------------------------------------------------------------------- pdfium


@dataclass
class _PageResult:
    visible_text: str
    findings: list[_Finding]
    objects_walked: int


Rect = tuple[float, float, float, float]
Matrix = tuple[float, float, float, float, float, float]
_IDENTITY: Matrix = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)


def _concat(inner: Matrix, outer: Matrix) -> Matrix:
    """Matrix applying `inner` then `outer` (PDF row-vector convention)."""
    a, b, c, d, e, f = inner
    A, B, C, D, E, F = outer
    return (
        a * A + b * C,
        a * B + b * D,
        c * A + d * C,
        c * B + d * D,
        e * A + f * C + E,
        e * B + f * D + F,
    )


def _transform_rect(rect: Rect, m: Matrix) -> Rect:
    if m == _IDENTITY:
        return rect
    a, b, c, d, e, f = m
    xs, ys = [], []
    for x, y in ((rect[0], rect[1]), (rect[0], rect[3]), (rect[2], rect[1]), (rect[2], rect[3])):
        xs.append(a * x + c * y + e)
        ys.append(b * x + d * y + f)
    return (min(xs), min(ys), max(xs), max(ys))


def _colour_distance(one: tuple[int, int, int], two: tuple[int, int, int]) -> float:
    return math.dist(one, two) / _MAX_COLOUR_DISTANCE


def _fmt_colour(colour: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)


class _PdfiumDocument:
    """One pdfium document: opened on the caller's bytes, closed on every path. Use only
    under _PDFIUM_LOCK."""

    def __init__(self, data: bytes, job: _Job) -> None:
        self._data = data  # pdfium reads from this buffer: keep it alive
        self._job = job
        self._doc: Any = None
        self._f = [ctypes.c_float() for _ in range(4)]
        self._u = [ctypes.c_uint() for _ in range(4)]
        self._i = [ctypes.c_int() for _ in range(2)]
        self._m = pdfium.FS_MATRIX()

    def __enter__(self) -> _PdfiumDocument:
        doc = pdfium.FPDF_LoadMemDocument64(self._data, len(self._data), None)
        if not doc:
            error = pdfium.FPDF_GetLastError()
            if error == pdfium.FPDF_ERR_PASSWORD:
                self._job.fail(
                    "encrypted", "encrypted PDF (needs a password); upload it unencrypted"
                )
            if error == pdfium.FPDF_ERR_SECURITY:
                self._job.fail(
                    "encrypted",
                    "encrypted PDF with an unsupported security handler; upload it unencrypted",
                )
            reasons = {
                pdfium.FPDF_ERR_FILE: "file not found or could not be opened",
                pdfium.FPDF_ERR_FORMAT: "not in PDF format or corrupted",
            }
            with Diagnosis(self._data, self._job.deadline):
                self._job.fail(
                    "malformed",
                    structure_damage(self._data)
                    or f"malformed PDF (pdfium: {reasons.get(error, f'error {error}')})",
                )
        self._doc = doc
        return self

    def __exit__(self, *exc: object) -> None:
        if self._doc:
            pdfium.FPDF_CloseDocument(self._doc)
            self._doc = None

    def page_count(self) -> int:
        return int(pdfium.FPDF_GetPageCount(self._doc))

    def analyse_page(
        self, index: int, job: _Job, walked: int, known: _Page | None = None
    ) -> _PageResult:
        """Page `index` read by pdfium; `known` is pypdf's view of it, to explain a page
        pdfium cannot load."""
        page = pdfium.FPDF_LoadPage(self._doc, index)
        if not page:
            with Diagnosis(self._data, job.deadline):  # the headers are parsed once for all
                damage = _page_damage(self._data, known)
                if damage:
                    job.fail("malformed", f"page {index + 1} cannot be read: {damage}")
                # damage elsewhere can break a later page (pdfium reads on from a bad /Length)
                damage = stream_damage(self._data, None) or xref_damage(self._data)
                if damage:
                    job.fail(
                        "malformed",
                        f"page {index + 1} cannot be read; the file is damaged: {damage}",
                    )
                job.fail("malformed", f"malformed PDF (page {index + 1} cannot be read)")
        try:
            textpage = pdfium.FPDFText_LoadPage(page)
            if not textpage:
                job.fail(
                    "malformed", f"malformed PDF (the text of page {index + 1} cannot be read)"
                )
            try:
                return self._analyse(page, textpage, index + 1, job, walked)
            finally:
                pdfium.FPDFText_ClosePage(textpage)
        finally:
            pdfium.FPDF_ClosePage(page)

    # -- reading one object

    def _bounds(self, obj: Any) -> Rect | None:
        f = self._f
        if not pdfium.FPDFPageObj_GetBounds(
            obj, ctypes.byref(f[0]), ctypes.byref(f[1]), ctypes.byref(f[2]), ctypes.byref(f[3])
        ):
            return None
        return (f[0].value, f[1].value, f[2].value, f[3].value)

    def _matrix(self, obj: Any) -> Matrix:
        m = self._m
        if not pdfium.FPDFPageObj_GetMatrix(obj, ctypes.byref(m)):
            return _IDENTITY
        return (m.a, m.b, m.c, m.d, m.e, m.f)

    def _colour(self, obj: Any, stroke: bool = False) -> tuple[tuple[int, int, int], float] | None:
        u = self._u
        getter = pdfium.FPDFPageObj_GetStrokeColor if stroke else pdfium.FPDFPageObj_GetFillColor
        if not getter(
            obj, ctypes.byref(u[0]), ctypes.byref(u[1]), ctypes.byref(u[2]), ctypes.byref(u[3])
        ):
            return None
        return (u[0].value, u[1].value, u[2].value), u[3].value / 255.0

    def _object_text(self, obj: Any, textpage: Any) -> str:
        size = pdfium.FPDFTextObj_GetText(obj, textpage, None, 0)
        if size <= 2:
            return ""
        buffer = (ctypes.c_ushort * (size // 2))()
        pdfium.FPDFTextObj_GetText(obj, textpage, buffer, size)
        return bytes(buffer).decode("utf-16-le", errors="replace").rstrip("\x00")

    # -- the page

    def _analyse(
        self, page: Any, textpage: Any, number: int, job: _Job, walked: int
    ) -> _PageResult:
        box_struct = pdfium.FS_RECTF()
        if pdfium.FPDF_GetPageBoundingBox(page, ctypes.byref(box_struct)):
            box = (
                min(box_struct.left, box_struct.right),
                min(box_struct.bottom, box_struct.top),
                max(box_struct.left, box_struct.right),
                max(box_struct.bottom, box_struct.top),
            )
        else:
            box = (0.0, 0.0, 612.0, 792.0)
        # Things drawn so far that text could sit on: (rect, colour or None if unknown).
        backdrops: list[tuple[Rect, tuple[int, int, int] | None]] = []
        backdrop_colours: set[tuple[int, int, int]] = {_WHITE}
        hidden: list[tuple[Any, Technique, float, str]] = []

        # Depth-first over the page's objects and nested form XObjects, in paint order.
        count = pdfium.FPDFPage_CountObjects(page)
        # (page or form object, is a form, object count, next index, matrix, group alpha).
        # pdfium hands a form's graphics state (alpha included) down to the objects in it,
        # so alphas combine with min(), not a product, to avoid counting one alpha twice.
        frames: list[tuple[Any, bool, int, int, Matrix, float]] = [
            (page, False, count, 0, _IDENTITY, 1.0)
        ]
        limit = job.limits.max_page_objects
        while frames:
            container, is_form, total, position, parent, group_alpha = frames.pop()
            if position >= total:
                continue
            frames.append((container, is_form, total, position + 1, parent, group_alpha))
            walked += 1
            if walked > limit:
                job.fail(
                    "too_large",
                    f"more than {limit:,} page objects (reached on page {number})",
                )
            if walked % 512 == 0:
                job.check_time(f"reading page {number}")
            if is_form:
                obj = pdfium.FPDFFormObj_GetObject(container, position)
            else:
                obj = pdfium.FPDFPage_GetObject(container, position)
            if not obj:
                continue
            kind = pdfium.FPDFPageObj_GetType(obj)
            if kind == pdfium.FPDF_PAGEOBJ_TEXT:
                verdict = self._judge_text(
                    obj, parent, group_alpha, box, backdrops, backdrop_colours
                )
                if verdict is not None:
                    hidden.append((obj, *verdict))
            elif kind == pdfium.FPDF_PAGEOBJ_PATH:
                self._note_path(obj, parent, group_alpha, backdrops, backdrop_colours)
            elif kind in (pdfium.FPDF_PAGEOBJ_IMAGE, pdfium.FPDF_PAGEOBJ_SHADING):
                bounds = self._bounds(obj)
                if bounds is not None:
                    backdrops.append((_transform_rect(bounds, parent), None))
            elif kind == pdfium.FPDF_PAGEOBJ_FORM:
                if len(frames) > 32:
                    continue
                form_matrix = _concat(self._matrix(obj), parent)
                colour = self._colour(obj)
                alpha = min(group_alpha, colour[1] if colour is not None else 1.0)
                inner = pdfium.FPDFFormObj_CountObjects(obj)
                if inner > 0:
                    frames.append((obj, True, inner, 0, form_matrix, alpha))

        findings: list[_Finding] = []
        hidden_ids: set[int | None] = set()
        for obj, technique, score, where in hidden:
            hidden_ids.add(ctypes.cast(obj, ctypes.c_void_p).value)
            text = self._object_text(obj, textpage)
            if text.strip():
                findings.append(_Finding(technique, number, text, where, score))
        return _PageResult(self._page_text(textpage, hidden_ids), findings, walked)

    def _note_path(
        self,
        obj: Any,
        parent: Matrix,
        group_alpha: float,
        backdrops: list[tuple[Rect, tuple[int, int, int] | None]],
        colours: set[tuple[int, int, int]],
    ) -> None:
        i = self._i
        if not pdfium.FPDFPath_GetDrawMode(obj, ctypes.byref(i[0]), ctypes.byref(i[1])):
            return
        if i[0].value == pdfium.FPDF_FILLMODE_NONE:
            return
        bounds = self._bounds(obj)
        if bounds is None:
            return
        rect = _transform_rect(bounds, parent)
        if (rect[2] - rect[0]) < 2 or (rect[3] - rect[1]) < 2:
            return  # rules and hairlines: nothing sits on them
        colour = self._colour(obj)
        if colour is None:
            backdrops.append((rect, None))  # a pattern or unreadable colour: unknown
            return
        alpha = min(colour[1], group_alpha)
        if alpha < LOW_ALPHA:
            return  # a see-through shape changes nothing
        # A translucent fill seen over white (what is really beneath is not tracked).
        seen = tuple(round(alpha * c + (1 - alpha) * 255) for c in colour[0])
        backdrop = (seen[0], seen[1], seen[2])
        backdrops.append((rect, backdrop))
        colours.add(backdrop)

    def _judge_text(
        self,
        obj: Any,
        parent: Matrix,
        group_alpha: float,
        box: Rect,
        backdrops: list[tuple[Rect, tuple[int, int, int] | None]],
        backdrop_colours: set[tuple[int, int, int]],
    ) -> tuple[Technique, float, str] | None:
        """Why this text object is not seen by a person, or None if it is."""
        mode = pdfium.FPDFTextObj_GetTextRenderMode(obj)
        bounds = self._bounds(obj)
        rect = _transform_rect(bounds, parent) if bounds is not None else None
        backdrop: tuple[Rect, tuple[int, int, int] | None] | None = None
        if rect is not None:
            cx, cy = (rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2
            for candidate in reversed(backdrops):
                r = candidate[0]
                if r[0] <= cx <= r[2] and r[1] <= cy <= r[3]:
                    backdrop = candidate
                    break
        over_image = backdrop is not None and backdrop[1] is None

        if mode in (pdfium.FPDF_TEXTRENDERMODE_INVISIBLE, pdfium.FPDF_TEXTRENDERMODE_CLIP):
            name = "invisible" if mode == pdfium.FPDF_TEXTRENDERMODE_INVISIBLE else "clip only"
            if over_image:
                return (
                    "invisible_render_mode",
                    0.7,
                    f"render mode {mode} ({name}) over an image "
                    "(an OCR text layer looks like this)",
                )
            return "invisible_render_mode", 1.0, f"render mode {mode} ({name})"

        if rect is not None:
            area = max(rect[2] - rect[0], 0.0) * max(rect[3] - rect[1], 0.0)
            inside = _intersect(rect, box)
            if area > 0:
                inside_area = (inside[2] - inside[0]) * (inside[3] - inside[1]) if inside else 0.0
                outside = inside_area <= OUTSIDE_FRACTION * area
            else:
                cx, cy = rect[0], rect[1]
                outside = not (box[0] <= cx <= box[2] and box[1] <= cy <= box[3])
            if outside:
                return (
                    "outside_page",
                    1.0,
                    f"placed at ({rect[0]:.0f}, {rect[1]:.0f})-({rect[2]:.0f}, {rect[3]:.0f}), "
                    f"outside the page box ({box[0]:.0f}, {box[1]:.0f})-"
                    f"({box[2]:.0f}, {box[3]:.0f})",
                )

        # The paint that makes the glyphs: fill, stroke, or both (the more visible counts).
        paints: list[tuple[tuple[int, int, int], float]] = []
        if mode in (0, 2, 4, 6) or mode < 0:
            fill = self._colour(obj)
            if fill is not None:
                paints.append(fill)
        if mode in (1, 2, 5, 6):
            stroke = self._colour(obj, stroke=True)
            if stroke is not None:
                paints.append(stroke)
        if paints:
            alpha = min(max(a for _, a in paints), group_alpha)
            if alpha <= LOW_ALPHA:
                return (
                    "low_alpha",
                    1.0 if alpha <= 0.05 else 0.8,
                    f"opacity {alpha:.2f}",
                )
            background = _WHITE if backdrop is None else backdrop[1]
            # Cheap pre-filter: can the paint match any background drawn on this page?
            possible = any(
                min(a, group_alpha) * _colour_distance(c, bg) < COLOUR_DISTANCE
                for c, a in paints
                for bg in backdrop_colours
            )
            if possible and background is not None:
                distance = max(
                    min(a, group_alpha) * _colour_distance(c, background) for c, a in paints
                )
                if distance < COLOUR_DISTANCE:
                    if distance <= COLOUR_CERTAIN:
                        score = 1.0
                    else:
                        span = COLOUR_DISTANCE - COLOUR_CERTAIN
                        score = round(0.9 - 0.4 * (distance - COLOUR_CERTAIN) / span, 2)
                    colour = max(paints, key=lambda p: p[1])[0]
                    return (
                        "background_colour",
                        score,
                        f"colour {_fmt_colour(colour)} on background {_fmt_colour(background)} "
                        f"(distance {distance:.3f})",
                    )

        size = ctypes.c_float()
        if pdfium.FPDFTextObj_GetFontSize(obj, ctypes.byref(size)):
            a, b, c, d, _, _ = _concat(self._matrix(obj), parent)
            height = size.value * math.hypot(c, d)
            width = size.value * math.hypot(a, b)
            if height < TINY_FONT_PT:
                return "tiny_font", 1.0 if height < 1.0 else 0.9, f"effective size {height:.2f} pt"
            if width < SQUEEZED_PT:
                return (
                    "tiny_font",
                    1.0,
                    f"squeezed to {width:.2f} pt wide glyphs (size {height:.1f} pt)",
                )
        return None

    def _page_text(self, textpage: Any, hidden_ids: set[int | None]) -> str:
        count = pdfium.FPDFText_CountChars(textpage)
        if count <= 0:
            return ""
        if not hidden_ids:
            buffer = (ctypes.c_ushort * (count * 2 + 1))()
            written = pdfium.FPDFText_GetText(textpage, 0, count, buffer)
            raw = bytes(buffer)[: max(written - 1, 0) * 2]
            text = raw.decode("utf-16-le", errors="replace")
        else:
            chars: list[str] = []
            for i in range(count):
                source = pdfium.FPDFText_GetTextObject(textpage, i)
                if source and ctypes.cast(source, ctypes.c_void_p).value in hidden_ids:
                    continue
                code = pdfium.FPDFText_GetUnicode(textpage, i)
                if 0 < code < 0x110000 and not 0xD800 <= code < 0xE000:
                    chars.append(chr(code))
            text = "".join(chars)
        return _tidy(text)


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    lines = [line.rstrip() for line in text.split("\n")]
    out: list[str] = []
    for line in lines:
        if not line.strip() and out and not out[-1].strip():
            continue
        out.append(line)
    return "\n".join(out).strip("\n")


# --------------------------------------------------------------------------- report


def _group(findings: list[_Finding]) -> list[HiddenText]:
    """One HiddenText per technique and page, in first-seen order."""
    groups: dict[tuple[str, int | None], list[_Finding]] = {}
    for finding in findings:
        groups.setdefault((finding.technique, finding.page), []).append(finding)
    hidden: list[HiddenText] = []
    for (_, page), items in groups.items():
        text = "\n".join(f.text.strip() for f in items if f.text.strip())
        wheres: list[str] = []
        for f in items:
            if f.where not in wheres:
                wheres.append(f.where)
        shown = "; ".join(wheres[:3]) + ("; …" if len(wheres) > 3 else "")
        noun = "item" if len(items) == 1 else "items"
        detail = f"{len(items)} {noun}, {len(text)} chars: {shown}"
        hidden.append(
            HiddenText(
                technique=items[0].technique,
                page=page,
                text=text[:HIDDEN_TEXT_PREVIEW],
                detail=detail,
                score=max(f.score for f in items),
                chars=len(text),
            )
        )
    return hidden


def _signal(item: HiddenText) -> Signal:
    detector = ACTIVE_CONTENT_DETECTOR if item.technique in ACTIVE_CONTENT else HIDDEN_TEXT_DETECTOR
    where = f"page {item.page}: " if item.page is not None else ""
    return Signal(
        detector=detector,
        name=item.technique,
        score=item.score,
        surface="document",
        detail=short(where + item.detail, 200),
        page=item.page,
    )


def _section(label: str, text: str) -> str:
    return f"\n\n[[warden:{label}]]\n{text}\n[[/warden:{label}]]"


def _build_report(
    data: bytes,
    page_count: int,
    page_texts: list[str],
    findings: list[_Finding],
    unflagged_metadata: list[tuple[str, str]],
    scan: _Scan,
    job: _Job,
) -> DocumentReport:
    technique_order = {t: i for i, t in enumerate(TECHNIQUES)}
    findings.sort(key=lambda f: (f.page if f.page is not None else 0, technique_order[f.technique]))
    hidden = _group(findings)
    visible = "\f".join(page_texts)
    parts = [visible]
    full_texts: dict[tuple[str, int | None], str] = {}
    for finding in findings:
        key = (finding.technique, finding.page)
        if finding.text.strip():
            full_texts[key] = (full_texts.get(key, "") + "\n" + finding.text.strip()).strip()
    for item in hidden:
        text = full_texts.get((item.technique, item.page), "")
        if text:
            page = f" page={item.page}" if item.page is not None else ""
            parts.append(_section(f"hidden technique={item.technique}{page}", text))
    if unflagged_metadata:
        body = "\n".join(f"{label}: {text}" for label, text in unflagged_metadata)
        parts.append(_section("metadata", body))
    all_text = "".join(parts)
    if len(all_text) > job.limits.max_text_chars * 2:
        job.fail("too_large", f"more than {job.limits.max_text_chars:,} characters of text")
    return DocumentReport(
        content_type="application/pdf",
        pages=page_count,
        visible_text=visible,
        hidden=hidden,
        signals=[_signal(item) for item in hidden],
        all_text_for_scanning=all_text,
        sha256=hashlib.sha256(data).hexdigest(),
        attachments=list(scan.attachments),
    )


# --------------------------------------------------------------------------- text, e-mail


def analyze_document(
    data: bytes,
    content_type: str,
    *,
    name: str = "document",
    field: str | None = None,
    limits: DocumentLimits = DocumentLimits(),
) -> DocumentReport:
    """Dispatch on the content type: application/pdf, text/plain, message/rfc822."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"analyze_document needs bytes, not {type(data).__name__}")
    data = bytes(data)
    media_type, params = _parse_content_type(content_type)
    if media_type in ("application/pdf", "application/x-pdf"):
        return analyze_pdf(data, name=name, field=field, limits=limits)
    job = _Job(name, field, limits)
    if len(data) > limits.max_bytes:
        job.fail("too_large", f"{len(data):,} bytes, more than the limit of {limits.max_bytes:,}")
    if media_type == "text/plain":
        text = _decode_text(data, params.get("charset"), job)
        return _text_report(data, "text/plain", text, text, [], job)
    if media_type == "message/rfc822":
        return _analyze_email(data, job)
    job.fail(
        "unsupported_type",
        f"unsupported content type {media_type or content_type!r} "
        "(accepted: application/pdf, text/plain, message/rfc822)",
    )


def _parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    media, _, rest = (value or "").partition(";")
    params: dict[str, str] = {}
    for part in rest.split(";"):
        key, sep, val = part.partition("=")
        if sep:
            params[key.strip().lower()] = val.strip().strip('"')
    return media.strip().lower(), params


def _control_share(text: str) -> float:
    if not text:
        return 0.0
    controls = sum(1 for ch in text if (ord(ch) < 32 and ch not in "\t\n\r\f\v") or ch == "\x7f")
    return controls / len(text)


def _decode_text(data: bytes, charset: str | None, job: _Job) -> str:
    if b"%PDF-" in data[:1024]:
        job.fail("binary", "not text: this is a PDF; send it as application/pdf")
    if b"\x00" in data:
        job.fail("binary", f"not text: contains NUL bytes (looks like {_sniff(data)})")
    encoding = (charset or "utf-8").lower()
    if encoding in ("utf-8", "utf8"):
        encoding = "utf-8-sig"
    try:
        text = data.decode(encoding)
    except LookupError:
        job.fail("undecodable", f"unknown charset {charset!r}")
    except UnicodeDecodeError as exc:
        byte = data[exc.start] if exc.start < len(data) else 0
        job.fail(
            "undecodable",
            f"not valid {charset or 'UTF-8'} text (byte 0x{byte:02x} at offset {exc.start})",
        )
    if _control_share(text) > 0.01:
        job.fail("binary", f"not text: {_control_share(text):.0%} control characters")
    if len(text) > job.limits.max_text_chars:
        job.fail(
            "too_large",
            f"{len(text):,} characters, more than the limit of {job.limits.max_text_chars:,}",
        )
    return text


def _text_report(
    data: bytes,
    content_type: str,
    visible: str,
    all_text: str,
    attachments: list[str],
    job: _Job,
) -> DocumentReport:
    return DocumentReport(
        content_type=content_type,
        pages=1,
        visible_text=visible,
        hidden=[],
        signals=[],
        all_text_for_scanning=all_text,
        sha256=hashlib.sha256(data).hexdigest(),
        attachments=attachments,
    )


class _HTMLText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head", "title"):
            self._skip += 1
        elif tag in ("br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "table"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head", "title") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def _html_to_text(markup: str) -> str:
    parser = _HTMLText()
    parser.feed(markup)
    parser.close()
    return _tidy("".join(parser.parts))


def _analyze_email(data: bytes, job: _Job) -> DocumentReport:
    if data[:5] == b"%PDF-":
        job.fail("not_email", "not an e-mail message: this is a PDF; send it as application/pdf")
    message = email.message_from_bytes(data, policy=email.policy.default)
    if not message.keys():
        job.fail("not_email", f"not an e-mail message (no headers; looks like {_sniff(data)})")
    headers = []
    for key in ("From", "To", "Cc", "Date", "Subject"):
        value = message.get(key)
        if value:
            headers.append(f"{key}: {value}")
    plain: list[str] = []
    markup: list[str] = []
    attachments: list[str] = []
    for index, part in enumerate(_parts(message)):
        if index >= 1000:
            job.fail("too_large", "more than 1,000 MIME parts")
        job.check_time("reading the e-mail")
        if part.is_multipart():
            continue
        filename = part.get_filename()
        disposition = part.get_content_disposition()
        if filename or disposition == "attachment":
            attachments.append(filename or f"(unnamed {part.get_content_type()})")
            continue
        kind = part.get_content_type()
        if kind not in ("text/plain", "text/html"):
            continue
        text = _part_text(part, index, job)
        (plain if kind == "text/plain" else markup).append(
            text if kind == "text/plain" else _html_to_text(text)
        )
    body = "\n\n".join(t.strip() for t in (plain or markup) if t.strip())
    visible = "\n".join(headers) + ("\n\n" + body if body else "")
    if _control_share(visible) > 0.01:
        job.fail("binary", f"not text: {_control_share(visible):.0%} control characters")
    all_text = visible
    if plain and markup:
        html_text = "\n\n".join(t.strip() for t in markup if t.strip())
        if html_text and html_text != body:
            all_text += _section("email html-alternative", html_text)
    if attachments:
        all_text += _section("email attachments", "\n".join(attachments))
    if len(all_text) > job.limits.max_text_chars:
        job.fail(
            "too_large",
            f"{len(all_text):,} characters, more than the limit of {job.limits.max_text_chars:,}",
        )
    return _text_report(data, "message/rfc822", visible, all_text, attachments, job)


def _parts(message: Message) -> Iterator[Message]:
    yield from message.walk()


def _part_text(part: Message, index: int, job: _Job) -> str:
    charset = part.get_content_charset() or "us-ascii"
    try:
        payload = part.get_payload(decode=True)
    except Exception as exc:
        job.fail("undecodable", f"MIME part {index} cannot be decoded ({short(str(exc), 80)})")
    if not isinstance(payload, bytes):
        return ""
    if b"\x00" in payload:
        job.fail("binary", f"MIME part {index} ({part.get_content_type()}) contains NUL bytes")
    try:
        return payload.decode(charset)
    except LookupError:
        job.fail("undecodable", f"MIME part {index} has an unknown charset {charset!r}")
    except UnicodeDecodeError as exc:
        if charset in ("us-ascii", "ascii"):
            # Undeclared 8-bit text: UTF-8 is by far the most likely.
            try:
                return payload.decode("utf-8")
            except UnicodeDecodeError:
                pass
        job.fail(
            "undecodable",
            f"MIME part {index} is not valid {charset} text (offset {exc.start})",
        )


__all__ = [
    "ACTIVE_CONTENT_DETECTOR",
    "HIDDEN_TEXT_DETECTOR",
    "TECHNIQUES",
    "DocumentError",
    "DocumentLimits",
    "DocumentReport",
    "HiddenText",
    "Technique",
    "analyze_document",
    "analyze_pdf",
]
