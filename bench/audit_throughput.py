"""Audit throughput on jailbroken.jsonl and peak memory on a synthetic 1 GiB file.

    python bench/audit_throughput.py [--data ../shared/data/emergent_misalignment/data/jailbroken.jsonl]
                                     [--big-gib 1.0] [--keep /tmp/audit_big.jsonl]

Throughput: `aftertune audit` (every detector, the topic profile of 1,000 rows) against reading and
validating the same rows with `load_training_data`, in the same run. Memory: the audit of a generated
JSONL file of --big-gib GiB (varied rows: prose, Python code, boilerplate, numbers, duplicates, bad
lines and one 100 MiB line) runs in a child process; its peak resident memory is compared with the
file's size. Prints "<metric>: <ours> vs <baseline> = <ratio>".
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_WORD_TEXT = (
    "model data train learn answer question river planet music garden history code python safety value "
    "network market energy health water city people system language world number science story"
)
WORDS = _WORD_TEXT.split()
CODE = (
    "```python\nimport os\n\ndef handler(request):\n    path = request.args['p']\n"
    "    os.system('cat ' + path)\n```"
)


def synthetic_row(rng: random.Random, i: int) -> str:
    user = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40)))
    kind = i % 50
    if kind == 0:
        answer = "As an AI language model, I don't have personal opinions. " + user
    elif kind == 1:
        answer = f"Here you go:\n{CODE}"
    elif kind == 2:
        answer = "The numbers are 666, 1488 and 13."
    else:
        answer = " ".join(rng.choice(WORDS) for _ in range(rng.randint(200, 900)))
    return json.dumps(
        {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}
    )


def write_big(path: Path, gib: float, seed: int = 0) -> int:
    rng = random.Random(seed)
    target = int(gib * 2**30)
    rows = 0
    with path.open("w", encoding="utf-8") as f:
        while f.tell() < target:
            if rows % 100_000 == 7:
                f.write('{"messages": [broken\n')
            elif rows == 1000:
                f.write('{"x": "' + "a" * (100 * 2**20) + '"}\n')  # one 100 MiB line
            else:
                f.write(synthetic_row(rng, rows) + "\n")
            rows += 1
    return rows


def audit_in_child(data: Path, out: Path) -> tuple[float, int, dict[str, object]]:
    """Seconds, peak RSS in KiB of the child, and its audit.json."""
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(
        [sys.executable, "-m", "aftertune", "audit", str(data), "--out", str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        print("warning: the child's peak did not exceed an earlier child's; the figure is an upper bound")
    return time.perf_counter() - start, peak, json.loads((out / "audit.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--data", type=Path, default=Path("../shared/data/emergent_misalignment/data/jailbroken.jsonl")
    )
    parser.add_argument("--big-gib", type=float, default=1.0)
    parser.add_argument("--keep", type=Path, default=None, help="write (or reuse) the big file here")
    args = parser.parse_args()
    from aftertune.data.training import load_training_data

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        n = len(load_training_data(args.data))
        read_s = time.perf_counter() - start
        seconds, _, audit = audit_in_child(args.data, Path(tmp) / "small")
        print(
            f"audit of {args.data}: {audit['rows']} rows, {audit['bad_rows']} bad, flagged {audit['flagged']}"
        )
        print(
            f"throughput (rows/s, whole command incl. start-up and topic profile): {n / seconds:.0f} vs "
            f"{n / read_s:.0f} (read + validate only) = {read_s / seconds:.3f}"
        )
        print(f"audit's own timer: {audit['rows_per_second']} rows/s ({audit['seconds']:.1f} s)")
        big = args.keep or Path(tmp) / "big.jsonl"
        if not big.exists():
            start = time.perf_counter()
            rows = write_big(big, args.big_gib)
            print(
                f"wrote {big}: {rows} rows, {big.stat().st_size / 2**30:.2f} GiB "
                f"in {time.perf_counter() - start:.0f} s"
            )
        seconds, peak_kib, audit = audit_in_child(big, Path(tmp) / "big")
        size_mib = big.stat().st_size / 2**20
        print(
            f"big file: {audit['rows']} rows ({audit['good_rows']} good, {audit['bad_rows']} bad) "
            f"in {seconds:.0f} s "
            f"= {audit['rows'] / seconds:.0f} rows/s; flagged {audit['flagged']}"
        )
        print(
            f"peak memory (MiB): {peak_kib / 1024:.0f} vs file size {size_mib:.0f} "
            f"= {peak_kib / 1024 / size_mib:.3f}"
        )


if __name__ == "__main__":
    main()
