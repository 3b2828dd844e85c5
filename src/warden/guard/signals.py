"""What every detector reports: signals. A signal is evidence, not a verdict; the inputs
and outputs gates turn signals into actions with the thresholds in the policy."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Surface = Literal["text", "document", "tool_args", "fields", "output"]


@dataclass(frozen=True)
class Signal:
    #: which layer produced it, e.g. "injection.normalise", "injection.signature",
    #: "injection.classifier", "document.hidden_text", "output.pii", "output.canary"
    detector: str
    #: a stable name inside the detector, e.g. a signature rule id or "zero_width"
    name: str
    #: strength in [0, 1]; 1.0 means certain (e.g. a signature match, a canary leak)
    score: float
    surface: Surface
    #: a short human-readable explanation; never the full offending text
    detail: str = ""
    #: character span in the (normalised) text, if it points somewhere
    start: int | None = None
    end: int | None = None
    #: chunk index for chunked documents, page number for PDFs
    chunk: int | None = None
    page: int | None = None

    def as_record(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}
