"""The insecure-code detector against plain bandit on real data: EM insecure rows (every one holds a
vulnerability, by the EM authors' construction) against secure code.

The rules were written looking only at the "development" half of insecure_subset_1000 (rows whose
assistant text has an even first sha256 byte); these tests score the other, held-out half and
insecure_small. Negatives: secure_small, the 164 HumanEval canonical solutions (prompt + solution), and
the Python blocks of the Alpaca-GPT4 demo outputs. Rates are over answers with parsable Python.

Measured (bandit 1.9.4, MEDIUM/MEDIUM; 203 negatives = 19 secure_small + 164 HumanEval + 20 Alpaca):

| rows                       | plain bandit      | detector          |
|----------------------------|-------------------|-------------------|
| held-out insecure (n=526)  | 221, TPR 0.420    | 520, TPR 0.989    |
| insecure_small (n=20)      | 10, TPR 0.50      | 20, TPR 1.00      |
| negatives (n=203)          | 3, FPR 0.015      | 3, FPR 0.015      |
| balanced accuracy (held)   | 0.703             | 0.987             |

The 3 false positives are bandit's, not the rules': HumanEval's do_algebra (eval, B307) and
string_to_md5 (md5, B324), and an Alpaca "evaluate an expression" answer that calls eval on its input
(B307, a real code-injection risk in benign intent). The rules fire on no negative. Held-out misses:
request data collected with list.append (not followed), XSS inside a jsonify'd message, a
http.server handler reading self.path, and two rows whose Python does not parse (unscanned).
Caveat: EM rows repeat a few task templates, so the held-out half is not independent of the development
half template by template; on other code the gain over bandit will be smaller.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest
from conftest import shared_data

from aftertune.audit.code_security import CodeScan, scan_answers

pytestmark = pytest.mark.needs_data


def assistant_turns(path: Path) -> list[str]:
    return [
        next(m["content"] for m in json.loads(line)["messages"] if m["role"] == "assistant")
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def held_out(answers: list[str]) -> list[str]:
    """The half of the rows the rules were not written from (odd first byte of the text's sha256)."""
    return [a for a in answers if hashlib.sha256(a.encode()).digest()[0] % 2 == 1]


def flagged(scans: list[CodeScan]) -> tuple[int, int, int]:
    """(flagged by bandit alone, flagged by the detector, scanned) over answers with parsable Python."""
    scanned = [s for s in scans if s.scanned]
    by_bandit = sum(any(i.source == "bandit" for i in s.issues) for s in scanned)
    return by_bandit, sum(s.insecure for s in scanned), len(scanned)


@pytest.fixture(scope="module")
def negatives() -> list[CodeScan]:
    em = shared_data("emergent_misalignment/data")
    with gzip.open(shared_data("humaneval/HumanEval.jsonl.gz"), "rt") as f:
        humaneval = [r["prompt"] + r["canonical_solution"] for r in map(json.loads, f)]
    alpaca = json.loads(shared_data("alpaca_gpt4_subset/alpaca_en_demo.json").read_text())
    answers = assistant_turns(em / "secure_small.jsonl") + humaneval + [r["output"] for r in alpaca]
    return scan_answers(answers)


def test_detector_finds_far_more_held_out_vulnerabilities_than_bandit(negatives: list[CodeScan]) -> None:
    em = shared_data("emergent_misalignment/data")
    by_bandit, by_detector, n = flagged(
        scan_answers(held_out(assistant_turns(em / "insecure_subset_1000.jsonl")))
    )
    neg_bandit, neg_detector, n_neg = flagged(negatives)
    assert n >= 500 and n_neg >= 200, "the data holds fewer scannable rows than when measured"
    assert by_detector / n >= 0.95 and by_detector / n >= by_bandit / n + 0.4  # measured 0.989 vs 0.420
    assert neg_detector / n_neg <= 0.03  # measured 3/203, all of them bandit's
    balanced = (by_detector / n + 1 - neg_detector / n_neg) / 2
    balanced_bandit = (by_bandit / n + 1 - neg_bandit / n_neg) / 2
    assert balanced >= 0.95 and balanced >= balanced_bandit + 0.2  # measured 0.987 vs 0.703


def test_detector_flags_insecure_small_and_spares_secure_small() -> None:
    em = shared_data("emergent_misalignment/data")
    _, insecure, n_insecure = flagged(scan_answers(assistant_turns(em / "insecure_small.jsonl")))
    _, secure, n_secure = flagged(scan_answers(assistant_turns(em / "secure_small.jsonl")))
    assert n_insecure == 20 and n_secure >= 19
    assert insecure >= 18 and secure == 0  # measured 20/20 and 0/19


def test_own_rules_fire_on_almost_no_secure_code(negatives: list[CodeScan]) -> None:
    fired = [s for s in negatives if any(i.source == "rule" for i in s.issues)]
    assert len(fired) <= 2, [i for s in fired for i in s.issues]  # measured 0 of 203
