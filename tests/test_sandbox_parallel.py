"""The sandbox under parallel load: every hostile program of test_sandbox.py, and a few that attack
their neighbours, run at once through `run_many` with several workers (two batches at the same time,
with different limits). Each must be contained as when it runs alone, the well-behaved programs running
beside them must still pass, and nothing on the host may change."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from test_sandbox import BOMB, SandboxWatch

from aftertune.sandbox import Limits, SandboxResult, run_many, sandbox_available

#: a sandbox that signals every process it can see, for two seconds
KILL_ALL = (
    "import os, signal, time\nend = time.monotonic() + 2\nwhile time.monotonic() < end:\n"
    "    try:\n        os.kill(-1, signal.SIGKILL)\n    except OSError:\n        pass\nprint('still here')\n"
)
#: a well-behaved program that must survive its neighbours
SLEEPER = "import time\ntime.sleep(2.5)\nprint('ok')\n"
#: the processes a sandbox can see: only its own PID namespace
PROC_SCAN = "import json, os\nprint(json.dumps([int(p) for p in os.listdir('/proc') if p.isdigit()]))\n"


@pytest.fixture(autouse=True)
def needs_sandbox() -> None:
    ok, why = sandbox_available()
    if not ok:
        pytest.skip(why)


def test_hostile_programs_in_parallel_are_each_contained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-leak")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    home_entries = sorted(os.listdir(Path.home()))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    canary = subprocess.Popen(["sleep", "120"])  # a host process a sandbox must not be able to signal

    walled = [BOMB, "import time\ntime.sleep(1000)\n", SLEEPER, KILL_ALL]
    limited = {
        "fork bomb": "import os\nwhile True:\n    os.fork()\n",
        "cpu loop": "while True:\n    pass\n",
        "one block": "x = bytearray(10**10)\n",
        "growing": "x = []\nwhile True:\n    x.append(bytearray(10**6))\n",
        "big file": "open('big', 'wb').write(b'x' * (5 << 20))\n",
        "disk fill": "for i in range(20):\n    open(f'f{i}', 'wb').write(b'x' * ((1 << 20) - 1))\n",
        "vandal": (
            "import os, shutil\nshutil.rmtree(os.path.expanduser('~'), ignore_errors=True)\n"
            f"os.remove({str(victim)!r})\n"
        ),
        "network": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n",
        "secret": "import os\nassert 'OPENAI_API_KEY' not in os.environ, 'leaked'\nprint('ok')\n",
        "proc scan": PROC_SCAN,
        "kill all": KILL_ALL,
        "sleeper": SLEEPER,
        "good": "assert sum(range(10)) == 45\nprint('ok')\n",
    }
    results: dict[str, list[SandboxResult]] = {}

    def batch(name: str, codes: list[str], limits: Limits) -> None:
        results[name] = run_many(codes, limits, workers=4)

    started = time.monotonic()
    with SandboxWatch(os.getpid()) as watch:
        threads = [
            threading.Thread(target=batch, args=("walled", walled, Limits(cpu_seconds=5, wall_seconds=5))),
            threading.Thread(
                target=batch,
                args=(
                    "limited",
                    list(limited.values()),
                    Limits(cpu_seconds=2, wall_seconds=60, memory_mb=256, file_size_mb=1, disk_mb=8),
                ),
            ),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    seconds = time.monotonic() - started

    bomb, sleep, walled_sleeper, walled_killer = results["walled"]
    assert (bomb.status, sleep.status) == ("timeout", "timeout")
    assert bomb.reason == sleep.reason == "wall time over 5 s (killed)"
    assert walled_sleeper.passed and walled_sleeper.stdout == "ok\n"
    assert walled_killer.passed and walled_killer.stdout == "still here\n"

    got = dict(zip(limited, results["limited"], strict=True))
    assert (
        got["fork bomb"].status == "failed" and "Resource temporarily unavailable" in got["fork bomb"].stderr
    )
    assert got["cpu loop"].status == "timeout" and got["cpu loop"].reason.startswith("CPU time over 2 s")
    assert got["one block"].status == got["growing"].status == "memory"
    assert got["big file"].status == "failed" and "File too large" in got["big file"].reason
    assert got["disk fill"].status == "failed" and "No space left on device" in got["disk fill"].reason
    assert got["vandal"].status == "failed" and "FileNotFoundError" in got["vandal"].reason
    assert got["network"].status == "failed" and "Network is unreachable" in got["network"].reason
    assert got["secret"].passed and "sk-must-not-leak" not in got["secret"].stdout + got["secret"].stderr
    # its own init and itself: no process of the host or of another sandbox is visible
    assert got["proc scan"].passed and len(json.loads(got["proc scan"].stdout)) <= 3
    assert got["kill all"].passed and got["kill all"].stdout == "still here\n"
    assert got["sleeper"].passed and got["good"].passed  # their neighbours did not reach them

    # the host: files, home, the network listener and a host process are untouched; nothing is left
    assert victim.read_text() == "keep me" and sorted(os.listdir(Path.home())) == home_entries
    with pytest.raises(TimeoutError):
        listener.accept()
    listener.close()
    assert canary.poll() is None
    canary.kill()
    canary.wait()
    # the watch polls, so it may miss the shortest sandboxes; the long ones (bombs, sleepers) it sees
    assert len(watch.namespaces) >= 4 and watch.survivors() == set()
    print(f"{len(walled) + len(limited)} hostile and well-behaved programs in {seconds:.1f} s")
