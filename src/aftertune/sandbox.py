"""Run untrusted Python (model-written code) in a throwaway Linux sandbox, one sandbox per program.

Each program runs in a fresh process tree with its own user (as root: a random unused uid; otherwise a
user namespace), PID, network, mount, IPC and UTS namespaces. Its root filesystem is a new tmpfs that
holds only read-only binds of the system directories and the Python installation; the user's home,
projects and /tmp do not exist in it. The only writable place is a size-limited tmpfs at /tmp (the
program's HOME and working directory), gone when the program ends. The network namespace has no
interface up, so nothing on the machine or beyond can be reached. rlimits cap CPU time, address
space, file size, open files and processes; the parent enforces wall time by killing the whole tree.
When the sandbox cannot be built here, running code raises an `AftertuneError` saying what is missing:
code is never run unsandboxed.

Process tree: the parent starts this file as a launcher (`python -I -S sandbox.py CONFIG`, code on
stdin). The launcher unshares the namespaces, builds the new root and forks "init", PID 1 of the new
PID namespace, which forks the program: it drops privileges, sets the rlimits and execs
`python -I -S main.py`. When init exits (after the program, or when the launcher dies: init has
PR_SET_PDEATHSIG) the kernel kills every process left in the namespace.
"""

# This file is also the launcher, run as a script under `python -I -S`, where only the standard library
# exists: it imports nothing from aftertune at module level, and the parent-only modules lazily.
from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from aftertune.progress import ProgressCallback

Status = Literal["passed", "failed", "timeout", "killed", "memory"]

#: the program's HOME and working directory inside the sandbox (on the writable tmpfs at /tmp)
SANDBOX_HOME = "/tmp/home"
#: where the program's source is inside the sandbox (read-only)
SANDBOX_PROGRAM = "/sandbox/main.py"
#: as root, each sandbox runs as a random uid (and gid) from this range, unused by any real account,
#: so that RLIMIT_NPROC, which the kernel counts per uid, limits each sandbox on its own
ROOT_UIDS = range(200_000, 260_000)
#: without root, the program's uid inside its user namespace (not 0: uid 0 would keep capabilities there)
USER_NS_UID = 1000

_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class Limits:
    """What one sandboxed program may use; the defaults suit unit-test-style programs."""

    #: CPU time (RLIMIT_CPU): SIGXCPU at this many seconds, SIGKILL one second later
    cpu_seconds: int = 10
    #: wall-clock time from start to end, sandbox setup (~0.1 s) included
    wall_seconds: float = 30.0
    #: address space (RLIMIT_AS) of each process: counts reserved memory, not only touched memory
    memory_mb: int = 512
    #: largest file the program may write (RLIMIT_FSIZE), its stdout and stderr included
    file_size_mb: int = 16
    #: size of the writable tmpfs (/tmp, HOME, working directory); it lives in RAM
    disk_mb: int = 64
    #: processes and threads of the sandbox user at once (RLIMIT_NPROC); stops fork bombs
    processes: int = 16
    #: open file descriptors (RLIMIT_NOFILE)
    open_files: int = 256
    #: stdout and stderr each: at most this many bytes are kept in the result (its head and tail)
    output_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not value > 0:
                from aftertune.errors import InputError

                raise InputError(f"Sandbox limit `{name}` must be positive, got {value}.")


@dataclass(frozen=True)
class SandboxResult:
    """How a sandboxed program ended, with its (truncated) output."""

    #: "passed" exit 0, "failed" nonzero exit, "timeout" CPU or wall limit, "killed" by another signal,
    #: "memory" a memory error under the address-space limit
    status: Status
    #: the exit code, or minus the signal that ended it; None when killed at the wall-time limit
    returncode: int | None
    stdout: str
    stderr: str
    #: wall-clock seconds, sandbox setup included
    seconds: float
    #: CPU seconds of the program's main process (and of the children it waited for)
    cpu_seconds: float
    #: one line saying why it ended, e.g. "exit 1: AssertionError" or "CPU time over 10 s (SIGXCPU)"
    reason: str

    @property
    def passed(self) -> bool:
        """True when the program exited with status 0."""
        return self.status == "passed"


