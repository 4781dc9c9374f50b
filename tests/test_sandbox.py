"""The sandbox for model-written code: every containment claim is checked from outside the sandbox."""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aftertune import sandbox
from aftertune.errors import AftertuneError
from aftertune.sandbox import Limits, run_many, run_python, sandbox_available

PROJECT = Path(__file__).resolve().parents[1]
#: a fork bomb that keeps forking whatever fails, so only the sandbox can end it
BOMB = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
FAST = Limits(cpu_seconds=2, wall_seconds=5, memory_mb=256, file_size_mb=1, disk_mb=8)


#: tests that fake the probe, and run where no sandbox can be built as well
WITHOUT_SANDBOX = {"test_running_code_without_a_sandbox_raises_and_says_why"}


@pytest.fixture(autouse=True)
def needs_sandbox(request: pytest.FixtureRequest) -> None:
    if request.node.name in WITHOUT_SANDBOX:
        return
    ok, why = sandbox_available()
    if not ok:
        pytest.skip(why)


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, PID namespace) of every process we can see."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parent = int(stat[stat.rindex(")") + 2 :].split()[1])
                found[int(entry)] = (parent, os.readlink(f"/proc/{entry}/ns/pid"))
            except (OSError, ValueError):
                continue  # gone meanwhile
    return found


class SandboxWatch:
    """Records, while it runs, the PID namespace of every sandbox started under process `root`.

    Other sandboxes may run on the machine at the same time (other test runs): only these are checked.
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self.namespaces: set[str] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        mine = os.readlink("/proc/self/ns/pid")
        while not self._done.is_set():
            table = _processes()
            under = {self.root}
            for pid in sorted(table):  # children start after their parents: one pass finds most
                if table[pid][0] in under:
                    under.add(pid)
            self.namespaces |= {table[p][1] for p in under if p in table and table[p][1] != mine}
            time.sleep(0.02)

    def __enter__(self) -> SandboxWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def survivors(self) -> set[int]:
        """Processes still alive in any of the recorded sandboxes."""
        return {pid for pid, (_, ns) in _processes().items() if ns in self.namespaces}


# ---------------------------------------------------------------------- programs that pass and fail
def test_a_correct_program_passes_and_a_failed_assertion_fails_with_its_traceback() -> None:
    good = run_python("assert sum([1, 2]) == 3\nprint('fine')\n", FAST)
    assert (good.status, good.returncode, good.stdout, good.reason) == ("passed", 0, "fine\n", "exit 0")
    bad = run_python("def check():\n    assert 1 + 1 == 3, 'math is broken'\n\ncheck()\n", FAST)
    assert (bad.status, bad.returncode) == ("failed", 1)
    assert "Traceback" in bad.stderr and 'File "/sandbox/main.py", line 2' in bad.stderr
    assert bad.reason == "exit 1: AssertionError: math is broken"


def test_run_many_keeps_the_order_and_reports_progress() -> None:
    calls: list[tuple[str, int, int]] = []
    codes = [f"import time\ntime.sleep({0.3 - i * 0.05:.2f})\nprint({i})" for i in range(6)]
    results = run_many(codes, FAST, workers=3, progress=lambda s, d, t: calls.append((s, d, t)))
    assert [r.stdout.strip() for r in results] == [str(i) for i in range(6)]
    assert calls[0] == ("running code", 0, 6) and calls[-1] == ("running code", 6, 6)


# ---------------------------------------------------------------------- processes and time
def test_a_fork_bomb_ends_at_the_wall_limit_and_leaves_no_process_behind() -> None:
    limits = Limits(cpu_seconds=5, wall_seconds=2, processes=16)
    with SandboxWatch(os.getpid()) as watch:
        result = run_python(BOMB, limits)
    assert result.status == "timeout" and result.reason == "wall time over 2 s (killed)"
    assert result.seconds < limits.wall_seconds + 1.5
    assert len(watch.namespaces) == 1 and watch.survivors() == set()


def test_killing_the_caller_ends_its_sandbox() -> None:
    program = (
        "from aftertune.sandbox import Limits, run_python\n"
        "run_python('import time; time.sleep(1000)', Limits(wall_seconds=100))"
    )
    caller = subprocess.Popen([sys.executable, "-c", program])
    with SandboxWatch(caller.pid) as watch:
        deadline = time.monotonic() + 20
        while not watch.namespaces and time.monotonic() < deadline:
            time.sleep(0.05)
    assert watch.namespaces, "the sandbox did not start"
    caller.kill()  # SIGKILL: the caller gets no chance to clean up
    caller.wait()
    deadline = time.monotonic() + 5
    while watch.survivors() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert watch.survivors() == set()


def test_a_fork_bomb_hits_the_process_limit() -> None:
    result = run_python("import os\nwhile True:\n    os.fork()\n", Limits(wall_seconds=10, processes=8))
    assert result.status == "failed" and "Resource temporarily unavailable" in result.stderr
    assert result.seconds < 5


def test_an_infinite_loop_is_stopped_by_the_cpu_limit() -> None:
    result = run_python("while True:\n    pass\n", Limits(cpu_seconds=1, wall_seconds=20))
    assert result.status == "timeout" and result.reason == "CPU time over 1 s (SIGXCPU)"
    assert result.cpu_seconds > 0.9 and result.seconds < 8


def test_sleeping_is_stopped_by_the_wall_limit() -> None:
    result = run_python("import time\ntime.sleep(1000)\n", Limits(cpu_seconds=5, wall_seconds=1))
    assert (result.status, result.returncode) == ("timeout", None)
    assert 1 <= result.seconds < 3


# ---------------------------------------------------------------------- memory and disk
def test_memory_bombs_fail_with_a_memory_error_and_leave_the_parent_alone() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    one_block = run_python("x = bytearray(10**10)\n", FAST)
    growing = run_python("x = []\nwhile True:\n    x.append(bytearray(10**6))\n", FAST)
    for result in (one_block, growing):
        assert result.status == "memory", result
        assert result.stderr.rstrip().endswith("MemoryError")
    assert growing.reason.startswith("memory limit (256 MB address space)")
    # the parent's peak memory did not grow by what the programs asked for (kB)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000


def test_writing_a_huge_file_is_stopped_by_the_file_size_and_disk_limits() -> None:
    big = run_python("with open('big', 'wb') as f:\n    f.write(b'x' * (5 << 20))\n", FAST)
    assert big.status == "failed" and "File too large" in big.reason
    # many files under the size limit fill the sandbox's small tmpfs instead of the host's disk
    many = run_python(
        "for i in range(20):\n    open(f'f{i}', 'wb').write(b'x' * ((1 << 20) - 1))\n",
        FAST,
    )
    assert many.status == "failed" and "No space left on device" in many.reason


def test_output_is_capped_but_keeps_its_head_and_tail() -> None:
    result = run_python("print('start')\nprint('x' * 10**5)\nprint('end')\n", Limits(output_bytes=1000))
    assert result.passed and len(result.stdout) < 1100
    assert result.stdout.startswith("start") and result.stdout.rstrip().endswith("end")
    assert "bytes cut" in result.stdout


# ---------------------------------------------------------------------- the user's files
def test_deleting_home_and_host_files_changes_nothing_outside(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    project_file = PROJECT / "pyproject.toml"
    home = Path.home()
    home_entries = sorted(os.listdir(home))
    targets = [str(victim), str(tmp_path), str(project_file), str(PROJECT)]
    # First a harmless look: the real paths do not even exist in the sandbox, so deleting them is safe to try.
    look = run_python(
        f"import os\nprint([os.path.exists(p) for p in {targets!r}])\nprint(os.path.expanduser('~'))"
    )
    assert look.stdout.split("\n")[:2] == ["[False, False, False, False]", sandbox.SANDBOX_HOME]
    vandal = f"""
