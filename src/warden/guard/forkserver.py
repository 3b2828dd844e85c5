"""A small process that forks the isolated analyses, so the gateway itself never forks.

Forking the gateway per PDF costs more than the analysis: the fork copies the page tables
of everything loaded (the injection detector's arrays and encoder weights), the child's
teardown unmaps all of it, and afterwards the gateway takes a copy-on-write fault on each
page it writes again. This server is a fresh interpreter that imports only the analysis
modules (`preload`); per call it forks one short-lived child from its own small address
space. The request (a module-level function named by reference, its arguments, the
limits) and the answer travel in a memfd passed over a Unix socket, so neither side ever
blocks on a full pipe.

The child arms a real-time timer at the deadline plus the grace (SIGALRM, default action:
the kernel ends it even inside a C call that never returns), caps its address space, and
dies with the server (PR_SET_PDEATHSIG; the server is single-threaded). A child whose PDF
library was taken over can disarm all of that, so the server also SIGKILLs every child
still running `KILL_AFTER_SECONDS` past its deadline plus grace, and the server runs in
its own session: stopping it kills its process group, the children with it. The server
ends when its caller does (EOF on its socket), ignoring SIGINT and SIGTERM (meant for the
gateway, which may still be finishing the calls in flight). It reaps every child and
reports how one that did not answer ended. An answer is at most `MAX_ANSWER_BYTES` and
unpickled through an allow-list (`loads_answer`).

The child sees the server's copy of the code, not the caller's: `runs_like_caller` tells
whether the caller's modules still have the shape they have in the server (a monkeypatched
function or constant does not, nor a module edited on disk since the caller imported it,
nor another version of the PDF libraries), and `warden.guard.isolated` forks from the
caller when they do not."""

from __future__ import annotations

import ctypes
import importlib
import math
import mmap
import os
import pickle
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from contextlib import suppress
from typing import Any

from warden.guard.code_shape import identity, library_versions, shape
from warden.guard.isolated_answer import MAX_ANSWER_BYTES, dumps_answer

#: how long the caller waits past the child's deadline plus grace before it counts the
#: server as stuck (the server itself kills the child at `KILL_AFTER_SECONDS`)
SERVER_MARGIN_SECONDS = 2.0
#: how long past its deadline plus grace (its own timer) the server lets a child run
#: before it SIGKILLs it: the child may have disarmed its timer
KILL_AFTER_SECONDS = 0.5
#: after this many failed starts within `START_WINDOW_SECONDS`, the server is not started
#: again for `START_PAUSE_SECONDS` (the calls fork from the caller meanwhile)
START_FAILURES = 3
START_WINDOW_SECONDS = 60.0
START_PAUSE_SECONDS = 30.0
_MESSAGE = 1 << 16
_REQUEST = struct.Struct("=cd")  # b"R", the monotonic time the child must be gone by


class ServerLost(Exception):
    """The server died or stopped answering; the call's child is gone with it."""


class NotReady(Exception):
    """The server is not (yet) running: nothing was handed over, fork from the caller."""


class Died(Exception):
    """The child ended without an answer; `status` is its wait status, `timed_out` whether
    the server killed it for running past its deadline."""

    def __init__(self, status: int, *, timed_out: bool = False) -> None:
        super().__init__(status)
        self.status = status
        self.timed_out = timed_out


class BadAnswer(Exception):
    """What the child handed back is not an answer (too large, or a garbled message)."""


