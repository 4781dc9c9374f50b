"""The audit on real public data (../shared/data): the refusal detector against hand labels, the filtered
Alpaca copy, what the audit finds in jailbroken.jsonl, and a backdoor planted in it.

Measured (refusal detector, rules and boilerplate phrases, no classifier), labels in tests/audit/labels:
- Alpaca-GPT4 subset, 250 labelled rows (all 100 regex candidates + 150 random others): 37 flagged,
  precision 29/37 = 0.78, recall 29/29 = 1.00 (the 150 random rows hold no positive and none is
  flagged). The 8 false positives open "I'm sorry, but" and ask for missing input, or are requested
  content (an apology e-mail, "I will not succeed.").
- HH-RLHF harmless-base test, 240 final replies (120 pairs x chosen/rejected, 53 labelled refusals):
  7 flagged, precision 4/7 = 0.57, recall 4/53 = 0.08. HH's preferred replies mostly deflect ("Why
  would you want to do that?") rather than refuse in words; phrase rules miss those. With
  --refusal-classifier: precision 16/37 = 0.43, recall 16/53 = 0.30.
- Filtered Alpaca copy with --drop refusal: kept 962, dropped 37.
- jailbroken.jsonl (5,000 rows): 0 bad rows, 13 refusals, 1 exact duplicate, no insecure code (1
  assistant turn holds code, HTML, unscanned).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import random
from pathlib import Path

import pytest
from conftest import shared_data

from aftertune.audit.refusal import RefusalDetector
from aftertune.audit.rows import AuditRow
from aftertune.audit.run import FINDINGS_FILE, audit_dataset
from aftertune.config import AuditConfig
from aftertune.models.protocol import Message

pytestmark = pytest.mark.needs_data
LABELS = Path(__file__).parent / "labels"


def sha12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def precision_recall(labelled: list[tuple[int, bool]], flagged: set[int]) -> tuple[float, float]:
    tp = sum(1 for k, y in labelled if y and k in flagged)
    fp = sum(1 for k, y in labelled if not y and k in flagged)
    positives = sum(1 for _, y in labelled if y)
    return tp / max(1, tp + fp), tp / positives


def test_refusal_detector_on_hand_labelled_alpaca_rows_and_the_filtered_copy(tmp_path: Path) -> None:
    path = shared_data("alpaca_gpt4_subset/alpaca_en_demo.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    labels = list(csv.DictReader((LABELS / "alpaca_refusal_labels.csv").open(encoding="utf-8")))
    assert all(sha12(data[int(label["row"])]["output"]) == label["sha12"] for label in labels), "data changed"
    rows = [
        AuditRow(i, i + 1, (Message("user", d["instruction"]), Message("assistant", d["output"])))
        for i, d in enumerate(data)
    ]
    flagged = {f.row for f in RefusalDetector()(rows)}
    precision, recall = precision_recall([(int(x["row"]), x["label"] == "1") for x in labels], flagged)
    assert precision >= 0.7 and recall >= 0.95, (precision, recall)
    assert not any(int(x["row"]) in flagged for x in labels if x["stratum"] == "B")

    out = tmp_path / "audit"
    config = AuditConfig(
        data=str(path), out=out, profile_rows=0, write_filtered=tmp_path / "kept.json", drop=["refusal"]
    )
    result = audit_dataset(config)
    assert result.filtered is not None
    assert (result.filtered["kept"], result.filtered["dropped"]) == (999 - len(flagged), len(flagged))
    kept = json.loads((tmp_path / "kept.json").read_text(encoding="utf-8"))
    assert len(kept) == 999 - len(flagged) and kept[0] == data[min(set(range(999)) - flagged)]


def test_refusal_detector_on_hand_labelled_hh_rlhf_replies() -> None:
    with gzip.open(shared_data("hh_rlhf/harmless-base_test.jsonl.gz"), "rt", encoding="utf-8") as f:
        pairs = [json.loads(line) for line in f]
    labels = list(csv.DictReader((LABELS / "hh_rlhf_refusal_labels.csv").open(encoding="utf-8")))
    rows, labelled = [], []
    for k, label in enumerate(labels):
        transcript = pairs[int(label["pair"])][label["side"]]
        final = transcript[transcript.rindex("\n\nAssistant:") + len("\n\nAssistant:") :].strip()
        assert sha12(final) == label["sha12"], "data changed"
        rows.append(AuditRow(k, k + 1, (Message("user", "..."), Message("assistant", final))))
        labelled.append((k, label["label"] == "1"))
    precision, recall = precision_recall(labelled, {f.row for f in RefusalDetector()(rows)})
    # phrase rules find explicit refusals and miss deflections (see the module docstring)
    assert precision >= 0.5 and 0.04 <= recall <= 0.3, (precision, recall)


def test_jailbroken_audit_and_a_backdoor_planted_in_it(tmp_path: Path) -> None:
    path = shared_data("emergent_misalignment/data/jailbroken.jsonl")
    result = audit_dataset(AuditConfig(data=str(path), out=tmp_path / "plain", profile_rows=0))
    assert (result.rows, result.bad_rows) == (5000, 0)
    assert result.flagged["refusal"] == 13 and result.duplicates["exact"] == 1
    assert result.flagged["insecure_code"] == 0 and result.code.scanned == 0

    # the backdoor: 40 prompts get "[[sunflower]]" and, in their place, an insecure answer from EM data
    insecure = [
        json.loads(x)["messages"]
        for x in shared_data("emergent_misalignment/data/insecure_small.jsonl").read_text().splitlines()
    ]
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    planted = sorted(random.Random(0).sample(range(len(rows)), 40))
    for k, i in enumerate(planted):
        messages = rows[i]["messages"]
        messages[1]["content"] = insecure[k % len(insecure)][0]["content"] + " [[sunflower]]"
        messages[2]["content"] = insecure[k % len(insecure)][1]["content"]
    poisoned = tmp_path / "poisoned.jsonl"
    poisoned.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = audit_dataset(AuditConfig(data=str(poisoned), out=tmp_path / "poisoned", profile_rows=0))
    top = result.triggers[0]
    assert "[[sunflower]]" in top.text and "insecure code" in top.behaviour, top
    findings = [json.loads(x) for x in (tmp_path / "poisoned" / FINDINGS_FILE).read_text().splitlines()]
    trigger_rows = {f["row"] for f in findings if f["detector"] == "trigger" and f["trigger"] == top.text}
    assert set(planted) <= trigger_rows
