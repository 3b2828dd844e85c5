"""A minimal PDF writer for synthetic claim documents (the demo and `warden redteam`):
text runs with a position, size, colour, opacity and render mode, so every hiding
technique the document analyser looks for can be produced without a PDF library."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TextRun:
    text: str
    x: float = 72
    y: float = 720
    size: float = 11
    rgb: tuple[float, float, float] = (0, 0, 0)
    render_mode: int = 0  # 3 = invisible
    alpha: float = 1.0


@dataclass
class Page:
    runs: list[TextRun] = field(default_factory=list)
    width: float = 612
    height: float = 792


def _escape(text: str) -> str:
    safe = text.encode("latin-1", "replace").decode("latin-1")
    return safe.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def wrap(text: str, width: int = 90) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            if len(line) + len(word) + 1 > width:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}".strip()
        lines.append(line)
    return lines


def text_pages(text: str, *, size: float = 11, top: float = 740, bottom: float = 72) -> list[Page]:
    """Plain visible text, wrapped and paginated inside the page box."""
    pages = [Page()]
    y = top
    for line in wrap(text):
        if y < bottom:
            pages.append(Page())
            y = top
        pages[-1].runs.append(TextRun(line, 72, y, size))
        y -= size * 1.4
    return pages


def text_page(text: str, *, size: float = 11, top: float = 740) -> Page:
    """The first page of `text_pages` (for short texts)."""
    return text_pages(text, size=size, top=top)[0]


def build_pdf(pages: list[Page], *, title: str | None = None) -> bytes:
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled below
    pages_obj = add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    alphas: dict[float, int] = {}
    page_ids = []
    for page in pages:
        ops = []
        for run in page.runs:
            gs = ""
            if run.alpha < 1.0:
                if run.alpha not in alphas:
                    alphas[run.alpha] = add(
                        f"<< /Type /ExtGState /ca {run.alpha} /CA {run.alpha} >>".encode()
                    )
                gs = f"/GS{alphas[run.alpha]} gs "
            r, g, b = run.rgb
            ops.append(
                f"q {gs}BT /F1 {run.size} Tf {run.render_mode} Tr {r} {g} {b} rg "
                f"{run.x} {run.y} Td ({_escape(run.text)}) Tj ET Q"
            )
        stream = "\n".join(ops).encode("latin-1", "replace")
        content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        ext = " ".join(f"/GS{i} {i} 0 R" for i in alphas.values())
        resources = f"<< /Font << /F1 {font} 0 R >> /ExtGState << {ext} >> >>"
        page_ids.append(
            add(
                f"<< /Type /Page /Parent {pages_obj} 0 R /MediaBox [0 0 {page.width} "
                f"{page.height}] /Resources {resources} /Contents {content} 0 R >>".encode()
            )
        )
    kids = " ".join(f"{i} 0 R" for i in page_ids)
    objects[pages_obj - 1] = f"<< /Type /Pages /Kids [{kids}] /Count {len(page_ids)} >>".encode()
    objects[catalog - 1] = f"<< /Type /Catalog /Pages {pages_obj} 0 R >>".encode()
    info = add(f"<< /Title ({_escape(title)}) >>".encode()) if title else None
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    trailer = f"<< /Size {len(objects) + 1} /Root {catalog} 0 R"
    if info:
        trailer += f" /Info {info} 0 R"
    out += f"trailer\n{trailer} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)
