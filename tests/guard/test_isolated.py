"""`run_isolated`: the work runs in a forked child that is killed at its deadline, whose
death is reported, and whose result or exception comes back as it was."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from warden.guard import forkserver, isolated
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


# --------------------------------------------------------------------------- fork server
# Module-level work, so that a server that preloads this module can run it by reference.


def _whose_child() -> tuple[int, int]:
    return os.getpid(), os.getppid()


def _sleep_forever() -> None:
    time.sleep(60)  # as a stuck C call: the child's own timer must end it


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _allocate(size: int) -> int:
    return len(bytearray(size))


def _refuse() -> None:
    raise DocumentError("claim.pdf: malformed PDF (x)", code="document.malformed", field="f")


def _patched_here() -> str:
    return "as imported"


def _children_in_state(pid: int, state: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == state and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _wait_ready(server: forkserver.ForkServer, module: str) -> None:
    until = time.monotonic() + 30
    while not server.runs_like_caller(module):
        assert time.monotonic() < until, "the fork server did not start"
        time.sleep(0.02)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[forkserver.ForkServer]:
    """A real fork server preloading this module, used by `run_isolated`."""
    started = forkserver.ForkServer((__name__,))
    monkeypatch.setattr(isolated, "_SERVER", started)
    monkeypatch.setattr(isolated, "FORKSERVER_PRELOAD", (__name__,))
    _wait_ready(started, __name__)
    yield started
    started.stop()


def _server_pid(server: forkserver.ForkServer) -> int:
    assert server._proc is not None
    return server._proc.pid


def test_served_work_runs_in_a_child_of_the_server(server: forkserver.ForkServer) -> None:
    pid, parent = run_isolated(_whose_child, soon(), quiet=QUIET)
    assert parent == _server_pid(server) != os.getpid()
    assert pid != parent
    with pytest.raises(DocumentError) as caught:
        run_isolated(_refuse, soon(), quiet=QUIET)
    assert (caught.value.code, caught.value.field) == ("document.malformed", "f")
    assert run_isolated(_allocate, soon(), quiet=QUIET, args=(1000,)) == 1000


def test_a_served_child_past_its_deadline_ends(
    server: forkserver.ForkServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(isolated, "GRACE_SECONDS", 0.2)
    started = time.monotonic()
    with pytest.raises(ChildStopped) as caught:
        run_isolated(_sleep_forever, soon(0.1), quiet=QUIET)
    assert caught.value.timed_out
    assert time.monotonic() - started < 3
    assert run_isolated(_whose_child, soon(), quiet=QUIET)[1] == _server_pid(server)


def test_a_served_child_that_dies_is_reported_with_how(server: forkserver.ForkServer) -> None:
    with pytest.raises(ChildStopped, match="killed by SIGKILL") as caught:
        run_isolated(_die, soon(), quiet=QUIET)
    assert not caught.value.timed_out
    assert run_isolated(_whose_child, soon(), quiet=QUIET)[1] == _server_pid(server)


def test_a_served_childs_address_space_is_capped(
    server: forkserver.ForkServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(isolated, "CHILD_EXTRA_ADDRESS_SPACE", 256 * 1024**2)
    with pytest.raises(MemoryError):
        run_isolated(_allocate, soon(), quiet=QUIET, args=(1024**3,))
    assert run_isolated(_allocate, soon(), quiet=QUIET, args=(10 * 1024**2,)) == 10 * 1024**2


def test_patched_code_runs_in_a_child_of_the_caller(
    server: forkserver.ForkServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's copy of this module is as imported: a patched module is not served."""
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "_patched_here", lambda: "patched")
    assert run_isolated(_whose_child, soon(), quiet=QUIET)[1] == os.getpid()
    assert run_isolated(module._patched_here, soon(), quiet=QUIET) == "patched"
    monkeypatch.undo()
    monkeypatch.setattr(isolated, "_SERVER", server)
    monkeypatch.setattr(isolated, "FORKSERVER_PRELOAD", (__name__,))
    assert run_isolated(_whose_child, soon(), quiet=QUIET)[1] == _server_pid(server)