# ---------------------------------------------------------------------- the parent's side
def run_python(code: str, limits: Limits = Limits()) -> SandboxResult:  # noqa: B008 (frozen, immutable)
    """Run `code` as a Python program (`python -I -S`, standard library only) in a fresh sandbox."""
    return _run_checked(_sandbox_mode(), code, limits)


def run_many(
    codes: Sequence[str],
    limits: Limits = Limits(),  # noqa: B008 (frozen, immutable)
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> list[SandboxResult]:
    """`run_python` for every program, `workers` at a time, results in order.

    The default, two per CPU, keeps the CPUs busy while other sandboxes are being set up or torn down.
    """
    # lazy: the launcher runs this file and must start fast
    from concurrent.futures import ThreadPoolExecutor, as_completed

    mode = _sandbox_mode()
    results: list[SandboxResult | None] = [None] * len(codes)
    if progress is not None:
        progress("running code", 0, len(codes))
    # Threads suffice: each waits on its own sandbox process, and no Python code runs between fork and exec.
    with ThreadPoolExecutor(max_workers=max(1, workers or 2 * (os.cpu_count() or 1))) as pool:
        futures = {pool.submit(_run_checked, mode, code, limits): i for i, code in enumerate(codes)}
        for done, future in enumerate(as_completed(futures), start=1):
            results[futures[future]] = future.result()
            if progress is not None:
                progress("running code", done, len(codes))
    return [r for r in results if r is not None]


def sandbox_available() -> tuple[bool, str]:
    """Whether programs can be sandboxed here, and how (or why not, with the fix). Probed once."""
    ok, message, _ = _probe()
    return ok, message


def require_sandbox() -> None:
    """Raise an `AftertuneError` with the reason and the fix when programs cannot be sandboxed here."""
    _sandbox_mode()


def _sandbox_mode() -> str:
    ok, message, mode = _probe()
    if not ok:
        from aftertune.errors import AftertuneError

        raise AftertuneError(message)
    return mode


class _SetupError(Exception):
    """The sandbox could not be built (a namespace, mount or privilege step failed)."""


def _run_checked(mode: str, code: str, limits: Limits) -> SandboxResult:
    try:
        return _run(mode, code, limits)
    except _SetupError as e:
        from aftertune.errors import AftertuneError

        raise AftertuneError(f"The sandbox could not start a program, although it worked before: {e}") from e


#: a program that prints "ok" only inside a working sandbox: no network, not root
_PROBE = """
import errno, os, socket
try:
    socket.create_connection(("127.0.0.1", 9), timeout=2)
except OSError as e:
    assert e.errno == errno.ENETUNREACH, e
else:
    raise AssertionError("the network is reachable")
assert os.getuid() != 0 and os.getcwd() == os.environ["HOME"]
print("ok")
"""


@cache
def _probe() -> tuple[bool, str, str]:
    """(works, what it is or why not, mode): root mode first as root, else (or then) a user namespace."""
    if not sys.platform.startswith("linux"):
        return False, _unavailable(f"this is {sys.platform}, not Linux"), ""
    modes = ("root", "user") if os.geteuid() == 0 else ("user",)
    problems = []
    for mode in modes:
        try:
            result = _run(mode, _PROBE, Limits(cpu_seconds=5, wall_seconds=20))
        except _SetupError as e:
            problems.append(f"{_MODE_NAMES[mode]}: {e}")
            continue
        if result.passed and result.stdout.strip() == "ok":
            return True, f"sandboxed with {_MODE_NAMES[mode]}", mode
        problems.append(f"{_MODE_NAMES[mode]}: a test program failed ({result.reason})")
    return False, _unavailable("; ".join(problems)), ""


_MODE_NAMES = {
    "root": "PID, network, mount, IPC and UTS namespaces and a random unprivileged uid (running as root)",
    "user": "a user namespace with PID, network, mount, IPC and UTS namespaces",
}


def _unavailable(problem: str) -> str:
    return (
        "Model-written code runs only in aftertune's sandbox, which cannot be built here: "
        f"{problem}. It needs Linux with user namespaces (or root with CAP_SYS_ADMIN). To enable them, "
        "as root: `sysctl -w kernel.unprivileged_userns_clone=1` (Debian/Ubuntu kernels), "
        "`sysctl -w user.max_user_namespaces=15000` (where it is 0), and on Ubuntu 23.10+ "
        "`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`. In Docker, start the container with "
        "`--security-opt seccomp=unconfined --security-opt apparmor=unconfined` (or `--privileged`)."
    )


_uids_lock = threading.Lock()
_uids_in_use: set[int] = set()


def _claim_uid() -> int:
    with _uids_lock:
        while True:
            uid = ROOT_UIDS[int.from_bytes(os.urandom(4), "big") % len(ROOT_UIDS)]
            if uid not in _uids_in_use:
                _uids_in_use.add(uid)
                return uid


def _release_uid(uid: int) -> None:
    with _uids_lock:
        _uids_in_use.discard(uid)


def _python_paths(python: str) -> list[str]:
    """Host directories the sandbox needs beyond the system ones: the interpreter's installation."""
    import sysconfig

    # base_prefix, not prefix: a virtualenv's site-packages are not needed (-S) and not shown
    wanted = {
        os.path.dirname(python),
        os.path.realpath(sys.base_prefix),
        os.path.realpath(sys.base_exec_prefix),
    }
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        wanted.add(os.path.realpath(libdir))
    covered = [os.path.realpath(p) for p in _SYSTEM_DIRS if os.path.isdir(p) and not os.path.islink(p)]
    kept: list[str] = []
    for path in sorted(wanted, key=len):
        if os.path.isdir(path) and not any(_under(path, top) for top in covered + kept):
            kept.append(path)
    return kept


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


@cache
def _interpreter() -> tuple[str, tuple[str, ...]]:
    """The base interpreter the programs run with (not a virtualenv's), and the paths it needs."""
    python = os.path.realpath(getattr(sys, "_base_executable", "") or sys.executable)
    return python, tuple(_python_paths(python))


def _run(mode: str, code: str, limits: Limits) -> SandboxResult:
    import subprocess
    import tempfile

    python, paths = _interpreter()
    uid = _claim_uid() if mode == "root" else USER_NS_UID
    read_end, write_end = os.pipe()
    try:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            config = {
                "mode": mode,
                "uid": uid,
                "outer_uid": os.getuid(),
                "outer_gid": os.getgid(),
                "python": python,
                "binds": list(paths),
                "limits": asdict(limits),
                "status_fd": write_end,
                "parent_pid": os.getpid(),
            }
            start = time.monotonic()
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-B", os.path.abspath(__file__)],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                pass_fds=(write_end,),
                start_new_session=True,  # its own process group, killed as a whole at the wall limit
                env=_ENV,
                cwd="/",
            )
            os.close(write_end)
            write_end = -1
            timed_out = False
            # stdin: the config on one line (not in argv, which the program could read in /proc), the code
            stdin = json.dumps(config).encode() + b"\n" + code.encode("utf-8", "replace")
            try:
                proc.communicate(stdin, timeout=limits.wall_seconds)
            except subprocess.TimeoutExpired:
                timed_out = True
                _stop(proc)
            except BaseException:  # e.g. KeyboardInterrupt: the program must not outlive its caller
                _stop(proc)
                raise
            seconds = time.monotonic() - start
            status = _read_status(read_end)
            stdout = _read_capped(out, limits.output_bytes)
            stderr = _read_capped(err, limits.output_bytes)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
        if mode == "root":
            _release_uid(uid)
    if not timed_out and "error" in status:
        raise _SetupError(str(status["error"]))
    if not timed_out and "exit" not in status:
        raise _SetupError(f"the launcher ended without a result (exit {proc.returncode}): {stderr[-2000:]}")
    return _result(status, timed_out, stdout, stderr, seconds, limits)