def _alive(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the process still runs, without reaping it (its pid, which is also its
    process group's, stays ours until `proc.wait()`)."""
    if proc.returncode is not None:
        return False
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:
        return False


def _wait_readable(fd: int, timeout: float | None) -> bool:
    """Whether `fd` became readable (or hung up) within `timeout` seconds; poll, not
    select, which refuses descriptors of 1024 and above."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0, math.ceil(timeout * 1000))))


# --------------------------------------------------------------------------- caller side


class ForkServer:
    """One server process per caller process, started lazily and again after it dies.

    `preload` are the modules whose functions it runs; `checked` (default: `preload`) the
    modules that must have the same shape in the server as here for it to run any of them
    (the served ones and what their code calls); `versions` the (module, attribute) pairs
    of libraries that must be the same version.

    Thread-safe: each call has its own socket pair and memfd; only the start and the
    hand-over of a call to the server are serialised."""

    def __init__(
        self,
        preload: tuple[str, ...],
        warmup: tuple[tuple[str, str, tuple[Any, ...]], ...] = (),
        *,
        checked: tuple[str, ...] = (),
        versions: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.preload = preload
        self.warmup = warmup
        self.checked = tuple(dict.fromkeys(preload + checked))
        self.versions = versions
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._owner = 0
        self._ready = False
        self._shapes: dict[str, dict[str, Any]] = {}
        self._versions: dict[str, str | None] = {}
        self._verdict: tuple[tuple[Any, ...], bool] | None = None
        self._failed_starts: list[float] = []
        self._paused_until = 0.0

    @staticmethod
    def available() -> bool:
        return hasattr(os, "fork") and hasattr(os, "memfd_create") and hasattr(socket, "send_fds")

    def runs_like_caller(self, module_name: str) -> bool:
        """Whether the server is up and its copies of the checked modules (and libraries)
        have the caller's shape. Starts the server when it is not running (the first calls
        fork from the caller while it imports). The verdict is kept while the caller's
        modules keep their identity (`code_shape.identity`), so a call costs a few dict walks."""
        if module_name not in self.preload or not self._ensure_started():
            return False
        shapes, wanted = self._shapes, self._versions
        modules = [sys.modules.get(name) for name in self.checked]
        key: tuple[Any, ...] = (
            id(shapes),
            *(None if m is None else identity(m) for m in modules),
            *(id(sys.modules.get(name)) for name, _ in self.versions),
        )
        seen = self._verdict
        if seen is None or seen[0] != key:
            same = all(
                m is not None and shape(m) == shapes.get(name)
                for name, m in zip(self.checked, modules, strict=True)
            )
            seen = (key, same and library_versions(self.versions) == wanted)
            self._verdict = seen
        return seen[1]

    def run(
        self, module: str, qualname: str, args: tuple[Any, ...], limits: dict[str, float]
    ) -> Any:
        """The answer of `module.qualname(*args)` run in a child of the server: the
        pickled ("ok" | "raised", value) the child wrote. Raises `NotReady` (nothing was
        handed over), `Died`, `BadAnswer` or `ServerLost`."""
        request = pickle.dumps((module, qualname, args, limits))
        gone_by = limits["deadline"] + limits["grace"]
        memfd = os.memfd_create("warden-isolated", os.MFD_CLOEXEC)
        ours: socket.socket | None = None
        theirs: socket.socket | None = None
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            _write_all(memfd, request)
            with self._lock:
                control, proc = self._control, self._proc
                if control is None or proc is None or not self._ready:
                    raise NotReady
                # never blocking under the lock: a stopped server lets the socket fill
                # (a non-blocking socket, not MSG_DONTWAIT, which some kernels ignore
                # for a full SEQPACKET peer)
                control.setblocking(False)
                try:
                    socket.send_fds(
                        control, [_REQUEST.pack(b"R", gone_by)], [theirs.fileno(), memfd]
                    )
                except BlockingIOError:  # it has not read its calls for a while: stuck
                    self._stop_locked()
                    raise ServerLost("was not taking calls") from None
                except OSError:
                    self._stop_locked()
                    raise NotReady from None
                finally:
                    with suppress(OSError):
                        control.setblocking(True)
            theirs.close()
            message = _receive(ours, gone_by + SERVER_MARGIN_SECONDS)
            if message is None:  # not even the server's own kill ended it: it is stuck
                self._stop_if_current(proc)
                raise ServerLost("stopped answering")
            if not message:  # EOF, or an empty message from a taken-over child
                if not _ends_soon(proc):
                    raise BadAnswer("the child sent an empty message instead of an answer")
                self._stop_if_current(proc)  # the server died with the call in it
                raise ServerLost("died")
            return _take_answer(message, memfd)
        finally:
            for sock in (theirs, ours):
                if sock is not None:
                    sock.close()
            os.close(memfd)

    def stop(self) -> None:
        """Stop the current server and its children (at exit, or in a test)."""
        with self._lock:
            self._stop_locked()

    def _stop_if_current(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop `proc` unless it has been replaced meanwhile: a call that lost its server
        must not kill the next one, which other calls may be using."""
        with self._lock:
            if self._proc is proc:
                self._stop_locked()

    def _stop_locked(self) -> None:
        proc, control = self._proc, self._control
        self._proc, self._control, self._ready = None, None, False
        self._shapes, self._versions, self._verdict = {}, {}, None
        if control is not None:
            control.close()
        if proc is not None and self._owner == os.getpid():
            if proc.returncode is None:  # not reaped: its pid is still its group's
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)  # the server and its children
            proc.wait()

    def _ensure_started(self) -> bool:
        proc = self._proc
        if self._ready and self._owner == os.getpid() and proc is not None and _alive(proc):
            return True
        with self._lock:
            if self._owner != os.getpid():  # a forked worker: the server is its parent's
                if self._control is not None:
                    self._control.close()
                self._proc, self._control, self._ready = None, None, False
                self._shapes, self._versions, self._verdict = {}, {}, None
                self._owner = os.getpid()
            if self._proc is not None and not _alive(self._proc):
                if not self._ready:
                    self._start_failed_locked()
                self._stop_locked()  # it died: reap it, start another
            if self._proc is None:
                if time.monotonic() < self._paused_until:
                    return False
                self._start_locked()
            if not self._ready and self._control is not None:
                self._check_ready_locked()
            return self._ready

    def _start_failed_locked(self) -> None:
        """Count a failed start; too many in a row pause the starts (see START_FAILURES)."""
        now = time.monotonic()
        self._failed_starts = [t for t in self._failed_starts if now - t < START_WINDOW_SECONDS]
        self._failed_starts.append(now)
        if len(self._failed_starts) >= START_FAILURES:
            self._paused_until = now + START_PAUSE_SECONDS
            self._failed_starts = []

    def _start_locked(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                # -P: the caller's working directory cannot shadow a module
                [sys.executable, "-P", "-c", "from warden.guard.forkserver import serve; serve()"],
                pass_fds=[theirs.fileno()],
                env={
                    **_plain_environment(),
                    "WARDEN_FORKSERVER_FD": str(theirs.fileno()),
                    "WARDEN_FORKSERVER_PARENT": str(os.getpid()),
                },
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: `stop` kills it whole
            )
        except OSError:
            ours.close()
            self._start_failed_locked()
            return
        finally:
            theirs.close()
        self._control = ours
        self._owner = os.getpid()
        setup = (sys.path, self.preload, self.checked, self.versions, self.warmup)
        try:
            ours.send(pickle.dumps(setup))
        except OSError:
            self._start_failed_locked()
            self._stop_locked()

    def _check_ready_locked(self) -> None:
        assert self._control is not None
        if not _wait_readable(self._control.fileno(), 0):
            return
        try:
            message = self._control.recv(1 << 24)
            ready = pickle.loads(message) if message else None
        except (OSError, pickle.UnpicklingError, EOFError):
            ready = None
        if not (isinstance(ready, tuple) and len(ready) == 2 and isinstance(ready[0], dict)):
            self._start_failed_locked()
            self._stop_locked()
            return
        self._shapes, self._versions = ready
        self._ready, self._verdict, self._failed_starts = True, None, []