def test_a_dead_server_is_replaced(server: forkserver.ForkServer) -> None:
    first = _server_pid(server)
    threading.Timer(0.5, os.kill, (first, signal.SIGKILL)).start()
    with pytest.raises(ChildStopped, match="fork server"):  # its child dies with it
        run_isolated(_sleep_forever, soon(), quiet=QUIET)
    # the server is reaped (children of the caller that answered are reaped at its next fork)
    assert set(_children_in_state(os.getpid(), "Z")) <= set(isolated._EXITING)
    # meanwhile the caller forks itself; then a new server takes over
    assert run_isolated(_allocate, soon(), quiet=QUIET, args=(5,)) == 5
    _wait_ready(server, __name__)
    assert run_isolated(_whose_child, soon(), quiet=QUIET)[1] == _server_pid(server) != first


def test_concurrent_analyses_in_the_server_leak_nothing() -> None:
    """Real PDFs through the default server from several threads: the same reports as
    in-process, no descriptor left open, no child left unreaped."""
    from tests.guard import pdf_fixtures as fx
    from warden.guard import documents

    _wait_ready(isolated._SERVER, "warden.guard.documents")
    pdfs = [fx.clean_letter(pages) for pages in (1, 3, 5)]
    expected = [
        documents._read(pdf, documents._Job("claim.pdf", None, documents.DocumentLimits()))
        for pdf in pdfs
    ]
    documents.analyze_pdf(pdfs[0])
    fds = len(os.listdir("/proc/self/fd"))
    results: list[bool] = []

    def analyse(which: int) -> None:
        for _ in range(3):
            report = documents.analyze_pdf(pdfs[which], name="claim.pdf")
            results.append(report == expected[which])

    threads = [threading.Thread(target=analyse, args=(i % 3,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 18
    assert len(os.listdir("/proc/self/fd")) == fds
    server_pid = _server_pid(isolated._SERVER)
    assert _children_in_state(server_pid, "Z") == []


class _Takeover:
    """What a child whose PDF library was taken over could write as its answer: a pickle
    that calls `os.mkdir` (or anything) in whoever reads it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (self.path,)


def test_an_answer_that_would_run_code_in_the_gateway_is_refused(tmp_path) -> None:
    marker = str(tmp_path / "ran-in-the-gateway")
    with pytest.raises(ChildError, match="may not hold posix.mkdir"):
        run_isolated(lambda: _Takeover(marker), soon(), quiet=QUIET)
    assert not os.path.exists(marker)
    # what an analysis answers still comes back
    report = run_isolated(
        lambda: {"signals": frozenset({"a"}), "n": (1, 2.5, None, b"x")}, soon(), quiet=QUIET
    )
    assert report == {"signals": frozenset({"a"}), "n": (1, 2.5, None, b"x")}


def test_the_server_outlives_the_thread_that_started_it() -> None:
    """A server started from a worker thread (a thread pool's, which ends when idle) must
    not end with that thread: PR_SET_PDEATHSIG fires when the creating *thread* exits,
    which would kill the calls other threads have in flight."""
    started = forkserver.ForkServer((__name__,))
    try:
        starter = threading.Thread(target=lambda: _wait_ready(started, __name__))
        starter.start()
        starter.join()
        pid = _server_pid(started)
        time.sleep(0.3)
        assert started._proc is not None and started._proc.poll() is None, "server died"
        assert started.runs_like_caller(__name__) and _server_pid(started) == pid
    finally:
        started.stop()


def test_the_server_ends_when_its_caller_is_killed(tmp_path) -> None:
    """kill -9 of the gateway leaves no fork server behind (it sees EOF on its socket)."""
    import subprocess

    script = (
        "import time\n"
        "from warden.guard import forkserver, signals\n"
        "s = forkserver.ForkServer(('warden.guard.signals',))\n"
        "while not s.runs_like_caller('warden.guard.signals'): time.sleep(0.02)\n"
        "print(s._proc.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    caller = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert caller.stdout is not None
        server_pid = int(caller.stdout.readline())
        os.kill(caller.pid, signal.SIGKILL)
        caller.wait()
        until = time.monotonic() + 10
        while os.path.exists(f"/proc/{server_pid}"):
            stat = Path(f"/proc/{server_pid}/stat").read_text()
            status = stat.rsplit(")", 1)[1].split()[0]
            if status == "Z":  # exited; its parent (init here, or a subreaper) reaps it
                break
            assert time.monotonic() < until, "the fork server outlived its caller"
            time.sleep(0.05)
    finally:
        caller.kill()
