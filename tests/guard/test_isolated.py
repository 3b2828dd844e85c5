"""`run_isolated`: the work runs in a forked child that is killed at its deadline, whose
death is reported, and whose result or exception comes back as it was."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from warden.guard import isolated
from warden.guard.documents import DocumentError
from warden.guard.isolated import ChildError, ChildStopped, run_isolated

QUIET = threading.Lock()


def soon(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


def test_the_result_and_the_exception_come_back_as_they_were() -> None:
    parent = os.getpid()
    assert run_isolated(lambda: ("pid", os.getpid() != parent), soon(), quiet=QUIET) == (
        "pid",
        True,
    )

    def refuse() -> None:
        raise DocumentError("claim.pdf: malformed PDF (x)", code="document.malformed", field="f")

    with pytest.raises(DocumentError) as caught:
        run_isolated(refuse, soon(), quiet=QUIET)
    assert (caught.value.code, caught.value.field) == ("document.malformed", "f")
    assert str(caught.value) == "claim.pdf: malformed PDF (x)"
    assert not QUIET.locked()


def test_a_child_past_its_deadline_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolated, "GRACE_SECONDS", 0.2)
    started = time.monotonic()
    with pytest.raises(ChildStopped) as caught:
        run_isolated(lambda: time.sleep(60), soon(0.1), quiet=QUIET)  # as a stuck C call
    assert caught.value.timed_out
    assert time.monotonic() - started < 10


def test_a_child_that_dies_is_reported_with_how() -> None:
    def die() -> None:  # as pdfium aborting on a failed allocation
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(ChildStopped, match="killed by SIGKILL") as caught:
        run_isolated(die, soon(), quiet=QUIET)
    assert not caught.value.timed_out


def test_the_childs_address_space_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolated, "CHILD_EXTRA_ADDRESS_SPACE", 256 * 1024**2)
    with pytest.raises(MemoryError):
        run_isolated(lambda: bytearray(1024**3), soon(), quiet=QUIET)
    assert len(run_isolated(lambda: bytearray(10 * 1024**2), soon(), quiet=QUIET)) == 10 * 1024**2


def test_an_answer_that_does_not_pickle_is_an_error_not_a_hang() -> None:
    with pytest.raises(ChildError, match="pickle"):
        run_isolated(lambda: threading.Lock(), soon(), quiet=QUIET)


def test_a_pdfium_call_that_never_returns_is_a_timeout_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deadline checks between steps cannot stop one pdfium call; the child is killed."""
    from tests.guard import pdf_fixtures as fx
    from warden.guard import documents

    monkeypatch.setattr(isolated, "GRACE_SECONDS", 0.2)
    monkeypatch.setattr(documents._PdfiumDocument, "analyse_page", lambda *a: time.sleep(60))
    started = time.monotonic()
    with pytest.raises(DocumentError) as caught:
        documents.analyze_pdf(
            fx.clean_letter(1),
            name="claim.pdf",
            limits=documents.DocumentLimits(max_seconds=0.5),
        )
    assert caught.value.code == "document.timeout", str(caught.value)
    assert "was stopped" in str(caught.value)
    assert time.monotonic() - started < 10
