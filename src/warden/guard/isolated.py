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
files. Without `os.fork` (another platform) the work runs in the caller's process."""

from __future__ import annotations

import os
import pickle
import resource
import select
import signal
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from typing import Any, TypeVar

T = TypeVar("T")

#: how far the child's address space may grow beyond the parent's at the fork
CHILD_EXTRA_ADDRESS_SPACE = 3 * 1024**3
#: how long past the work's own deadline the parent waits before it kills the child
GRACE_SECONDS = 2.0


class ChildStopped(Exception):
    """The child did not answer: killed at the deadline, or it died (memory, a crash)."""

    def __init__(self, reason: str, *, timed_out: bool) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


class ChildError(Exception):
    """The work raised in the child something that does not cross a pipe as itself."""


def run_isolated(
    work: Callable[[], T], deadline: float, *, quiet: AbstractContextManager[Any]
) -> T:
    """`work()` in a forked child; its result, or the exception it raised, comes back
    pickled. `deadline` is a `time.monotonic()` value (the clock is the same in the
    child). `quiet` is held while forking: a lock no other thread may hold at that moment
    (the child gets it held, so the work must not take that same lock object)."""
    if not hasattr(os, "fork"):
        return work()
    read_end, write_end = os.pipe()
    with quiet:
        pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        _child(work, write_end)
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
    if payload:  # the answer is in: the child's exit (its teardown) is reaped later
        _EXITING.append(pid)
        _reap_exited()
    else:
        status = _reap(pid)
        how = (
            f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
            if os.WIFSIGNALED(status)
            else f"exit status {os.waitstatus_to_exitcode(status)}"
        )
        raise ChildStopped(f"ended without an answer: {how}", timed_out=False)
    outcome, value = pickle.loads(payload)
    if outcome == "raised":
        raise value
    result: T = value
    return result


def _child(work: Callable[[], Any], write_end: int) -> None:
    status = 0
    try:
        _cap_address_space()
        try:
            answer: tuple[str, Any] = ("ok", work())
        except BaseException as exc:  # every outcome goes back to the parent
            answer = ("raised", exc)
        try:
            payload = pickle.dumps(answer)
        except Exception as exc:  # an answer that does not pickle
            payload = pickle.dumps(("raised", ChildError(f"{type(exc).__name__}: {exc}")))
        view = memoryview(payload)
        while view:
            view = view[os.write(write_end, view) :]
    except BaseException:  # never return into the parent's code
        status = 1
    finally:
        os._exit(status)


def _cap_address_space() -> None:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[0])
    now = pages * os.sysconf("SC_PAGE_SIZE")
    cap = now + CHILD_EXTRA_ADDRESS_SPACE
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _read_until(fd: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


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