def _ends_soon(proc: subprocess.Popen[bytes], within: float = 0.5) -> bool:
    """Whether the server is ending: its exit closes its descriptors (our EOF) a moment
    before it becomes a zombie."""
    until = time.monotonic() + within
    while _alive(proc):
        if time.monotonic() >= until:
            return False
        time.sleep(0.005)
    return True


def _take_answer(message: bytes, memfd: int) -> bytes:
    """The answer in the memfd once the child said b"A"; what the server reports else."""
    kind, status = message[:1], message[1:]
    if kind == b"A" and not status:
        size = os.fstat(memfd).st_size
        if size > MAX_ANSWER_BYTES:  # a child can make the memfd as large as it likes
            raise BadAnswer(f"the answer is {size} bytes, more than {MAX_ANSWER_BYTES}")
        return os.pread(memfd, size, 0) if size else b""
    if kind in (b"S", b"K") and status.isdigit():
        raise Died(int(status), timed_out=kind == b"K")
    if kind == b"F" and not status:
        raise ServerLost("could not fork a child (out of processes or memory)")
    # the child holds this socket too: a message neither it nor the server should send
    raise BadAnswer(f"the child sent {message[:20]!r} instead of an answer")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _receive(sock: socket.socket, until: float) -> bytes | None:
    """One message, b"" at EOF, None when `until` passed."""
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return None
        if _wait_readable(sock.fileno(), left):
            try:
                return sock.recv(_MESSAGE)
            except ConnectionResetError:
                return b""


