"""What a person is told about a broken PDF: each input is a generated PDF with one kind of
damage, and the refusal must name that damage (not pypdf's internal state, not pdfium's
"corrupted"), with a stable code. Inputs the parsers repair are analysed, not refused."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from tests.guard import pdf_fixtures as fx
from warden.guard import documents, pdf_damage
from warden.guard.documents import DocumentError, DocumentLimits, analyze_pdf

LENGTH = b"/Length %d" % len(fx.PAGE_TEXT)


def _base() -> bytes:
    return fx.one_page()


def _replace(old: bytes, new: bytes, data: Callable[[], bytes] = _base) -> Callable[[], bytes]:
    def build() -> bytes:
        pdf = data()
        assert old in pdf, old
        return pdf.replace(old, new, 1)

    return build


def _startxref(data: bytes) -> int:
    return int(re.findall(rb"startxref\s+(\d+)", data)[-1])


def _cut(fraction: float) -> Callable[[], bytes]:
    """The file cut short, with an %%EOF marker glued on (as some uploaders do)."""

    def build() -> bytes:
        data = _base()
        return data[: int(len(data) * fraction)] + b"\n%%EOF\n"

    return build


def _letter_length_abc() -> bytes:
    """fpdf2's letter with page 1's content /Length replaced by a word: pdfium reads past
    it and cannot load page 2."""
    data = fx.clean_letter(pages=2)
    match = re.search(rb"/Length (\d+)", data)
    assert match is not None
    return data[: match.start(1)] + b"abc" + data[match.end(1) :]


def _pages(*objects: bytes) -> Callable[[], bytes]:
    def build() -> bytes:
        catalog = b"<< /Type /Catalog /Pages 2 0 R >>"
        return fx.raw_pdf(
            [catalog, objects[0], fx.page_dict(), fx.raw_stream(fx.PAGE_TEXT), *objects[1:]]
        )

    return build


HELVETICA = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
UPLOAD = "; upload it unencrypted"

REFUSED: list[tuple[str, Callable[[], bytes], str, str]] = [
    (
        "length-refers-to-a-name",
        lambda: fx.raw_pdf(
            [
                b"<< /Type /Catalog /Pages 2 0 R >>",
                b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                fx.page_dict(),
                b"<< /Length 6 0 R >>\nstream\n" + fx.PAGE_TEXT + b"\nendstream",
                HELVETICA,
                b"/abc",
            ]
        ),
        "document.malformed",
        "stream 4 0 has a /Length that refers to object 6 0, which is not a number "
        "(it is the name '/abc')",
    ),
    (
        "length-not-a-number-breaks-a-later-page",
        _letter_length_abc,
        "document.malformed",
        "page 2 cannot be read; the file is damaged: stream 4 0 has a /Length that is not "
        "a number ('abc')",
    ),
    (
        "startxref-missing",
        lambda: re.sub(rb"startxref\s+\d+\s+", b"", _base()),
        "document.malformed",
        "the cross-reference table is damaged (there is no startxref at the end of the file; "
        "part of the file is missing — was the upload cut off?)",
    ),
    (
        "startxref-garbage",
        lambda: re.sub(rb"startxref\s+\d+", b"startxref\nxyz", _base()),
        "document.malformed",
        "the cross-reference table is damaged (startxref is followed by 'xyz', not a byte offset)",
    ),
    *[
        (
            f"cut-at-{fraction:.0%}",
            _cut(fraction),
            "document.malformed",
            "the cross-reference table is damaged (there is no startxref at the end of the "
            "file; part of the file is missing — was the upload cut off?)",
        )
        for fraction in (0.1, 0.5, 0.9, 0.98)
    ],
    (
        "xref-stream-bad-w",
        _replace(b"/W [1 3 2]", b"/W [1 x 2]", fx.object_stream_pdf),
        "document.malformed",
        "the cross-reference stream 7 0 is damaged (its /W is '[1 x 2]', not three byte widths)",
    ),
    (
        "trailer-without-root",
        _replace(b"/Root 1 0 R", b""),
        "document.malformed",
        "the trailer has no /Root entry, so the document catalog cannot be found",
    ),
    (
        "root-refers-to-a-missing-object",
        _replace(b"/Root 1 0 R", b"/Root 77 0 R"),
        "document.malformed",
        "the trailer's /Root refers to object 77 0, which is not in the file",
    ),
    (
        "root-not-a-dictionary",
        _replace(b"<< /Type /Catalog /Pages 2 0 R >>", b"42"),
        "document.malformed",
        "the document catalog (object 1 0) is not a dictionary (it is the number 42)",
    ),
    (
        "catalog-without-pages",
        _replace(b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Catalog >>"),
        "document.malformed",
        "the document catalog has no /Pages entry (the page tree)",
    ),
    (
        "pages-not-a-dictionary",
        _replace(b"/Pages 2 0 R", b"/Pages 5"),
        "document.malformed",
        "the document catalog's /Pages (the page tree) is not a dictionary (it is the number 5)",
    ),
    (
        "page-tree-lists-itself",
        _pages(b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>", HELVETICA),
        "document.malformed",
        "the page tree is damaged: it has a loop (node 2 lists object 2, itself, as a kid)",
    ),
    (
        "page-tree-loop-through-a-kid",
        _pages(
            b"<< /Type /Pages /Kids [6 0 R] /Count 1 >>",
            HELVETICA,
            b"<< /Type /Pages /Kids [2 0 R] /Parent 2 0 R /Count 1 >>",
        ),
        "document.malformed",
        "the page tree is damaged: it has a loop (node 6 lists object 2, one of its own "
        "ancestors, as a kid)",
    ),
    (
        "page-tree-kids-not-an-array",
        _replace(b"/Kids [3 0 R]", b"/Kids 3"),
        "document.malformed",
        "page 1 cannot be read: page tree node 2 has a /Kids that is not an array "
        "(it is the number 3)",
    ),
    (
        "page-count-wrong",
        _replace(b"/Count 1", b"/Count 5"),
        "document.malformed",
        "malformed PDF (the page tree holds 1 page but its /Count says 5)",
    ),
    (
        "object-stream-first-not-a-number",
        lambda: fx.object_stream_pdf(b"abc"),
        "document.malformed",
        "the document catalog (object 1 0) cannot be read: object stream 6 0, which holds "
        "it, has a /First that is not a number ('abc')",
    ),
    (
        "object-stream-first-negative",
        lambda: fx.object_stream_pdf(b"-4"),
        "document.malformed",
        "the document catalog (object 1 0) cannot be read: object stream 6 0, which holds "
        "it, has a negative /First (-4)",
    ),
    (
        "object-stream-first-past-its-end",
        lambda: fx.object_stream_pdf(b"9999"),
        "document.malformed",
        "the document catalog (object 1 0) cannot be read: object stream 6 0, which holds "
        "it, has a /First (9,999) past the end of its 84 bytes of data",
    ),
    (
        "object-stream-first-off-by-three",
        lambda: fx.object_stream_pdf(b"12"),
        "document.malformed",
        "the document catalog (object 1 0) cannot be read: object stream 6 0, which holds "
        "it, has a /First (12) that does not point at the start of its first object "
        "(or a /N (2) that does not match its index)",
    ),
    (
        "encryption-unknown-handler",
        lambda: fx.one_page().replace(
            b"/Root 1 0 R",
            b"/Root 1 0 R /Encrypt << /Filter /FooSecurity /V 1 /R 2 /O <00> /U <00> /P -4 >> "
            b"/ID [<01><01>]",
        ),
        "document.encrypted",
        "encrypted PDF with the security handler /FooSecurity, which this gateway does not "
        "support (only password security, /Standard)" + UPLOAD,
    ),
    (
        "encryption-public-key",
        lambda: fx.one_page().replace(
            b"/Root 1 0 R",
            b"/Root 1 0 R /Encrypt << /Filter /Adobe.PubSec /SubFilter /adbe.pkcs7.s5 /V 4 "
            b"/R 4 >> /ID [<01><01>]",
        ),
        "document.encrypted",
        "encrypted PDF with certificate (public-key) security (/Adobe.PubSec), which this "
        "gateway cannot open" + UPLOAD,
    ),
    (
        "encryption-unknown-version",
        lambda: fx.one_page().replace(
            b"/Root 1 0 R",
            b"/Root 1 0 R /Encrypt << /Filter /Standard /V 9 /R 9 /O <00> /U <00> /P -4 >> "
            b"/ID [<01><01>]",
        ),
        "document.encrypted",
        "encrypted PDF with an unknown encryption version (/V 9)" + UPLOAD,
    ),
    (
        "encryption-dictionary-not-a-dictionary",
        lambda: fx.one_page().replace(b"/Root 1 0 R", b"/Root 1 0 R /Encrypt 5"),
        "document.malformed",
        "the encryption dictionary is damaged (the trailer's /Encrypt is not a dictionary)",
    ),
    (
        "garbage-after-the-header",
        fx.garbage_after_header,
        "document.malformed",
        "no PDF objects follow the %PDF- header (the file is damaged throughout)",
    ),
]


@pytest.mark.parametrize(
    ("build", "code", "message"),
    [pytest.param(build, code, message, id=name) for name, build, code, message in REFUSED],
)
def test_broken_pdf_is_refused_with_a_precise_message(
    build: Callable[[], bytes], code: str, message: str
) -> None:
    with pytest.raises(DocumentError) as caught:
        analyze_pdf(
            build(), name="claim.pdf", field="documents[0]", limits=DocumentLimits(max_seconds=5)
        )
    error = caught.value
    assert str(error) == f"claim.pdf: {message}"
    assert error.code == code
    assert error.http_status == 422
    assert error.field == "documents[0]"
    assert not documents._PDFIUM_LOCK.locked()


def test_self_referencing_length_keeps_its_message() -> None:
    stream = b"<< /Length 4 0 R >>\nstream\n" + fx.PAGE_TEXT + b"\nendstream"
    data = fx.raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            fx.page_dict(),
            stream,
            HELVETICA,
        ]
    )
    with pytest.raises(DocumentError) as caught:
        analyze_pdf(data, name="claim.pdf")
    assert str(caught.value) == (
        "claim.pdf: malformed PDF (object 4 0 contains a reference to itself)"
    )


# --------------------------------------------------------------------------- repaired


REPAIRED: list[tuple[str, Callable[[], bytes]]] = [
    ("length-not-a-number", _replace(LENGTH, b"/Length abc")),
    ("length-negative", _replace(LENGTH, b"/Length -5")),
    ("length-past-the-end", _replace(LENGTH, b"/Length 99999")),
    ("length-refers-to-a-missing-object", _replace(LENGTH, b"/Length 99 0 R")),
    (
        "startxref-past-the-end",
        lambda: _base().replace(
            b"startxref\n%d" % _startxref(_base()), b"startxref\n%d" % (_startxref(_base()) + 10**5)
        ),
    ),
    (
        "startxref-into-an-object",
        lambda: _base().replace(b"startxref\n%d" % _startxref(_base()), b"startxref\n20"),
    ),
    ("xref-offsets-to-garbage", lambda: re.sub(rb"\d{10} 00000 n", b"0000000003 00000 n", _base())),
    ("unknown-filter", _replace(LENGTH, LENGTH + b" /Filter /FooDecode")),
    ("flate-garbage", _replace(LENGTH, LENGTH + b" /Filter /FlateDecode")),
]


@pytest.mark.parametrize("build", [pytest.param(b, id=name) for name, b in REPAIRED])
def test_damage_both_parsers_repair_is_not_refused(build: Callable[[], bytes]) -> None:
    report = analyze_pdf(build(), limits=DocumentLimits(max_seconds=5))
    assert report.pages == 1
    assert "Claim text" in report.visible_text


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize(
    ("image_filter", "parms"),
    [
        (b"/JBIG2Decode", b""),
        (b"[/JBIG2Decode]", b""),
        (b"/JBIG2Decode", b"/DecodeParms << /JBIG2Globals 7 0 R >>"),
        (b"[/FlateDecode /JBIG2Decode]", b""),
        (b"/CCITTFaxDecode", b"/DecodeParms << /K -1 /Columns 8 >>"),
        (b"/DCTDecode", b""),
        (b"/JPXDecode", b""),
        (b"/NoSuchDecode", b""),
    ],
    ids=["jbig2", "jbig2-array", "jbig2-globals", "flate-jbig2", "ccitt", "dct", "jpx", "unknown"],
)
def test_a_scan_with_an_image_nothing_here_decodes_is_analysed(
    image_filter: bytes, parms: bytes
) -> None:
    # Images are never decoded: the hidden-text checks use only where an image is drawn
    # (an unknown-colour backdrop, which makes invisible text over it an OCR layer), so an
    # image codec this gateway lacks (jbig2dec for JBIG2) is not a reason to refuse a scan
    globals_stream = [fx.raw_stream(bytes(16))] if b"JBIG2Globals" in parms else []
    data = fx.scanned_page(image_filter, parms, *globals_stream)
    report = analyze_pdf(data, name="scan.pdf")
    assert report.pages == 1
    [ocr] = report.hidden
    assert ocr.technique == "invisible_render_mode"
    assert ocr.score == 0.7  # under the policy's default hidden_min_score (0.9)
    assert "OCR text layer" in ocr.detail
    assert "Scanned claim letter" in report.all_text_for_scanning


# --------------------------------------------------------------------------- hostile
#
# The diagnosis re-reads the raw bytes on failure paths only, but a file made to fail can
# be all object headers: it must read a bounded number of them, once per failure, and
# give up (the plain reason stands) when its budget is spent.

PLAIN_XREF = (
    "the cross-reference table is damaged (the trailer or the cross-reference stream "
    "cannot be read)"
)


def _headers_only() -> bytes:
    """~9.8 MB of bare `N 0 obj` headers; startxref points at the first one."""
    headers = b"".join(b"%d 0 obj\n" % n for n in range(1, 760_000))
    return b"%PDF-1.7\n" + headers + b"startxref\n9\n%%EOF\n"


def _bad_lengths(broken_first: bool) -> Callable[[], bytes]:
    """~9.8 MB of small streams whose /Length refers to a number too large for them, and
    one (object 1, first or last) whose /Length is a word; startxref points at the first
    object."""

    def build() -> bytes:
        streams = [
            b"%d 0 obj\n<< /Length %d 0 R >>\nstream\nBT ET\nendstream\nendobj\n"
            b"%d 0 obj\n999\nendobj\n" % (n, n + 1, n + 1)
            for n in range(2, 216_000, 2)
        ]
        broken = b"1 0 obj\n<< /Length abc >>\nstream\nBT ET\nendstream\nendobj\n"
        streams.insert(0 if broken_first else len(streams), broken)
        return b"%PDF-1.7\n" + b"".join(streams) + b"startxref\n9\n%%EOF\n"

    return build


HOSTILE: list[tuple[str, Callable[[], bytes], str]] = [
    ("headers-only", _headers_only, PLAIN_XREF),
    (
        "bad-lengths-broken-first",
        _bad_lengths(broken_first=True),
        "stream 1 0 has a /Length that is not a number ('abc')",
    ),
    # the broken stream is past the headers a diagnosis reads: the plain reason stands
    ("bad-lengths-broken-last", _bad_lengths(broken_first=False), PLAIN_XREF),
]


@pytest.mark.parametrize(
    ("build", "message"), [pytest.param(b, m, id=name) for name, b, m in HOSTILE]
)
def test_a_hostile_file_is_diagnosed_from_a_bounded_scan(
    build: Callable[[], bytes], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the time budget is not what is tested here (on a loaded machine a 10 MB scan can
    # take longer than 0.5 s, and the plain reason would stand): the bound on headers is
    monkeypatch.setattr(pdf_damage, "BUDGET_SECONDS", 60.0)
    data = build()
    assert 9_000_000 < len(data) <= DocumentLimits().max_bytes
    with pytest.raises(DocumentError) as caught:
        analyze_pdf(data, name="claim.pdf")
    assert (caught.value.code, caught.value.http_status) == ("document.malformed", 422)
    assert str(caught.value) == f"claim.pdf: {message}"

    # the same analysis in this process, to count the header scans the failure made
    scans: list[pdf_damage.RawObjects] = []

    def counted(data: bytes, deadline: float) -> pdf_damage.RawObjects:
        scans.append(scan(data, deadline))
        return scans[-1]

    scan = pdf_damage._scan
    monkeypatch.setattr(pdf_damage, "_scan", counted)
    with pytest.raises(DocumentError) as again:
        documents._read(data, documents._Job("claim.pdf", None, DocumentLimits()))
    assert str(again.value) == f"claim.pdf: {message}"
    assert len(scans) == 1  # the headers are parsed once per failure
    [objects] = scans
    assert objects.headers == pdf_damage.MAX_HEADERS  # and no more than that
    assert not objects.complete
    assert objects.end < len(data)


def test_a_diagnosis_past_its_deadline_gives_up() -> None:
    [(build, message)] = [(b, m) for name, b, _, m in REFUSED if name == "length-refers-to-a-name"]
    data = build()
    with pdf_damage.Diagnosis(data):
        assert pdf_damage.structure_damage(data) == message
    with pdf_damage.Diagnosis(data, deadline=time.monotonic() - 1):  # spent already
        assert pdf_damage.structure_damage(data) is None
        exc = ValueError("something pypdf says")
        assert pdf_damage.failure_reason(exc, data) == "malformed PDF (something pypdf says)"


def test_an_object_past_the_headers_read_is_still_found() -> None:
    data = _headers_only()
    objects = pdf_damage.raw_objects(data)
    assert not objects.complete and 700_000 not in objects
    found = objects.find(700_000)
    assert found is not None and found.offset == data.index(b"\n700000 0 obj") + 1
    assert objects.find(999_999) is None  # not in the file: a /Root to it is named so