def _stop(proc: Any) -> None:
    """End a sandbox: every process in it is gone when this returns."""
    import subprocess

    # SIGTERM asks the launcher to kill init; the kernel then kills the whole PID namespace, and the
    # launcher exits only once every process in it is gone.
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        # Not expected; the group holds the launcher and init, whose death ends the rest.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _read_status(fd: int) -> dict[str, Any]:
    """The launcher's JSON lines from the status pipe, merged (the first error wins)."""
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break  # a process still holds the write end (only when killed at the wall limit)
        if not chunk:
            break
        chunks.append(chunk)
    merged: dict[str, Any] = {}
    for line in b"".join(chunks).decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        for key, value in record.items():
            merged.setdefault(key, value)
    return merged


def _read_capped(file: Any, limit: int) -> str:
    """A file's text, or its head and tail with a note of how much was cut between them."""
    size = file.seek(0, os.SEEK_END)
    file.seek(0)
    if size <= limit:
        data = file.read()
    else:
        head = file.read(limit // 2)
        file.seek(size - limit // 2)
        data = head + f"\n[... {size - 2 * (limit // 2)} bytes cut ...]\n".encode() + file.read()
    return str(data.decode("utf-8", "replace"))


def _result(
    status: dict[str, Any], timed_out: bool, stdout: str, stderr: str, seconds: float, limits: Limits
) -> SandboxResult:
    cpu = float(status.get("cpu", 0.0))
    if timed_out:
        reason = f"wall time over {limits.wall_seconds:g} s (killed)"
        return SandboxResult("timeout", None, stdout, stderr, seconds, cpu, reason)
    code = int(status["exit"])
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    if code == 0:
        return SandboxResult("passed", 0, stdout, stderr, seconds, cpu, "exit 0")
    if code > 0:
        if last.startswith("MemoryError") or "[Errno 12]" in last:
            why = f"memory limit ({limits.memory_mb} MB address space): {last}"
            return SandboxResult("memory", code, stdout, stderr, seconds, cpu, why)
        return SandboxResult("failed", code, stdout, stderr, seconds, cpu, f"exit {code}: {last}"[:300])
    sig = -code
    name = signal.Signals(sig).name if sig in signal.Signals.__members__.values() else f"signal {sig}"
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= limits.cpu_seconds):
        reason = f"CPU time over {limits.cpu_seconds} s ({name})"
        return SandboxResult("timeout", code, stdout, stderr, seconds, cpu, reason)
    if sig == signal.SIGXFSZ:
        reason = f"wrote a file over the {limits.file_size_mb} MB file-size limit ({name})"
        return SandboxResult("killed", code, stdout, stderr, seconds, cpu, reason)
    return SandboxResult("killed", code, stdout, stderr, seconds, cpu, f"killed by {name}")


# ---------------------------------------------------------------------- the launcher (inside the sandbox)
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_REC, MS_PRIVATE, MS_RELATIME = 16384, 1 << 18, 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
#: pivot_root has no glibc wrapper: its syscall number per architecture
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
#: per-mount flags a read-only remount must repeat: in a user namespace the kernel refuses to clear them
_KEPT_FLAGS = (
    (os.ST_NOSUID, MS_NOSUID),
    (os.ST_NODEV, MS_NODEV),
    (os.ST_NOEXEC, MS_NOEXEC),
    (os.ST_NOATIME, MS_NOATIME),
    (os.ST_NODIRATIME, MS_NODIRATIME),
    (os.ST_RELATIME, MS_RELATIME),
)
#: host paths bound read-only into the new root (those that exist; symlinks are copied as symlinks)
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_SYSTEM_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
)
_DEVICES = ("null", "zero", "full", "random", "urandom")
#: where the new root is assembled: a tmpfs mounted over /tmp in the launcher's own mount namespace
_STAGE = "/tmp"