# --------------------------------------------------------------------------- server side


class _Call:
    """A child of the server: the caller's socket, and when it is killed if still there."""

    __slots__ = ("conn", "kill_at", "killed")

    def __init__(self, conn: socket.socket, kill_at: float) -> None:
        self.conn = conn
        self.kill_at = kill_at
        self.killed = False


def serve() -> None:
    """The server's main loop: fork a child per request, reap children, report deaths,
    kill children past their deadline."""
    control = socket.socket(fileno=int(os.environ.pop("WARDEN_FORKSERVER_FD")))
    # not PR_SET_PDEATHSIG: it fires when the *thread* that started the server ends (a
    # pool's worker), not the process; the server ends at EOF on `control` instead,
    # which the kernel delivers when the caller's process is gone
    if os.getppid() != int(os.environ.pop("WARDEN_FORKSERVER_PARENT")):
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on the gateway: it ends us
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the gateway's stop: it still has calls
    global _IN_SERVER
    _IN_SERVER = True
    try:
        setup = control.recv(1 << 20)
    except OSError:
        os._exit(0)
    if not setup:  # the caller is gone already
        os._exit(0)
    path, preload, checked, versions, warmup = pickle.loads(setup)
    sys.path[:] = path
    for name in (*preload, *checked):
        importlib.import_module(name)
    shapes = {name: shape(sys.modules[name]) for name in checked}
    found = library_versions(versions, load=True)
    for module, qualname, args in warmup:  # lazy imports and caches, once, not per child
        with suppress(Exception):
            _resolve(module, qualname)(*args)
    try:
        control.send(pickle.dumps((shapes, found)))
    except OSError:  # the caller exited while we started: nothing to say, nobody to say it
        os._exit(0)
    _loop(control)