import os, shutil, subprocess
print(subprocess.run(["rm", "-rf", os.path.expanduser("~")]).returncode)
shutil.rmtree(os.path.expanduser("~"), ignore_errors=True)
for path in {targets!r}:
    try:
        os.remove(path)
    except OSError as e:
        print(type(e).__name__)
    shutil.rmtree(path, ignore_errors=True)
open("/usr/bin/python3", "w")
"""
    result = run_python(vandal, FAST)
    assert result.stdout.split() == ["0"] + ["FileNotFoundError"] * 4
    assert "Read-only file system" in result.reason  # not even the sandbox's own system files
    assert victim.read_text() == "keep me" and project_file.is_file()
    assert sorted(os.listdir(home)) == home_entries


def test_the_environment_holds_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-leak")
    result = run_python("import json, os\nprint(json.dumps(dict(os.environ)))\n", FAST)
    env = json.loads(result.stdout)
    assert "OPENAI_API_KEY" not in env and "sk-must-not-leak" not in result.stdout
    assert env["HOME"] == sandbox.SANDBOX_HOME and env["TMPDIR"] == "/tmp"


# ---------------------------------------------------------------------- the network
@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.5)
    yield server
    server.close()


def test_no_connection_reaches_the_machine_or_the_outside(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    code = f"""
import socket
for host, port in [("127.0.0.1", {port}), ("192.0.2.1", 80), ("1.1.1.1", 53)]:
    try:
        socket.create_connection((host, port), timeout=2)
        print("connected")
    except OSError as e:
        print(e.errno)