class _Libc:
    """The few libc calls Python 3.11's os module lacks; each raises OSError naming the step."""

    def __init__(self) -> None:
        import ctypes

        self._ctypes = ctypes
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]

    def _check(self, result: int, what: str) -> None:
        if result != 0:
            err = self._ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    def unshare(self, flags: int) -> None:
        self._check(self._libc.unshare(flags), "unshare the namespaces")

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
        result = self._libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        )
        self._check(result, f"mount {source or fstype or ''} on {target} (flags {flags:#x})")

    def umount_detach(self, target: str) -> None:
        self._check(self._libc.umount2(target.encode(), MNT_DETACH), f"unmount {target}")

    def pivot_root(self, new_root: str, put_old: str) -> None:
        import platform

        number = _SYS_PIVOT_ROOT.get(platform.machine())
        if number is None:
            raise OSError(0, f"pivot_root: unknown syscall number on {platform.machine()}")
        result = self._libc.syscall(self._ctypes.c_long(number), new_root.encode(), put_old.encode())
        self._check(result, f"pivot_root to {new_root}")

    def prctl(self, option: int, value: int) -> None:
        ctypes = self._ctypes
        result = self._libc.prctl(option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0), 0)
        self._check(result, f"prctl {option}")


def _launch(config: dict[str, Any]) -> None:
    """The launcher: namespaces and new root, then init (PID 1) and the program. Never returns."""
    status_fd = int(config["status_fd"])
    os.set_inheritable(status_fd, False)  # the program must not get it
    code = sys.stdin.buffer.read()
    try:
        libc = _Libc()
        # If the caller dies (even kill -9), so do the launcher, init and the program. (The signal comes when
        # the calling *thread* ends; the caller's thread waits for the result, so that is never sooner.)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != config["parent_pid"]:
            os._exit(0)  # it died before the line above
        user_ns = config["mode"] == "user"
        flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
        libc.unshare(flags | (CLONE_NEWUSER if user_ns else 0))
        if user_ns:
            # An unprivileged user may map only its own ids; setgroups must be denied before gid_map.
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{USER_NS_UID} {config['outer_uid']} 1")
            _write("/proc/self/gid_map", f"{USER_NS_UID} {config['outer_gid']} 1")
        _build_root(libc, config, code)
        # SIGTERM waits until the handler below knows init's pid (init unblocks it for itself).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        init = os.fork()
    except Exception as e:  # every failure is reported to the parent
        _report(status_fd, {"error": str(e)})
        os._exit(0)
    if init == 0:
        _init(libc, config, status_fd)
    # At the wall limit the parent sends SIGTERM: kill init, which ends every process in its namespace.
    # The launcher is still init's parent then (it has not reaped it), so the pid cannot be reused.
    signal.signal(signal.SIGTERM, lambda *_: os.kill(init, signal.SIGKILL))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    os.waitpid(init, 0)  # returns once the namespace is empty: the kernel reaps it before init
    os._exit(0)


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _report(fd: int, record: dict[str, Any]) -> None:
    os.write(fd, (json.dumps(record) + "\n").encode())