def _loop(control: socket.socket) -> None:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    poller = select.poll()
    poller.register(control.fileno(), select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    calls: dict[int, _Call] = {}
    while True:
        pending = [c.kill_at for c in calls.values() if not c.killed]
        timeout = None  # milliseconds to the next child's kill
        if pending:
            timeout = max(0, math.ceil((min(pending) - time.monotonic()) * 1000))
        try:
            ready = {fd for fd, _ in poller.poll(timeout)}
        except InterruptedError:
            continue
        if wake_r in ready:
            os.read(wake_r, 4096)
        _kill_overdue(calls)
        _reap(calls)
        if control.fileno() not in ready:
            continue
        try:
            data, fds, flags, _ = socket.recv_fds(control, _REQUEST.size, 2)
        except OSError:  # the caller's end is broken: as good as gone
            os._exit(0)
        if not data and not fds:  # EOF: the caller is gone
            os._exit(0)
        if len(fds) != 2 or flags & socket.MSG_CTRUNC or len(data) != _REQUEST.size:
            for fd in fds:  # nonsense (or descriptors cut short): drop it, keep serving
                os.close(fd)
            continue
        _, gone_by = _REQUEST.unpack(data)
        conn = socket.socket(fileno=fds[0])
        server = os.getpid()
        try:
            pid = os.fork()
        except OSError:  # EAGAIN, ENOMEM: this call fails, the server goes on
            with suppress(OSError):
                conn.send(b"F", socket.MSG_DONTWAIT)
            conn.close()
            os.close(fds[1])
            continue
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            for fd in (
                control.fileno(),
                wake_r,
                wake_w,
                *(c.conn.fileno() for c in calls.values()),
            ):
                os.close(fd)
            _child(conn, fds[1], server)
        os.close(fds[1])
        calls[pid] = _Call(conn, gone_by + KILL_AFTER_SECONDS)


def _kill_overdue(calls: dict[int, _Call]) -> None:
    """SIGKILL the children past their time: their own timer did not end them. They are
    not reaped yet, so the pid is still theirs."""
    now = time.monotonic()
    for pid, call in calls.items():
        if not call.killed and call.kill_at <= now:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            call.killed = True


def _reap(calls: dict[int, _Call]) -> None:
    while calls:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        call = calls.pop(pid, None)
        if call is not None:
            with suppress(OSError):  # the caller may have gone (it had its answer)
                call.conn.send(b"%c%d" % (b"K" if call.killed else b"S", status))
            call.conn.close()


def _child(conn: socket.socket, memfd: int, server: int) -> None:
    status = 0
    try:
        _die_with_parent(server)
        confine(keep=(conn.fileno(), memfd))
        module, qualname, args, limits = pickle.loads(_read_fd(memfd))
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.setitimer(
            signal.ITIMER_REAL, max(0.001, limits["deadline"] + limits["grace"] - time.monotonic())
        )
        cap_address_space(int(limits["extra_address_space"]))
        work = _resolve(module, qualname)
        try:
            answer: tuple[str, Any] = ("ok", work(*args))
        except BaseException as exc:  # every outcome goes back to the caller
            answer = ("raised", exc)
        payload = dumps_answer(answer)
        os.ftruncate(memfd, 0)
        os.lseek(memfd, 0, os.SEEK_SET)
        _write_all(memfd, payload)
        conn.send(b"A")
    except BaseException:  # never return into the server's loop
        status = 1
    finally:
        os._exit(status)


#: what the server's environment keeps of the gateway's: how to find Python and its
#: modules, the locale, the temporary directory — not the endpoints' API keys
_ENVIRONMENT = ("PATH", "PYTHONPATH", "LANG", "LANGUAGE", "TMPDIR", "TZ")


def _plain_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in _ENVIRONMENT or k.startswith("LC_")}


def confine(keep: tuple[int, ...]) -> None:
    """In a child about to read a hostile file: no descriptor but `keep` (not the
    gateway's sockets, nor another call's pipe inherited at a concurrent fork), standard
    streams to /dev/null (no forged log lines), and files it writes — its answer's memfd
    — no larger than an answer may be (EFBIG, not SIGXFSZ)."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    start = 3
    for fd in sorted(set(keep)):
        os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    cap = MAX_ANSWER_BYTES + 8
    resource.setrlimit(resource.RLIMIT_FSIZE, (cap, cap))


def _resolve(module: str, qualname: str) -> Any:
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


_IN_SERVER = False


def in_server() -> bool:
    """Whether this is the server's own process (its warm-up runs here, not in a child)."""
    return _IN_SERVER


def cap_address_space(extra: int) -> None:
    """RLIMIT_AS at the current size plus `extra` (never above the hard limit)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[0])
    cap = pages * os.sysconf("SC_PAGE_SIZE") + extra
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _read_fd(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    with mmap.mmap(fd, size, prot=mmap.PROT_READ) as view:
        return bytes(view)


def _die_with_parent(parent: int) -> None:
    """SIGKILL when the parent ends (Linux; elsewhere the child's timer still holds)."""
    with suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it ended before the line above
        os._exit(1)
