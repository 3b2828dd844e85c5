"""Run one analysis in a forked child that can be stopped.

pdfium is a C library: its calls cannot be interrupted from Python, and on some broken
PDFs that pypdf reads differently (so the pre-checks never see the bomb) it parses for
minutes or allocates gigabytes inside one call (found by fuzzing `analyze_pdf`). The
deadline checks between steps cannot stop that. A forked child can be: the parent waits
for its answer until the deadline plus a grace period, then kills it; the child runs under
an address-space cap, so an allocation storm ends the child, not the gateway.

Fork (not spawn): the child starts at once with everything already imported and sees the
caller's state as it is (the policy's limits, a test's monkeypatch). It only runs the
analysis and leaves with `os._exit`, touching none of the parent's threads, sockets or
files. Without `os.fork` (another platform) the work runs in the caller's process.

Forking a big gateway per call is most of the cost, though (its page tables, the child's
teardown, copy-on-write faults in the gateway afterwards): a module-level function of a
module in `FORKSERVER_PRELOAD` runs instead in a child of a small fork server
(`warden.guard.forkserver`), as long as that module looks in the server as it does here.
A lambda, or a module a test has monkeypatched, still runs in a child of the caller (one
that keeps none of the caller's descriptors). Work whose server is lost with it runs once
more in a new server (the server's death is no verdict on the document), never in a child
of the caller: a hostile file could force that by killing its server."""

from __future__ import annotations

import os
import select
import signal
import time
import types
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from typing import Any, TypeVar

from warden.guard import forkserver, pdfgen
from warden.guard.isolated_answer import (
    MAX_ANSWER_BYTES,
    ChildError,
    dumps_answer,
    loads_answer,
)

T = TypeVar("T")

#: how far the child's address space may grow beyond the parent's at the fork
CHILD_EXTRA_ADDRESS_SPACE = 3 * 1024**3
#: how long past the work's own deadline the parent waits before it kills the child
GRACE_SECONDS = 2.0
#: modules whose functions the fork server runs (imported there, nothing else is)
FORKSERVER_PRELOAD = ("warden.guard.documents",)
#: modules that must look in the server as they do here for it to run anything: the
#: served ones and what their code uses (an edit on disk since the gateway started, then
#: a restarted server, would run other code than the gateway's)
FORKSERVER_CHECKED = (
    *FORKSERVER_PRELOAD,
    "warden.guard.pdf_damage",
    "warden.guard.signals",
    "warden.guard.isolated_answer",
    "warden.errors",
)
#: library versions that must be the same in the server: (module, attribute)
FORKSERVER_VERSIONS = (
    ("pypdf", "__version__"),
    ("pypdfium2.version", "PYPDFIUM_INFO"),
    ("pypdfium2.version", "PDFIUM_INFO"),
)


def _warmup_pdf() -> bytes:
    """One page of Helvetica text with an Info dictionary: what the server analyses once
    at its start so that pypdf's and pdfium's lazy imports, font tables and caches are in
    place in every child it forks (not loaded again per PDF)."""
    return pdfgen.build_pdf([pdfgen.text_page("Claim 1: warm-up text")], title="Warm-up")


#: what the fork server runs once in its own process before it forks any child
FORKSERVER_WARMUP = (("warden.guard.documents", "analyze_pdf", (_warmup_pdf(),)),)


class ChildStopped(Exception):
    """The child did not answer: killed at the deadline, or it died (memory, a crash)."""

    def __init__(self, reason: str, *, timed_out: bool) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


def run_isolated(
    work: Callable[..., T],
    deadline: float,
    *,
    quiet: AbstractContextManager[Any],
    args: tuple[Any, ...] = (),
) -> T:
    """`work(*args)` in a child; its result, or the exception it raised, comes back
    pickled. `deadline` is a `time.monotonic()` value (the clock is the same in the
    child). `quiet` is held while forking from the caller: a lock no other thread may hold
    at that moment (the child gets it held, so the work must not take that same lock)."""
    if not hasattr(os, "fork") or forkserver.in_server():
        return work(*args)
    if _served(work):
        try:
            payload = _run_served(work, args, deadline)
        except forkserver.NotReady:
            payload = None  # starting, or gone just now: fork from the caller this once
        except forkserver.ServerLost as lost:
            # not necessarily the document's doing: once more, in a new server — never in
            # a child of the gateway, which a hostile file could force by killing its
            # server (that child would hold the gateway's memory)
            payload = _once_more_served(work, args, deadline, str(lost))
        if payload is not None:
            served: T = _answer(payload)
            return served
    result: T = _answer(_run_forked(work, args, deadline, quiet))
    return result


#: how long a call whose server was lost waits for the next one to be ready
RESTART_WAIT_SECONDS = 5.0


def _run_served(work: Callable[..., Any], args: tuple[Any, ...], deadline: float) -> bytes:
    """The answer of `work(*args)` from the fork server; `NotReady` and `ServerLost` are
    the caller's to handle, a child's death is a ChildStopped, a bad answer a ChildError."""
    try:
        payload: bytes = _SERVER.run(work.__module__, work.__qualname__, args, _limits(deadline))
    except forkserver.Died as died:
        if died.timed_out:  # its timer did not end it; the server did
            raise ChildStopped("did not finish in time", timed_out=True) from None
        raise _stopped(died.status) from None
    except forkserver.BadAnswer as bad:
        raise ChildError(str(bad)) from None
    return payload