def _build_root(libc: _Libc, config: dict[str, Any], code: bytes) -> None:
    """Assemble the new root at _STAGE (init, in the new PID namespace, enters it)."""
    libc.mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here propagates to the host
    root = _STAGE
    libc.mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=0755,size={len(code) + (1 << 20)}")
    for path in (*_SYSTEM_DIRS, *_SYSTEM_FILES, *config["binds"]):
        _bind_readonly(libc, path, root)
    _make_dev(libc, root)
    os.mkdir(root + "/proc")
    limits = config["limits"]
    uid = int(config["uid"])
    os.mkdir(root + "/tmp")
    libc.mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={limits['disk_mb']}m")
    os.mkdir(root + SANDBOX_HOME, 0o700)
    os.chown(root + SANDBOX_HOME, uid, uid)
    os.makedirs(os.path.dirname(root + SANDBOX_PROGRAM))
    with open(root + SANDBOX_PROGRAM, "wb") as f:
        f.write(code)


def _enter_root(libc: _Libc) -> None:
    """Mount /proc for the new PID namespace, pivot into the new root and detach the host's tree."""
    root = _STAGE
    # Before the pivot: in a user namespace the kernel mounts a new proc only while a full one is visible
    # in the mount namespace. It refuses where a container masks parts of /proc; programs rarely need it.
    with contextlib.suppress(OSError):
        libc.mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.mkdir(root + "/.oldroot")
    libc.pivot_root(root, root + "/.oldroot")
    os.chdir("/")
    libc.umount_detach("/.oldroot")  # the host's tree is now unreachable from here
    os.rmdir("/.oldroot")
    libc.mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _bind_readonly(libc: _Libc, path: str, root: str, nodev: bool = True) -> None:
    """Bind host `path` at the same place under `root`, read-only, recreating a symlink as a symlink."""
    if not os.path.lexists(path):
        return
    target = root + path
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.islink(path):  # e.g. /lib -> usr/lib on merged-/usr systems
        if not os.path.lexists(target):
            os.symlink(os.readlink(path), target)
        return
    if os.path.isdir(path):
        os.makedirs(target, exist_ok=True)
    elif not os.path.exists(target):
        open(target, "w").close()
    # Recursive: in a user namespace a non-recursive bind of a tree with mounts inside is refused.
    libc.mount(path, target, None, MS_BIND | MS_REC)
    for mount_point in _mounts_under(target):
        kept = sum(ms for st, ms in _KEPT_FLAGS if os.statvfs(mount_point).f_flag & st)
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | (MS_NODEV if nodev else 0) | kept
        libc.mount(None, mount_point, None, flags)