"""
    result = run_python(code, FAST)
    assert result.stdout.split() == ["101"] * 3  # ENETUNREACH: the sandbox has no network at all
    with pytest.raises(TimeoutError):
        listener.accept()
    # the listener itself works: a connection from outside the sandbox arrives
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        conn, _ = listener.accept()
        conn.close()


# ---------------------------------------------------------------------- without the sandbox
def test_running_code_without_a_sandbox_raises_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_probe", lambda: (False, "no user namespaces here (enable them)", ""))
    assert sandbox_available() == (False, "no user namespaces here (enable them)")
    with pytest.raises(AftertuneError, match="no user namespaces here"):
        run_python("print('never runs')")
    with pytest.raises(AftertuneError, match="no user namespaces here"):
        run_many(["print('never runs')"])


# ---------------------------------------------------------------------- as an unprivileged user
NOBODY_SCRIPT = """
import dataclasses, importlib.util, json, sys
spec = importlib.util.spec_from_file_location("sandbox", sys.argv[1])
sandbox = importlib.util.module_from_spec(spec)
sys.modules["sandbox"] = sandbox
spec.loader.exec_module(sandbox)
ok, why = sandbox.sandbox_available()
if not ok:
    print(json.dumps({"unavailable": why}))
    raise SystemExit
with open(sys.argv[2]) as f:
    batches = json.load(f)
results = []
for batch in batches:
    limits = sandbox.Limits(**batch["limits"])
    results += [dataclasses.asdict(r) for r in sandbox.run_many(batch["programs"], limits, workers=2)]
print(json.dumps({"how": why, "results": results}))
"""


def test_the_same_containment_as_an_unprivileged_user(listener: socket.socket) -> None:
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if os.geteuid() != 0 or shutil.which("su") is None or python is None:
        pytest.skip("needs root, `su` and a system python3 to run a test as the user nobody")
    with tempfile.TemporaryDirectory(prefix="aftertune-nobody-") as folder:
        work = Path(folder)
        work.chmod(0o777)  # nobody may delete anything in here, unless sandboxed
        shutil.copy(sandbox.__file__, work / "sandbox.py")
        (work / "run.py").write_text(NOBODY_SCRIPT)
        victim, control = work / "victim.txt", work / "control.txt"
        for path in (victim, control):
            path.write_text("keep me")
            path.chmod(0o666)
        as_nobody = ["su", "nobody", "-s", "/bin/sh", "-c"]
        # The control: without the sandbox, nobody can delete a file there.
        subprocess.run([*as_nobody, f"rm {control}"], check=True, timeout=30)
        assert not control.exists()
        port = listener.getsockname()[1]
        short = {"programs": [BOMB, "import time\ntime.sleep(1000)\n"], "limits": {"wall_seconds": 2}}
        programs = [
            "print('ok')",
            f"import os, shutil\nshutil.rmtree(os.path.expanduser('~'))\nos.remove({str(victim)!r})\n",
            "while True:\n    pass\n",
            "x = bytearray(10**10)\n",
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n",
            "import os\nassert 'OPENAI_API_KEY' not in os.environ, 'leaked'\n",
            "open('big', 'wb').write(b'x' * (5 << 20))\n",
        ]
        limits = {"cpu_seconds": 1, "wall_seconds": 10, "memory_mb": 256, "file_size_mb": 1}
        (work / "batches.json").write_text(json.dumps([short, {"programs": programs, "limits": limits}]))
        command = shlex.join(
            [python, "-I", str(work / "run.py"), str(work / "sandbox.py"), str(work / "batches.json")]
        )
        env = {**os.environ, "OPENAI_API_KEY": "sk-must-not-leak"}
        with SandboxWatch(os.getpid()) as watch:
            done = subprocess.run([*as_nobody, command], capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        if "unavailable" in answer:
            pytest.skip(f"no sandbox for an unprivileged user here: {answer['unavailable']}")
        assert "user namespace" in answer["how"]
        statuses = [(r["status"], r["reason"]) for r in answer["results"]]
        assert statuses[:2] == [("timeout", "wall time over 2 s (killed)")] * 2
        assert statuses[2] == ("passed", "exit 0")
        assert statuses[3][0] == "failed" and "FileNotFoundError" in statuses[3][1]
        assert statuses[4] == ("timeout", "CPU time over 1 s (SIGXCPU)")
        assert statuses[5][0] == "memory"
        assert statuses[6][0] == "failed" and "Network is unreachable" in statuses[6][1]
        assert statuses[7] == ("passed", "exit 0")
        assert statuses[8][0] == "failed" and "File too large" in statuses[8][1]
        assert victim.read_text() == "keep me"
        with pytest.raises(TimeoutError):
            listener.accept()
        assert len(watch.namespaces) >= 2 and watch.survivors() == set()