def _once_more_served(
    work: Callable[..., Any], args: tuple[Any, ...], deadline: float, lost: str
) -> bytes:
    """The answer of `work(*args)` from a new fork server, started now; ChildStopped when
    none is ready in time or it is lost as well."""
    until = min(deadline, time.monotonic() + RESTART_WAIT_SECONDS)
    while not _SERVER.runs_like_caller(work.__module__):
        if time.monotonic() >= until:
            raise ChildStopped(
                f"the fork server {lost}, and no new one was ready in time",
                timed_out=time.monotonic() >= deadline,
            )
        time.sleep(0.02)
    try:
        return _run_served(work, args, deadline)
    except (forkserver.NotReady, forkserver.ServerLost) as again:
        raise ChildStopped(f"the fork server {lost}, then {again}", timed_out=False) from None


def _served(work: Callable[..., Any]) -> bool:
    """Whether the fork server can run `work` as the caller would (see the module doc)."""
    return (
        isinstance(work, types.FunctionType)
        and work.__module__ in FORKSERVER_PRELOAD
        and "<" not in work.__qualname__
        and forkserver.ForkServer.available()
        and _SERVER.runs_like_caller(work.__module__)
    )


def _limits(deadline: float) -> dict[str, float]:
    """What the child enforces on itself, read now (a test may have changed them)."""
    return {
        "deadline": deadline,
        "grace": GRACE_SECONDS,
        "extra_address_space": CHILD_EXTRA_ADDRESS_SPACE,
    }


def _stopped(status: int) -> ChildStopped:
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGALRM:
        return ChildStopped("did not finish in time", timed_out=True)  # the child's timer
    how = (
        f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
        if os.WIFSIGNALED(status)
        else f"exit status {os.waitstatus_to_exitcode(status)}"
    )
    return ChildStopped(f"ended without an answer: {how}", timed_out=False)


def _answer(payload: bytes) -> Any:
    outcome, value = loads_answer(payload)
    if outcome == "raised":
        raise value
    return value


def _run_forked(
    work: Callable[..., Any],
    args: tuple[Any, ...],
    deadline: float,
    quiet: AbstractContextManager[Any],
) -> bytes:
    """The answer of `work(*args)` run in a child of the caller (sees the caller's state)."""
    read_end, write_end = os.pipe()
    try:
        with quiet:
            pid = os.fork()
    except OSError as exc:  # out of processes or memory: no verdict on the document
        os.close(read_end)
        os.close(write_end)
        raise ChildStopped(f"could not be started ({exc.strerror})", timed_out=False) from None
    if pid == 0:  # the child
        os.close(read_end)
        _child(lambda: work(*args), write_end)
    os.close(write_end)
    try:
        payload = _read_until(read_end, deadline + GRACE_SECONDS)
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
        os.close(read_end)
        _reap(pid)
        raise ChildStopped("did not finish in time", timed_out=True) from None
    except BaseException:  # interrupted while waiting: the child goes too
        os.kill(pid, signal.SIGKILL)
        os.close(read_end)
        _reap(pid)
        raise
    os.close(read_end)
    if payload is not None:  # the answer is in: the child's exit (its teardown) is reaped later
        _EXITING.append(pid)
        _reap_exited()
        return payload
    raise _stopped(_reap(pid))


def _child(work: Callable[[], Any], write_end: int) -> None:
    status = 0
    try:
        forkserver.confine(keep=(write_end,))
        forkserver.cap_address_space(CHILD_EXTRA_ADDRESS_SPACE)
        try:
            answer: tuple[str, Any] = ("ok", work())
        except BaseException as exc:  # every outcome goes back to the parent
            answer = ("raised", exc)
        payload = dumps_answer(answer)
        view = memoryview(len(payload).to_bytes(8, "big") + payload)
        while view:
            view = view[os.write(write_end, view) :]
    except BaseException:  # never return into the parent's code
        status = 1
    finally:
        os._exit(status)


def _read_until(fd: int, deadline: float) -> bytes | None:
    """The child's length-prefixed answer, as soon as it is complete (the child's exit,
    the unmapping of a copy of the gateway, comes after); None at EOF without one."""
    data = bytearray()
    size = -1
    poller = select.poll()  # not select: it refuses descriptors of 1024 and above
    poller.register(fd, select.POLLIN)
    while size < 0 or len(data) < size + 8:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        if not poller.poll(int(left * 1000) + 1):
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return None
        data += chunk
        if size < 0 and len(data) >= 8:
            size = int.from_bytes(data[:8], "big")
            if size > MAX_ANSWER_BYTES:  # the child's word, as a served one's
                raise ChildError(f"the answer is {size} bytes, more than {MAX_ANSWER_BYTES}")
    return bytes(data[8:])


#: children that answered and are exiting (reaped without waiting, at the next call)
_EXITING: list[int] = []


def _reap_exited() -> None:
    for pid in list(_EXITING):
        with suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == 0:
                continue
        with suppress(ValueError):  # another thread reaped it meanwhile
            _EXITING.remove(pid)


def _reap(pid: int) -> int:
    with suppress(ChildProcessError):
        return os.waitpid(pid, 0)[1]
    return 0


_SERVER = forkserver.ForkServer(
    FORKSERVER_PRELOAD,
    FORKSERVER_WARMUP,
    checked=FORKSERVER_CHECKED,
    versions=FORKSERVER_VERSIONS,
)
