"""A small process that forks the isolated analyses, so the gateway itself never forks.

Forking the gateway per PDF costs more than the analysis: the fork copies the page tables
of everything loaded (the injection detector's arrays and encoder weights), the child's
teardown unmaps all of it, and afterwards the gateway takes a copy-on-write fault on each
page it writes again. This server is a fresh interpreter that imports only the analysis
modules (`preload`); per call it forks one short-lived child from its own small address
space. The request (a module-level function named by reference, its arguments, the
limits) and the answer travel in a memfd passed over a Unix socket, so neither side ever
blocks on a full pipe.

The guarantees are the child's own, not the server's: it arms a real-time timer at the
deadline plus the grace (SIGALRM, default action: the kernel ends it even inside a C call
that never returns), caps its address space, and dies with the server (PR_SET_PDEATHSIG;
the server is single-threaded). The server ends when its caller does (EOF on its socket).
The server reaps every child and reports how one that did not answer ended.

The child sees the server's copy of the code, not the caller's: `runs_like_caller` tells
whether the caller's module still has the shape it has in the server (a monkeypatched
function or constant does not), and `warden.guard.isolated` forks from the caller when it
does not."""

from __future__ import annotations

import ctypes
import importlib
import io
import mmap
import os
import pickle
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from contextlib import suppress
from typing import Any

#: how long the server may take past the child's own deadline before it counts as stuck
SERVER_MARGIN_SECONDS = 2.0
_MESSAGE = 1 << 16
_SIMPLE = (int, float, complex, str, bytes, bool, type(None))
#: class members that say nothing about the code (`__slotnames__`: cached by pickling)
_NOT_CODE = frozenset({"__doc__", "__slotnames__", "__dict__", "__weakref__"})


class ServerLost(Exception):
    """The server died or stopped answering; the call's child is gone with it."""


class NotReady(Exception):
    """The server is not (yet) running: nothing was handed over, fork from the caller."""


