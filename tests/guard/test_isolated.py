"""`run_isolated`: the work runs in a forked child that is killed at its deadline, whose
death is reported, and whose result or exception comes back as it was.

PYTEST_DONT_REWRITE: the fork server imports this module as plain Python and serves its
functions only while their bytecode is the caller's; pytest's assertion rewriting would
make every function here differ (so the asserts here are plain ones)."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import importlib
import os
import pickle
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from warden.guard import forkserver, isolated, isolated_answer
from warden.guard.documents import DocumentError
from warden.guard.isolated import ChildStopped, run_isolated
from warden.guard.isolated_answer import ChildError

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
    assert run_isolated(lambda: len(bytearray(10 * 1024**2)), soon(), quiet=QUIET) == 10 * 1024**2


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


def _slow_whose_child(seconds: float) -> tuple[int, int]:
    time.sleep(seconds)
    return os.getpid(), os.getppid()


def _raise_value_error() -> None:
    raise ValueError("a bug in the analysis")


def _disarm_and_sleep(pidfile: str) -> None:
    """As a child whose PDF library was taken over: no timer, no death with the server."""
    signal.setitimer(signal.ITIMER_REAL, 0)
    ctypes.CDLL(None).prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG: none
    Path(pidfile + ".tmp").write_text(str(os.getpid()))
    os.rename(pidfile + ".tmp", pidfile)
    time.sleep(60)


def _answer_a_terabyte() -> None:
    """As a taken-over child: its memfd made a terabyte large, then 'answered'."""
    conn = -1
    for entry in os.listdir("/proc/self/fd"):
        with suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{entry}")
            if target.startswith("/memfd:warden-isolated"):
                os.ftruncate(int(entry), 1 << 40)
            elif target.startswith("socket:"):
                conn = int(entry)
    os.write(conn, b"A")
    os._exit(0)


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with suppress(OSError):
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry))
    return found


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _wait_for(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    until = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < until, what
        time.sleep(0.02)


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
    """A real fork server preloading this module, used by `run_isolated`; started with a
    secret in the gateway's environment, as an endpoint's API key would be."""
    monkeypatch.setenv("WARDEN_TEST_ENDPOINT_KEY", "sk-not-for-children")
    started = forkserver.ForkServer((__name__,))
    monkeypatch.setattr(isolated, "_SERVER", started)
    monkeypatch.setattr(isolated, "FORKSERVER_PRELOAD", (__name__,))
    _wait_ready(started, __name__)
    yield started
    started.stop()


def _environment() -> dict[str, str]:
    return dict(os.environ)


def test_a_served_child_does_not_see_the_gateways_secrets(
    server: forkserver.ForkServer,
) -> None:
    seen = run_isolated(_environment, soon(), quiet=QUIET)
    assert "WARDEN_TEST_ENDPOINT_KEY" not in seen
    assert seen.get("PATH") == os.environ.get("PATH")


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
    """The server's death is no verdict on the document: the call runs again in a new
    server and gets its answer — never in a child of the caller, which a hostile file
    could force by killing its server (that child would hold the gateway's memory)."""
    first = _server_pid(server)
    threading.Timer(0.5, os.kill, (first, signal.SIGKILL)).start()
    _, parent = run_isolated(_slow_whose_child, soon(), quiet=QUIET, args=(1.0,))
    assert parent == _server_pid(server) != first
    assert parent != os.getpid()
    # the server is reaped (children of the caller that answered are reaped at its next fork)
    assert set(_children_in_state(os.getpid(), "Z")) <= set(isolated._EXITING)
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
    # the answer comes before the child's exit, which the server reaps a moment later
    _wait_for(
        lambda: _children_in_state(server_pid, "Z") == [],
        "a child of the server was left unreaped",
        seconds=2,
    )


class _SizedBomb:
    """An answer that allocates 10 GB in whoever unpickles it."""

    def __reduce__(self) -> tuple[object, tuple[int]]:
        return bytearray, (10**10,)


class _Takeover:
    """What a child whose PDF library was taken over could write as its answer: a pickle
    that calls `os.mkdir` (or anything) in whoever reads it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (self.path,)


def test_an_answer_that_would_run_code_in_the_gateway_is_refused(tmp_path: Path) -> None:
    marker = str(tmp_path / "ran-in-the-gateway")
    with pytest.raises(ChildError, match="may not hold posix.mkdir"):
        run_isolated(lambda: _Takeover(marker), soon(), quiet=QUIET)
    assert not os.path.exists(marker)
    # what an analysis answers still comes back
    report = run_isolated(
        lambda: {"signals": ["a"], "n": (1, 2.5, None, b"x")}, soon(), quiet=QUIET
    )
    assert report == {"signals": ["a"], "n": (1, 2.5, None, b"x")}
    # nothing that takes a size: bytearray(10**10) would be a 45-byte pickle
    outcome, error = isolated_answer.loads_answer(pickle.dumps(("ok", _SizedBomb())))
    assert outcome == "raised" and "may not hold builtins.bytearray" in str(error)


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


def test_the_server_ends_when_its_caller_is_killed(tmp_path: Path) -> None:
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


# --------------------------------------------------------------------------- a lost server


def test_a_stuck_server_past_the_deadline_is_a_timeout(
    server: forkserver.ForkServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that stops answering is no crash of the document; when the deadline has
    passed meanwhile, it is a timeout."""
    monkeypatch.setattr(isolated, "GRACE_SECONDS", 0.2)
    os.kill(_server_pid(server), signal.SIGSTOP)
    with pytest.raises(ChildStopped) as caught:
        run_isolated(_sleep_forever, soon(0.1), quiet=QUIET)
    assert caught.value.timed_out, str(caught.value)


def test_a_call_that_lost_its_server_leaves_the_replacement_alone(
    server: forkserver.ForkServer,
) -> None:
    first = server._proc
    assert first is not None
    results: list[tuple[int, int]] = []
    call = threading.Thread(
        target=lambda: results.append(
            run_isolated(_slow_whose_child, soon(), quiet=QUIET, args=(1.0,))
        )
    )
    call.start()
    _wait_for(lambda: bool(_children(first.pid)), "the call did not reach the server")
    with server._lock:  # as another call does when it finds the server lost: replace it
        old_control = server._control
        server._proc, server._control, server._ready = None, None, False
    _wait_ready(server, __name__)
    second = _server_pid(server)
    os.kill(first.pid, signal.SIGKILL)  # the first server dies with the call in it
    call.join()
    first.wait()
    assert old_control is not None
    old_control.close()
    assert results and results[0][1] == second  # run again in the replacement
    assert not _gone(second), "the replacement was killed"
    assert run_isolated(_whose_child, soon(), quiet=QUIET)[1] == second


def test_the_server_ignores_sigterm(server: forkserver.ForkServer) -> None:
    """SIGTERM is the gateway's to handle (it may be finishing calls in the server)."""
    pid = _server_pid(server)
    os.kill(pid, signal.SIGTERM)
    time.sleep(0.3)
    assert run_isolated(_whose_child, soon(), quiet=QUIET)[1] == pid


# --------------------------------------------------------------------------- the answer


@pytest.mark.parametrize(
    "exception",
    [SystemExit(3), KeyboardInterrupt(), asyncio.CancelledError(), OSError(2, "x")],
    ids=["SystemExit", "KeyboardInterrupt", "CancelledError", "OSError"],
)
def test_an_answer_raises_only_what_the_analysis_raises(exception: BaseException) -> None:
    """A taken-over child must not stop the gateway's worker (SystemExit) or task."""
    outcome, value = isolated_answer.loads_answer(pickle.dumps(("raised", exception)))
    assert outcome == "raised"
    assert isinstance(value, ChildError) and "may not hold" in str(value), repr(value)


def test_what_the_analysis_raises_still_comes_back_as_itself() -> None:
    for exception in (
        DocumentError("claim.pdf: malformed PDF (x)", code="document.malformed", field="f"),
        ChildError("x"),
        MemoryError(),
        RecursionError("deep"),
    ):
        outcome, value = isolated_answer.loads_answer(
            isolated_answer.dumps_answer(("raised", exception))
        )
        assert (outcome, type(value), str(value)) == ("raised", type(exception), str(exception))


def test_the_unpickler_never_asks_a_module_for_a_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """A module's `__getattr__` is code (it may import); names are read from its dict."""
    asked: list[str] = []

    def hook(name: str) -> type:
        asked.append(name)
        return KeyboardInterrupt

    for name in ("warden.guard.signals", "warden_test_hooked"):
        hooked = types.ModuleType(name)
        hooked.__getattr__ = hook  # type: ignore[method-assign]
        monkeypatch.setitem(sys.modules, name, hooked)
        payload = b"(Vok\nc" + name.encode() + b"\nSignal\nt."  # ("ok", name.Signal)
        _, value = isolated_answer.loads_answer(payload)
        assert isinstance(value, ChildError), repr(value)
    assert asked == []


def test_an_exception_the_analysis_did_not_mean_comes_back_described(
    server: forkserver.ForkServer,
) -> None:
    with pytest.raises(ChildError, match="ValueError: a bug in the analysis"):
        run_isolated(_raise_value_error, soon(), quiet=QUIET)  # in the server
    with pytest.raises(ChildError, match="SystemExit: 3"):
        run_isolated(lambda: sys.exit(3), soon(), quiet=QUIET)  # in a child of the caller


def test_an_answer_over_the_cap_is_refused_not_read(server: forkserver.ForkServer) -> None:
    """The child cannot grow its memfd past the cap (RLIMIT_FSIZE), and had it done so,
    the caller would not read it (its size is checked first): either way a ChildError,
    never a terabyte read into the gateway."""
    with pytest.raises(ChildError):
        run_isolated(_answer_a_terabyte, soon(), quiet=QUIET)
    assert run_isolated(_whose_child, soon(), quiet=QUIET)[1] == _server_pid(server)


def test_a_length_prefix_over_the_cap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same in a child of the caller: its length prefix is its word only."""

    def child(work: Callable[[], object], write_end: int) -> None:
        os.write(write_end, (1 << 40).to_bytes(8, "big"))
        time.sleep(60)

    monkeypatch.setattr(isolated, "_child", child)
    started = time.monotonic()
    with pytest.raises(ChildError, match="more than"):
        run_isolated(lambda: None, soon(), quiet=QUIET)
    assert time.monotonic() - started < 3


# --------------------------------------------------------------------------- lifetimes


def test_the_server_kills_a_child_that_disarmed_its_timer(
    server: forkserver.ForkServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(isolated, "GRACE_SECONDS", 0.2)
    pidfile = str(tmp_path / "child")
    started = time.monotonic()
    with pytest.raises(ChildStopped) as caught:
        run_isolated(_disarm_and_sleep, soon(0.1), quiet=QUIET, args=(pidfile,))
    assert caught.value.timed_out, str(caught.value)
    # the server's kill (0.3 + KILL_AFTER_SECONDS), not the caller giving up on the server
    assert time.monotonic() - started < 0.3 + forkserver.SERVER_MARGIN_SECONDS - 0.2
    assert _gone(int(Path(pidfile).read_text()))
    assert run_isolated(_whose_child, soon(), quiet=QUIET)[1] == _server_pid(server)


def test_stopping_the_server_ends_its_children(
    server: forkserver.ForkServer, tmp_path: Path
) -> None:
    """Even one that disarmed its timer and its death with the server."""
    pidfile = str(tmp_path / "child")
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            server.run(__name__, "_disarm_and_sleep", (pidfile,), isolated._limits(soon(30)))
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    _wait_for(lambda: os.path.exists(pidfile), "the child did not start")
    child = int(Path(pidfile).read_text())
    server.stop()
    _wait_for(lambda: _gone(child), "the child outlived its server", seconds=3)
    caller.join()
    assert outcome and isinstance(outcome[0], forkserver.ServerLost)


def test_a_child_keeps_none_of_the_callers_descriptors(tmp_path: Path) -> None:
    """A child of the caller (the fallback) inherits every descriptor the gateway holds
    (its listening socket, another call's pipe); it closes all but its own pipe before
    it reads the file, and its standard streams go to /dev/null."""
    secret = os.open(tmp_path / "held-by-the-gateway", os.O_RDWR | os.O_CREAT)
    try:
        fds, out = run_isolated(
            lambda: (
                sorted(int(f) for f in os.listdir("/proc/self/fd")),
                os.readlink("/proc/self/fd/1"),
            ),
            soon(),
            quiet=QUIET,
        )
    finally:
        os.close(secret)
    assert secret not in fds and len(fds) <= 5, fds  # 0-2, its pipe, listdir's own
    assert out == os.devnull


def test_descriptors_above_1024_do_not_break_isolation(server: forkserver.ForkServer) -> None:
    """select() refuses descriptors >= 1024: a gateway with many connections open."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1300:
        if hard != resource.RLIM_INFINITY and hard < 1300:
            pytest.skip("cannot open 1300 descriptors here")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1300, hard))
    pipes: list[tuple[int, int]] = []
    try:
        while not pipes or pipes[-1][1] < 1100:
            pipes.append(os.pipe())
        server.stop()  # started again with high descriptors, on both sides
        _wait_ready(server, __name__)
        assert run_isolated(_whose_child, soon(), quiet=QUIET)[1] == _server_pid(server)
        assert run_isolated(lambda: os.getppid(), soon(), quiet=QUIET) == os.getpid()
    finally:
        for pair in pipes:
            for fd in pair:
                os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --------------------------------------------------------------------------- shape