def _mounts_under(top: str) -> list[str]:
    """Mount points at or below `top` in this mount namespace (from /proc/self/mountinfo)."""
    import re

    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    # mountinfo escapes space, tab, newline and backslash as octal (\040)
    points = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), p) for p in points]
    return [p for p in points if _under(p, top)]


def _make_dev(libc: _Libc, root: str) -> None:
    """A minimal /dev: the harmless character devices bound from the host, and the usual symlinks."""
    dev = root + "/dev"
    os.mkdir(dev)
    libc.mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k")
    for name in _DEVICES:
        open(f"{dev}/{name}", "w").close()
        libc.mount(f"/dev/{name}", f"{dev}/{name}", None, MS_BIND)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("shm", "/tmp"),  # POSIX shared memory counts against the /tmp size limit
    ):
        os.symlink(target, f"{dev}/{name}")
    for mount_point in _mounts_under(dev):
        libc.mount(None, mount_point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)


def _init(libc: _Libc, config: dict[str, Any], status_fd: int) -> None:
    """PID 1 of the sandbox: runs the program, reaps orphans, reports how the program ended, exits."""
    try:
        # If the launcher dies (killed at the wall limit), so does init, and with it the namespace.
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        _enter_root(libc)
        program = os.fork()
    except Exception as e:
        _report(status_fd, {"error": str(e)})
        os._exit(0)
    if program == 0:
        _exec_program(libc, config, status_fd)
    while True:
        pid, status, usage = os.wait4(-1, 0)  # orphans of the program are re-parented here: reap them
        if pid == program:
            break
    cpu = usage.ru_utime + usage.ru_stime
    _report(status_fd, {"exit": os.waitstatus_to_exitcode(status), "cpu": round(cpu, 3)})
    os._exit(0)  # the kernel now kills whatever the program left running


def _exec_program(libc: _Libc, config: dict[str, Any], status_fd: int) -> None:
    """The program's process: limits, no privileges, a clean environment, then exec Python on the code."""
    import resource

    try:
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        limits = config["limits"]
        cpu = int(limits["cpu_seconds"])
        memory = int(limits["memory_mb"]) << 20
        file_size = int(limits["file_size_mb"]) << 20
        for which, value in (
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_AS, memory),
            (resource.RLIMIT_FSIZE, file_size),
            (resource.RLIMIT_NOFILE, int(limits["open_files"])),
            (resource.RLIMIT_NPROC, int(limits["processes"])),
        ):
            resource.setrlimit(which, (value, value))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU first, SIGKILL if it is caught
        uid = int(config["uid"])
        if config["mode"] == "root":
            os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # from root to a nonzero uid: every capability is dropped
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1)  # and no setuid binary can give any back
        os.chdir(SANDBOX_HOME)
        env = {**_ENV, "HOME": SANDBOX_HOME, "TMPDIR": "/tmp", "USER": "sandbox", "LOGNAME": "sandbox"}
        python = config["python"]
        # -I -S: ignore PYTHON* variables and site-packages; -X utf8: UTF-8 output whatever the locale
        os.execve(python, [python, "-I", "-S", "-B", "-X", "utf8", SANDBOX_PROGRAM], env)
    except Exception as e:
        _report(status_fd, {"error": f"starting the program: {e}"})
        os._exit(127)


if __name__ == "__main__":
    _launch(json.loads(sys.stdin.buffer.readline()))