class Died(Exception):
    """The child ended without an answer; `status` is its wait status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


# --------------------------------------------------------------------------- module shape


def _describe(value: Any, owner: str, depth: int = 0) -> Any:
    """What a value is, in terms that mean the same in two processes."""
    if isinstance(value, _SIMPLE):
        return ("v", repr(value))
    if isinstance(value, tuple | frozenset) and all(isinstance(v, _SIMPLE) for v in value):
        return ("v", repr(sorted(value, key=repr) if isinstance(value, frozenset) else value))
    if isinstance(value, re.Pattern):
        return ("re", value.pattern, value.flags)
    if isinstance(value, types.ModuleType):
        return ("m", value.__name__)
    if isinstance(value, staticmethod | classmethod):
        return (type(value).__name__, _describe(value.__func__, owner, depth))
    if isinstance(value, property):
        return ("p", *(_describe(f, owner, depth) for f in (value.fget, value.fset)))
    if isinstance(value, types.FunctionType):
        return ("f", value.__module__, value.__qualname__, value.__code__.co_firstlineno)
    if isinstance(value, type):
        if depth == 0 and value.__module__ == owner:
            members = sorted(
                (k, _describe(v, owner, 1)) for k, v in vars(value).items() if k not in _NOT_CODE
            )
            return ("c", value.__qualname__, tuple(members))
        return ("t", value.__module__, value.__qualname__)
    return ("o", type(value).__module__, type(value).__qualname__)


def shape(module: types.ModuleType) -> dict[str, Any]:
    """The module's globals and its classes' members, described (see `_describe`)."""
    name = module.__name__
    return {  # not dunders, nor what pytest's assertion rewriting adds (`@py_builtins`)
        k: _describe(v, name)
        for k, v in vars(module).items()
        if not k.startswith("__") and k.isidentifier()
    }


def _identity(module: types.ModuleType) -> tuple[int, ...]:
    """Cheap: changes when a global or a class member of the module is replaced."""
    ids: list[int] = []
    for value in list(vars(module).values()):
        ids.append(id(value))
        if isinstance(value, type) and value.__module__ == module.__name__:
            ids.extend(id(v) for v in list(vars(value).values()))
    return tuple(ids)


# --------------------------------------------------------------------------- caller side


class ForkServer:
    """One server process per caller process, started lazily and again after it dies.

    Thread-safe: each call has its own socket pair and memfd; only the start and the
    hand-over of a call to the server are serialised."""

    def __init__(
        self, preload: tuple[str, ...], warmup: tuple[tuple[str, str, tuple[Any, ...]], ...] = ()
    ) -> None:
        self.preload = preload
        self.warmup = warmup
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._owner = 0
        self._ready = False
        self._shapes: dict[str, dict[str, Any]] = {}
        self._verdicts: dict[str, tuple[tuple[int, ...], bool]] = {}

    @staticmethod
    def available() -> bool:
        return hasattr(os, "fork") and hasattr(os, "memfd_create") and hasattr(socket, "send_fds")

    def runs_like_caller(self, module_name: str) -> bool:
        """Whether the server is up and its copy of `module_name` has the caller's shape.
        Starts the server when it is not running (the first calls fork from the caller
        while it imports)."""
        if not self._ensure_started():
            return False
        module = sys.modules.get(module_name)
        shapes = self._shapes.get(module_name)
        if module is None or shapes is None:
            return False
        now = _identity(module)
        seen = self._verdicts.get(module_name)
        if seen is None or seen[0] != now:
            seen = (now, shape(module) == shapes)
            self._verdicts[module_name] = seen
        return seen[1]

    def run(
        self, module: str, qualname: str, args: tuple[Any, ...], limits: dict[str, float]
    ) -> Any:
        """The answer of `module.qualname(*args)` run in a child of the server: the
        pickled ("ok" | "raised", value) the child wrote. Raises `Died` or `ServerLost`."""
        request = pickle.dumps((module, qualname, args, limits))
        memfd = os.memfd_create("warden-isolated", os.MFD_CLOEXEC)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            _write_all(memfd, request)
            with self._lock:
                control = self._control
                if control is None or not self._ready:
                    raise NotReady
                try:
                    socket.send_fds(control, [b"R"], [theirs.fileno(), memfd])
                except OSError:
                    self._stop_locked()
                    raise NotReady from None
            theirs.close()
            wait_until = limits["deadline"] + limits["grace"] + SERVER_MARGIN_SECONDS
            message = _receive(ours, wait_until)
            if message is None:  # the child's timer did not end it: the server is stuck
                self.stop()
                raise ServerLost("stopped answering")
            if message[:1] == b"A":
                size = os.fstat(memfd).st_size
                return os.pread(memfd, size, 0) if size else b""
            if message[:1] == b"S":
                raise Died(int(message[1:]))
            self.stop()  # EOF: the server died with the call in it
            raise ServerLost("died")
        finally:
            theirs.close()
            ours.close()
            os.close(memfd)

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        proc, control = self._proc, self._control
        self._proc, self._control, self._ready = None, None, False
        self._shapes, self._verdicts = {}, {}
        if control is not None:
            control.close()
        if proc is not None and self._owner == os.getpid():
            with suppress(ProcessLookupError):
                proc.kill()
            proc.wait()

    def _ensure_started(self) -> bool:
        proc = self._proc
        if self._ready and self._owner == os.getpid() and proc is not None and proc.poll() is None:
            return True
        with self._lock:
            if self._owner != os.getpid():  # a forked worker: the server is its parent's
                if self._control is not None:
                    self._control.close()
                self._proc, self._control, self._ready = None, None, False
                self._shapes, self._verdicts = {}, {}
                self._owner = os.getpid()
            if self._proc is not None and self._proc.poll() is not None:
                self._stop_locked()  # it died: reap it, start another
            if self._proc is None:
                self._start_locked()
            if not self._ready and self._control is not None:
                self._check_ready_locked()
            return self._ready

    def _start_locked(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", "from warden.guard.forkserver import serve; serve()"],
                pass_fds=[theirs.fileno()],
                env={
                    **os.environ,
                    "WARDEN_FORKSERVER_FD": str(theirs.fileno()),
                    "WARDEN_FORKSERVER_PARENT": str(os.getpid()),
                },
                stdin=subprocess.DEVNULL,
                start_new_session=False,
            )
        except OSError:
            ours.close()
            return
        finally:
            theirs.close()
        self._control = ours
        self._owner = os.getpid()
        ours.send(pickle.dumps((sys.path, self.preload, self.warmup)))

    def _check_ready_locked(self) -> None:
        assert self._control is not None
        ready, _, _ = select.select([self._control], [], [], 0)
        if not ready:
            return
        try:
            message = self._control.recv(1 << 24)
            shapes = pickle.loads(message) if message else None
        except (OSError, pickle.UnpicklingError, EOFError):
            shapes = None
        if not isinstance(shapes, dict):
            self._stop_locked()
            return
        self._shapes, self._ready = shapes, True


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
        ready, _, _ = select.select([sock], [], [], left)
        if ready:
            try:
                return sock.recv(_MESSAGE)
            except ConnectionResetError:
                return b""


# --------------------------------------------------------------------------- server side


def serve() -> None:
    """The server's main loop: fork a child per request, reap children, report deaths."""
    control = socket.socket(fileno=int(os.environ.pop("WARDEN_FORKSERVER_FD")))
    # not PR_SET_PDEATHSIG: it fires when the *thread* that started the server ends (a
    # pool's worker), not the process; the server ends at EOF on `control` instead,
    # which the kernel delivers when the caller's process is gone
    if os.getppid() != int(os.environ.pop("WARDEN_FORKSERVER_PARENT")):
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on the gateway: it ends us
    global _IN_SERVER
    _IN_SERVER = True
    path, preload, warmup = pickle.loads(control.recv(1 << 20))
    sys.path[:] = path
    shapes = {name: shape(importlib.import_module(name)) for name in preload}
    for module, qualname, args in warmup:  # lazy imports and caches, once, not per child
        with suppress(Exception):
            _resolve(module, qualname)(*args)
    control.send(pickle.dumps(shapes))
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    calls: dict[int, socket.socket] = {}
    while True:
        try:
            ready, _, _ = select.select([control.fileno(), wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            os.read(wake_r, 4096)
        _reap(calls)
        if control.fileno() not in ready:
            continue
        try:
            _, fds, _, _ = socket.recv_fds(control, 16, 2)
        except OSError:
            fds = []
        if len(fds) != 2:  # the caller is gone (EOF) or sent nonsense
            for fd in fds:
                os.close(fd)
            if not fds:
                os._exit(0)
            continue
        conn = socket.socket(fileno=fds[0])
        server = os.getpid()
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in (control.fileno(), wake_r, wake_w, *(c.fileno() for c in calls.values())):
                os.close(fd)
            _child(conn, fds[1], server)
        os.close(fds[1])
        calls[pid] = conn


def _reap(calls: dict[int, socket.socket]) -> None:
    while calls:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = calls.pop(pid, None)
        if conn is not None:
            with suppress(OSError):  # the caller may have gone (it had its answer)
                conn.send(b"S%d" % status)
            conn.close()


def _child(conn: socket.socket, memfd: int, server: int) -> None:
    status = 0
    try:
        _die_with_parent(server)
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


def _resolve(module: str, qualname: str) -> Any:
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


_IN_SERVER = False


def in_server() -> bool:
    """Whether this is the server's own process (its warm-up runs here, not in a child)."""
    return _IN_SERVER


def dumps_answer(answer: tuple[str, Any]) -> bytes:
    """The pickled answer; one that does not pickle becomes a `ChildError`."""
    try:
        return pickle.dumps(answer)
    except Exception as exc:
        from warden.guard.isolated import ChildError

        return pickle.dumps(("raised", ChildError(f"{type(exc).__name__}: {exc}")))


#: what an answer holds besides exceptions and plain values (module, class)
ANSWER_CLASSES = frozenset(
    {
        ("warden.guard.documents", "DocumentReport"),
        ("warden.guard.documents", "HiddenText"),
        ("warden.guard.documents", "DocumentLimits"),
        ("warden.guard.signals", "Signal"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "bytearray"),
        ("builtins", "complex"),
    }
)


class _AnswerUnpickler(pickle.Unpickler):
    """Unpickles only what an answer can hold: the classes of `ANSWER_CLASSES` and
    exceptions of modules already loaded. The child has just parsed an attacker's file
    with a C library; were that library taken over, a free-form pickle would run the
    attacker's code in the gateway, undoing the isolation."""

    def find_class(self, module: str, name: str) -> Any:
        loaded = sys.modules.get(module)  # never import anything on the child's word
        found = getattr(loaded, name, None) if loaded is not None and "." not in name else None
        if isinstance(found, type) and (
            (module, name) in ANSWER_CLASSES or issubclass(found, BaseException)
        ):
            return found
        raise pickle.UnpicklingError(f"an isolated answer may not hold {module}.{name}")


def loads_answer(payload: bytes) -> tuple[str, Any]:
    """The child's ("ok" | "raised", value), read with `_AnswerUnpickler`; an answer that
    does not read is a `ChildError`."""
    try:
        outcome, value = _AnswerUnpickler(io.BytesIO(payload)).load()
    except Exception as exc:
        from warden.guard.isolated import ChildError

        return "raised", ChildError(f"the answer could not be read: {exc}")
    return outcome, value


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
