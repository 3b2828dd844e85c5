"""Regressions found by fuzzing `analyze_pdf`: each input used to hang (pdfium or pypdf
working for minutes on a small file) or to be refused with an unstable message."""

from __future__ import annotations

import time

import pytest

from tests.guard import pdf_fixtures as fx
from warden.guard import documents
from warden.guard.documents import DocumentError, DocumentLimits, analyze_pdf

CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"
PAGES = b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def _page(resources: bytes) -> bytes:
    return (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> " + resources + b" >> >>"
    )


def _form(content: bytes, resources: bytes = b"") -> bytes:
    return fx.raw_stream(content, b"/Type /XObject /Subtype /Form /BBox [0 0 10 10] " + resources)


def _one_page(content: bytes, resources: bytes, *more: bytes) -> bytes:
    """Objects 1-5: catalog, pages, page, its content, Helvetica; then `more` from 6."""
    return fx.raw_pdf([CATALOG, PAGES, _page(resources), fx.raw_stream(content), FONT, *more])


@pytest.fixture
def no_pdfium_pages(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Pages pdfium was asked to load: a refusal must come before any of them."""
    loaded: list[int] = []

    def refuse(self: object, index: int, *args: object) -> None:
        loaded.append(index)
        raise AssertionError(f"pdfium asked to load page {index + 1}")

    monkeypatch.setattr(documents._PdfiumDocument, "analyse_page", refuse)
    return loaded


def _refused(data: bytes, code: str) -> str:
    started = time.perf_counter()
    with pytest.raises(DocumentError) as caught:
        analyze_pdf(data, name="claim.pdf", limits=DocumentLimits(max_seconds=5.0))
    assert time.perf_counter() - started < 2.0
    assert caught.value.code == code, str(caught.value)
    assert caught.value.http_status == 422
    assert not documents._PDFIUM_LOCK.locked()
    return str(caught.value)


# --------------------------------------------------------------------------- form XObjects


def test_form_drawing_itself_twice_is_refused(no_pdfium_pages: list[int]) -> None:
    # pdfium re-parses a form on every use down to 40 levels: 2**40 parses (a hang in
    # FPDF_LoadPage). The old cost model stopped at the cycle and let it through.
    xobjects = b"/XObject << /X 6 0 R >>"
    data = _one_page(
        b"/X Do", xobjects, _form(b"/X Do /X Do", b"/Resources << " + xobjects + b">>")
    )
    message = _refused(data, "document.too_large")
    assert message.startswith("claim.pdf: page 1 draws more than 10,000 XObjects")
    assert "nested forms included" in message
    assert no_pdfium_pages == []


def test_two_forms_drawing_each_other_are_refused(no_pdfium_pages: list[int]) -> None:
    xobjects = b"/Resources << /XObject << /X 6 0 R /Y 7 0 R >> >>"
    data = _one_page(
        b"/X Do",
        b"/XObject << /X 6 0 R >>",
        _form(b"/X Do /Y Do", xobjects),
        _form(b"/X Do", xobjects),
    )
    assert "draws more than 10,000 XObjects" in _refused(data, "document.too_large")
    assert no_pdfium_pages == []


def test_form_drawing_itself_through_inherited_resources_is_refused(
    no_pdfium_pages: list[int],
) -> None:
    # no /Resources on the form: it draws /X from the page's resources, i.e. itself
    data = _one_page(b"/X Do", b"/XObject << /X 6 0 R >>", _form(b"/X Do /X Do"))
    assert "draws more than 10,000 XObjects" in _refused(data, "document.too_large")
    assert no_pdfium_pages == []


def test_deep_chain_of_distinct_forms_is_refused(no_pdfium_pages: list[int]) -> None:
    # no cycle at all: 30 forms, each drawing the next twice (the old model stopped
    # counting at depth 12, pdfium parses down to 40)
    forms = [
        _form(b"0 0 m 1 1 l S /N Do /N Do", b"/Resources << /XObject << /N %d 0 R >> >>" % (7 + i))
        for i in range(30)
    ]
    data = _one_page(b"/X Do", b"/XObject << /X 6 0 R >>", *forms, _form(b"0 0 m 1 1 l S"))
    assert "draws more than 10,000 XObjects" in _refused(data, "document.too_large")
    assert no_pdfium_pages == []


def test_form_drawing_itself_once_is_still_analysed() -> None:
    # a plain cycle is linear for pdfium (40 levels, one parse each): not a bomb
    xobjects = b"/XObject << /X 6 0 R >>"
    form = _form(b"0 0 m 1 1 l S /X Do", b"/Resources << " + xobjects + b">>")
    data = _one_page(b"BT /F1 12 Tf 50 700 Td (Claim text) Tj ET /X Do", xobjects, form)
    report = analyze_pdf(data)
    assert report.pages == 1
    assert "Claim text" in report.visible_text


def test_type3_glyph_drawing_a_form_bomb_is_refused(no_pdfium_pages: list[int]) -> None:
    # pdfium parses the glyph procedures of a Type3 font while loading the page
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>"
    )
    type3 = (
        b"<< /Type /Font /Subtype /Type3 /FontBBox [0 0 1000 1000] "
        b"/FontMatrix [0.001 0 0 0.001 0 0] /CharProcs << /a 6 0 R >> "
        b"/Encoding << /Type /Encoding /Differences [97 /a] >> /FirstChar 97 /LastChar 97 "
        b"/Widths [1000] /Resources << /XObject << /X 7 0 R >> >> >>"
    )
    data = fx.raw_pdf(
        [
            CATALOG,
            PAGES,
            page,
            fx.raw_stream(b"BT /F1 12 Tf 50 700 Td (aaaa) Tj ET"),
            type3,
            fx.raw_stream(b"1000 0 0 0 1000 1000 d1 /X Do"),
            _form(b"/X Do /X Do", b"/Resources << /XObject << /X 7 0 R >> >>"),
        ]
    )
    message = _refused(data, "document.too_large")
    assert "the glyphs of Type3 font 5 draw more than 10,000 XObjects" in message
    assert no_pdfium_pages == []


# --------------------------------------------------------------------------- pypdf


def test_deeply_nested_dictionaries_are_refused_before_parsing() -> None:
    # pypdf recursed to Python's limit, then rebuilt the xref and re-read objects that
    # fail the same way again: seconds for a 300 KB file (pdfium reads only 64 levels)
    nested = b"<</A " * 50_000 + b"1" + b">>" * 50_000
    data = _one_page(b"BT /F1 12 Tf 50 700 Td (Hi) Tj ET", b"/Deep " + nested)
    message = _refused(data, "document.malformed")
    assert "nested more than 100 levels deep at byte" in message


def test_deeply_nested_arrays_are_refused_before_parsing() -> None:
    data = _one_page(b"", b"/Deep " + b"[ " * 20_000 + b"]" * 20_000)
    assert "nested more than 100 levels" in _refused(data, "document.malformed")


def test_moderate_nesting_is_not_refused() -> None:
    data = _one_page(b"BT /F1 12 Tf 50 700 Td (Hi) Tj ET", b"/Deep " + b"[" * 50 + b"]" * 50)
    assert analyze_pdf(data).pages == 1


def test_nesting_scan_is_linear() -> None:
    started = time.perf_counter()
    for unit in (b"[" * 100 + b"x", b"<< /A " * 100 + b"1", b"[[x"):
        assert documents._deep_nesting(unit * (1_000_000 // len(unit))) is None
    assert time.perf_counter() - started < 1.0


def test_self_referencing_object_gets_a_stable_message() -> None:
    # a stream whose /Length is a reference to the stream itself; pypdf's message named
    # the object with its Python address, different on every run
    stream = b"<< /Length 4 0 R >>\nstream\nBT /F1 12 Tf 50 700 Td (Hi) Tj ET\nendstream"
    data = fx.raw_pdf([CATALOG, PAGES, _page(b""), stream, FONT])
    message = _refused(data, "document.malformed")
    assert message == "claim.pdf: malformed PDF (object 4 0 contains a reference to itself)"