def _module_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str
) -> types.ModuleType:
    """A module from a file, importable by the server too (its sys.path is the caller's)."""
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    monkeypatch.setitem(sys.modules, name, module)  # gone again after the test
    return module


def _edit(tmp_path: Path, name: str, source: str) -> None:
    (tmp_path / f"{name}.py").write_text(source)
    shutil.rmtree(tmp_path / "__pycache__", ignore_errors=True)


def _served_now(started: forkserver.ForkServer, module: str) -> bool:
    """Whether a freshly started server runs `module` (once it is up, whatever it says)."""
    try:
        _wait_for(
            lambda: started.runs_like_caller(module) or started._ready,
            "the fork server did not start",
            seconds=30,
        )
        return started.runs_like_caller(module)
    finally:
        started.stop()


def test_an_edited_function_body_is_not_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Edited on disk after the caller imported it, then a new server: other code."""
    name = f"warden_edited_{os.getpid()}"
    _module_in(tmp_path, monkeypatch, name, "def answer():\n    return 1\n")
    assert _served_now(forkserver.ForkServer((name,)), name)
    _edit(tmp_path, name, "def answer():\n    return 22\n")  # same name, same first line
    assert not _served_now(forkserver.ForkServer((name,)), name)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (  # a decorated function: the wrapper's code is the same whatever it wraps
            "import functools\n@functools.lru_cache\ndef answer():\n    return 1\n",
            "import functools\n@functools.lru_cache\ndef answer():\n    return 2\n",
        ),
        (  # a default changed, the body not
            "def answer(n=1):\n    return n\n",
            "def answer(n=2):\n    return n\n",
        ),
    ],
)
def test_an_edit_the_bytecode_alone_does_not_show_is_not_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, before: str, after: str
) -> None:
    name = f"warden_edited_{os.getpid()}_{abs(hash(before)) % 1000}"
    _module_in(tmp_path, monkeypatch, name, before)
    assert _served_now(forkserver.ForkServer((name,)), name)
    _edit(tmp_path, name, after)
    assert not _served_now(forkserver.ForkServer((name,)), name)


def test_another_library_version_is_not_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work, library = f"warden_work_{os.getpid()}", f"warden_library_{os.getpid()}"
    _module_in(tmp_path, monkeypatch, work, "def answer():\n    return 1\n")
    _module_in(tmp_path, monkeypatch, library, "__version__ = '1.0'\n")
    versions = ((library, "__version__"),)
    assert _served_now(forkserver.ForkServer((work,), versions=versions), work)
    _edit(tmp_path, library, "__version__ = '2.0'\n")  # upgraded under the running gateway
    assert not _served_now(forkserver.ForkServer((work,), versions=versions), work)


def test_a_checked_module_that_differs_stops_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work, helper = f"warden_work_{os.getpid()}", f"warden_helper_{os.getpid()}"
    _module_in(tmp_path, monkeypatch, work, "def answer():\n    return 1\n")
    helper_module = _module_in(tmp_path, monkeypatch, helper, "LIMIT = 1\n")
    started = forkserver.ForkServer((work,), checked=(helper,))
    try:
        _wait_ready(started, work)
        monkeypatch.setattr(helper_module, "LIMIT", 5)
        assert not started.runs_like_caller(work)
        monkeypatch.setattr(helper_module, "LIMIT", 1)
        assert started.runs_like_caller(work)
    finally:
        started.stop()


def test_the_default_server_checks_what_the_analysis_uses() -> None:
    checked = isolated._SERVER.checked
    assert {"warden.guard.documents", "warden.guard.pdf_damage", "warden.guard.signals"} <= set(
        checked
    )
    assert {module for module, _ in isolated._SERVER.versions} >= {"pypdf", "pypdfium2.version"}


# --------------------------------------------------------------------------- robustness


def test_a_message_without_descriptors_does_not_end_the_server(
    server: forkserver.ForkServer,
) -> None:
    pid = _server_pid(server)
    control = server._control
    assert control is not None
    read_end, write_end = os.pipe()
    try:
        with server._lock:
            control.send(b"R" + bytes(8))  # no descriptors
            # more descriptors than a request has: the rest is cut off (MSG_CTRUNC)
            socket.send_fds(control, [b"R" + bytes(8)], [read_end, write_end, read_end])
            socket.send_fds(control, [b"nonsense"], [read_end, write_end])
    finally:
        os.close(read_end)
        os.close(write_end)
    time.sleep(0.3)
    assert not _gone(pid), "the server ended"
    assert run_isolated(_whose_child, soon(), quiet=QUIET)[1] == pid


def test_no_descriptor_leaks_when_no_socket_pair_can_be_made(
    server: forkserver.ForkServer,
) -> None:
    def refuse(*args: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    before = len(os.listdir("/proc/self/fd"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "socketpair", refuse)
        with pytest.raises(OSError):
            server.run(__name__, "_whose_child", (), isolated._limits(soon()))
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_server_that_cannot_start_is_not_started_on_every_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    starts: list[object] = []
    popen = subprocess.Popen

    def counted(*args: Any, **kwargs: Any) -> Any:
        starts.append(args)
        return popen(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", counted)
    name = "warden_no_such_module"  # the server fails at its import
    broken = forkserver.ForkServer((name,))
    try:
        until = time.monotonic() + 30
        while len(starts) < forkserver.START_FAILURES and time.monotonic() < until:
            assert not broken.runs_like_caller(name)
            time.sleep(0.02)
        assert len(starts) == forkserver.START_FAILURES
        for _ in range(60):  # the calls fork from the caller; no start for a while
            assert not broken.runs_like_caller(name)
            time.sleep(0.02)
        assert len(starts) == forkserver.START_FAILURES
    finally:
        broken.stop()


def test_the_working_directory_cannot_shadow_the_servers_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "warden").mkdir()
    (tmp_path / "warden" / "__init__.py").write_text("raise SystemExit('shadowed')\n")
    monkeypatch.chdir(tmp_path)
    started = forkserver.ForkServer((__name__,))
    try:
        _wait_ready(started, __name__)
    finally:
        started.stop()


def test_no_traceback_when_the_caller_exits_while_the_server_starts(tmp_path: Path) -> None:
    (tmp_path / "warden_slow_import.py").write_text("import time\ntime.sleep(1.5)\n")
    script = (
        "import os, sys, time\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "from warden.guard import forkserver\n"
        "s = forkserver.ForkServer(('warden_slow_import',))\n"
        "assert not s.runs_like_caller('warden_slow_import')\n"
        "time.sleep(0.7)\n"  # the server is importing its preload now
        "os._exit(0)\n"
    )
    # stderr reaches its end when the server, which inherited it, has exited too
    ended = subprocess.run(
        [sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, timeout=60
    )
    assert ended.returncode == 0
    assert "Traceback" not in ended.stderr, ended.stderr


def test_a_server_that_stopped_reading_does_not_hang_its_callers(
    server: forkserver.ForkServer,
) -> None:
    """A stopped server (SIGSTOP from a taken-over child) lets its socket fill: the next
    hand-over must not block while holding the lock every other caller needs."""
    stuck = server._proc
    assert stuck is not None
    os.kill(stuck.pid, signal.SIGSTOP)
    control = server._control
    assert control is not None
    control.setblocking(False)
    with suppress(BlockingIOError):  # fill the socket as a few hundred calls would
        while True:
            control.send(b"x" * 4096)
    control.setblocking(True)
    started = time.monotonic()
    run_isolated(_whose_child, soon(10), quiet=QUIET)  # answered by a new server
    assert time.monotonic() - started < 8
    assert stuck.poll() is not None and _server_pid(server) != stuck.pid


def test_a_fork_that_fails_leaks_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of processes or memory: a ChildStopped, both pipe ends closed (they leaked, and
    the OSError escaped as a 500)."""
    fds = len(os.listdir("/proc/self/fd"))

    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(isolated.os, "fork", no_fork)
    for _ in range(5):
        with pytest.raises(ChildStopped, match="could not be started"):
            run_isolated(lambda: 1, soon(), quiet=QUIET)
    monkeypatch.undo()
    assert len(os.listdir("/proc/self/fd")) == fds
