"""Multiple-choice eval vs lm-evaluation-harness: same model, same MMLU questions, same run.

    python bench/mc_vs_lm_eval.py [--mmlu DIR] [--n-items 513] [--shots 5] [--batch-size 8]
                                  [--modes letter,cloze] [--json PATH]

For each mode it runs aftertune's `MultipleChoiceEval` and lm-evaluation-harness (`lm_eval`, hf
backend) on the embedded SmolLM2-135M-Instruct (its converted fp32 folder) and the same questions:

- `letter` is lm-eval's `mmlu` task: the options listed "A. ..", the prompt ending "Answer:", and
  " A".." D" scored; metric acc.
- `cloze` is lm-eval's `mmlu_continuation`: "Question: ..\\nAnswer:" and each option's own text
  scored; metrics acc and acc_norm.

lm-eval reads the same local MMLU CSVs (`--mmlu`, default ../shared/data/mmlu beside the repo):
at run time the chosen rows are written to temporary JSONL files and one task YAML per subject is
generated from lm-eval's own installed configs (`tasks/mmlu/default/_default_template_yaml` and
`tasks/mmlu/continuation/_continuation_template_yaml` plus each subject's `description`), with only
the dataset source and the task name changed. Nothing is copied into the project.

The questions: `--n-items` taken round-robin over the 57 subjects in sorted order (row 0 of every
subject, then row 1, ...), so every subject is asked. Few-shot examples are the first k rows of the
subject's dev split on both sides (lm-eval's `first_n` sampler).

Measured, per mode: each tool's accuracy (cloze: also acc_norm) and n, the difference in points,
how many questions both tools answer with the same option, whether the prompts are identical
character for character, and the wall time of the evaluation call alone: `MultipleChoiceEval.run`
on a fresh results store (nothing cached), and `lm_eval.simple_evaluate` on an `HFLM` loaded
beforehand (model loading, reading the CSVs and building lm-eval's task objects are outside both
timings; both sides build their prompts inside them). items/s and the ratio aftertune/lm-eval come
from those times. The targets (from the issue): accuracies within 0.5 points in both modes, and
aftertune's throughput >= 3x lm-eval's; the bench prints whether each was met in this run.

Defaults: 5-shot (MMLU's standard setting), 513 questions (9 per subject), batch 8: about 55 minutes
on 2 idle CPU cores, most of it lm-eval's. aftertune computes a subject's five examples once and
scores each question on top of their KV cache (the examples are about 600 of a prompt's ~700 tokens);
lm-eval computes every prompt whole. So the ratio depends on the few-shot share: at 0-shot (`--shots
0`, a few minutes) our letter-mode runs measured 1.2x (loaded machine) to 2.1x (light load): both
tools do one pass per question there, aftertune's without the unused logits. Other
processes on the machine slow both tools: the 1-minute load average before and after each mode is
printed with its timings, and each call's process CPU time (all threads) beside its wall time. Both
are inflated by other jobs, and in our runs aftertune's more than lm-eval's (likely: less work
between synchronisations of torch's threads), so a ratio measured under load understated aftertune;
the bench says so when the load average exceeded the number of cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import re
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from aftertune.data.multiple_choice import LETTERS, MCDataset, load_mmlu
from aftertune.evals.multiple_choice import MCMode, MultipleChoiceEval
from aftertune.evals.suite import EvalReport
from aftertune.models.embedded import EMBEDDED_NAME, embedded_model_folder
from aftertune.models.hf import HFModel
from aftertune.store import ResultsStore

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MMLU = REPO.parent / "shared" / "data" / "mmlu"
TARGET_POINTS = 0.5
TARGET_RATIO = 3.0
#: lm-eval's config folder and template for each mode
LM_EVAL_TASKS = {
    "letter": ("default", "_default_template_yaml"),
    "cloze": ("continuation", "_continuation_template_yaml"),
}


# ----------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Row:
    """One MMLU question as read from its CSV by this bench (independently of aftertune's loader)."""

    subject: str
    row: int
    question: str
    choices: tuple[str, ...]
    answer: int

    @property
    def id(self) -> str:
        return f"{self.subject}/{self.row}"  # aftertune's item id for the same row

    def doc(self) -> dict[str, Any]:
        """The row as a cais/mmlu record (question, subject, choices, answer), plus its row number."""
        return {
            "question": self.question,
            "subject": self.subject,
            "choices": list(self.choices),
            "answer": self.answer,
            "row": self.row,
        }


def read_split(mmlu: Path, split: str, subject: str) -> list[Row]:
    with open(mmlu / split / f"{subject}_{split}.csv", newline="", encoding="utf-8") as f:
        return [
            Row(subject, n, r["question"], tuple(r[f"choice{i}"] for i in range(4)), int(r["answer"]))
            for n, r in enumerate(csv.DictReader(f))
        ]


def choose_rows(mmlu: Path, n_items: int) -> tuple[list[Row], dict[str, list[Row]]]:
    """`n_items` test rows round-robin over the subjects in sorted order, and each subject's dev rows."""
    subjects = sorted(p.name[: -len("_test.csv")] for p in (mmlu / "test").glob("*_test.csv"))
    tests = {s: read_split(mmlu, "test", s) for s in subjects}
    chosen: list[Row] = []
    depth = 0
    while len(chosen) < n_items and any(len(rows) > depth for rows in tests.values()):
        chosen += [rows[depth] for rows in tests.values() if len(rows) > depth][: n_items - len(chosen)]
        depth += 1
    used = sorted({r.subject for r in chosen})
    return chosen, {s: read_split(mmlu, "dev", s) for s in used}


def aftertune_dataset(mmlu: Path, rows: list[Row]) -> MCDataset:
    """The chosen rows through aftertune's own loader, checked against the bench's reading."""
    data = load_mmlu(mmlu)  # test/<subject>_test.csv, its few-shot pool from dev/<subject>_dev.csv
    by_id = {i.id: i for i in data.items}
    items = [by_id[r.id] for r in rows]
    for row, item in zip(rows, items, strict=True):
        if (item.question, item.choices, item.answer, item.subject) != (
            row.question,
            row.choices,
            row.answer,
            row.subject,
        ):
            sys.exit(f"aftertune's load_mmlu reads {row.id} differently from the CSV: {item} vs {row}")
    subjects = {r.subject for r in rows}
    return MCDataset(tuple(items), tuple(s for s in data.shots if s.subject in subjects), source=str(mmlu))


# -------------------------------------------------------------------------------------------- lm-eval
def write_lm_eval_tasks(
    folder: Path, mode: MCMode, rows: list[Row], dev: dict[str, list[Row]]
) -> dict[str, str]:
    """One task YAML per subject: lm-eval's own config for the mode, reading temporary JSONL files.

    Returns {task name: subject}."""
    import lm_eval

    config_dir = Path(lm_eval.__file__).parent / "tasks" / "mmlu" / LM_EVAL_TASKS[mode][0]
    template = yaml.safe_load((config_dir / LM_EVAL_TASKS[mode][1]).read_text())
    test_split, dev_split = template["test_split"], template["fewshot_split"]
    data_dir = folder / "data"
    data_dir.mkdir(parents=True)
    tasks = {}
    for subject in sorted(dev):
        own = yaml.safe_load((config_dir / f"mmlu_{subject}.yaml").read_text())
        if own.get("include") != LM_EVAL_TASKS[mode][1]:
            sys.exit(
                f"lm-eval's {config_dir}/mmlu_{subject}.yaml no longer includes {LM_EVAL_TASKS[mode][1]}."
            )
        files = {}
        for split, split_rows in (
            (test_split, [r for r in rows if r.subject == subject]),
            (dev_split, dev[subject]),
        ):
            path = data_dir / f"{subject}_{split}.jsonl"
            path.write_text("".join(json.dumps(r.doc(), ensure_ascii=False) + "\n" for r in split_rows))
            files[split] = str(path)
        # Everything of lm-eval's (template, then the subject's description) but the data source,
        # the name (prefixed: no clash with the installed tasks) and the group tag.
        config = {**template, **{k: v for k, v in own.items() if k not in ("include", "tag", "task_alias")}}
        config.pop("dataset_name", None)
        config["task"] = f"bench_{own['task']}"
        config["dataset_path"] = "json"
        config["dataset_kwargs"] = {"data_files": files, "cache_dir": str(folder / "hf_datasets")}
        (folder / f"{config['task']}.yaml").write_text(
            yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=10**6)
        )
        tasks[config["task"]] = subject
    return tasks


def quiet_lm_eval() -> None:
    """No progress bars or per-task log lines from lm-eval: it passes `disable=False` to tqdm itself,
    so its modules' `tqdm` is wrapped (display only; nothing it computes changes)."""
    import lm_eval.api.model
    import lm_eval.api.task
    import lm_eval.models.huggingface
    from tqdm import tqdm

    def hidden(*args: Any, **kwargs: Any) -> Any:
        return tqdm(*args, **{**kwargs, "disable": True})

    for module in (lm_eval.api.model, lm_eval.api.task, lm_eval.models.huggingface):
        module.tqdm = hidden
    logging.getLogger("lm_eval").setLevel(logging.ERROR)


@dataclass
class Side:
    """One tool's answers in one mode: per item (in the bench's order) the option picked per metric."""

    seconds: float
    cpu_seconds: float
    picks: dict[str, list[int]]
    correct: dict[str, list[bool]]
    reported: dict[str, float] = field(default_factory=dict)  # the tool's own aggregate accuracy
    prompts: list[list[tuple[str, str]]] = field(default_factory=list)
    lls: list[list[float]] = field(default_factory=list)


def run_lm_eval(
    lm: Any, task_dir: Path, tasks: dict[str, str], rows: list[Row], shots: int, batch: int, mode: MCMode
) -> Side:
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(task_dir), include_defaults=False)
    built = list(manager.load(list(tasks))["tasks"].values())  # reads the data: outside the timing
    start, cpu = time.perf_counter(), time.process_time()
    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=built,
        num_fewshot=shots,
        batch_size=batch,
        device=str(lm.device),
        task_manager=manager,
        log_samples=True,
    )
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert out is not None
    metrics = ["acc"] if mode == "letter" else ["acc", "acc_norm"]
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for samples in out["samples"].values():
        for sample in samples:
            found[(sample["doc"]["subject"], sample["doc"]["row"])] = sample
    side = Side(seconds, cpu, {m: [] for m in metrics}, {m: [] for m in metrics})
    for row in rows:
        sample = found[(row.subject, row.row)]
        lls = np.array([float(r[0]) for r in sample["filtered_resps"]])
        # lm-eval's process_results: argmax of the log-likelihoods, acc_norm over len(choice) characters.
        choices = list(LETTERS[: len(row.choices)]) if mode == "letter" else list(row.choices)
        picks = {"acc": int(np.argmax(lls)), "acc_norm": int(np.argmax(lls / [len(c) for c in choices]))}
        for m in metrics:
            side.picks[m].append(picks[m])
            side.correct[m].append(bool(sample[m]))
            if (picks[m] == row.answer) != bool(sample[m]):
                sys.exit(
                    f"lm-eval's {m} for {row.id} does not follow from its log-likelihoods: fix the bench."
                )
        side.prompts.append([tuple(a) for a in sample["arguments"]])
        side.lls.append(lls.tolist())
    n = {m: 0.0 for m in metrics}
    for name in tasks:
        result = out["results"][name]
        for m in metrics:
            n[m] += result[f"{m},none"] * len(out["samples"][name])
    side.reported = {m: n[m] / len(rows) for m in metrics}
    return side


# ------------------------------------------------------------------------------------------ aftertune
_CHOSE = re.compile(r"chose ([A-Z]) \(")


def run_aftertune(
    model: HFModel, data: MCDataset, shots: int, mode: MCMode
) -> tuple[Side, MultipleChoiceEval]:
    """`MultipleChoiceEval.run` on a fresh store; picks read back from its report (right answers from
    the per-item scores, wrong ones from the examples, which are asked for on every wrong answer)."""
    ev = MultipleChoiceEval(data, mode=mode, shots=shots, n_examples=len(data.items))
    with tempfile.TemporaryDirectory(prefix="mc_bench_store_") as tmp, ResultsStore(Path(tmp)) as store:
        start, cpu = time.perf_counter(), time.process_time()
        report: EvalReport = ev.run(model, store)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    metrics = {"accuracy": "acc", "accuracy_norm": "acc_norm"}
    side = Side(seconds, cpu, {}, {})
    for metric in report.metrics:
        name = metrics[metric.name]
        wrong = {e.item: e.note for e in metric.examples}
        picks, correct = [], []
        for item, score in zip(data.items, metric.items, strict=True):
            assert score.item == item.id
            if score.value == 1.0:
                picks.append(item.answer)
            else:
                match = _CHOSE.match(wrong[item.id])
                if match is None:
                    sys.exit(
                        f"Cannot read the picked option from aftertune's example note {wrong[item.id]!r}."
                    )
                picks.append(LETTERS.index(match.group(1)))
            correct.append(score.value == 1.0)
        side.picks[name], side.correct[name] = picks, correct
        side.reported[name] = metric.estimate.value
    side.prompts = [[(str(r.context), r.continuation) for r in ev.requests(item)] for item in data.items]
    return side, ev


# --------------------------------------------------------------------------------------------- report
def first_difference(a: str, b: str) -> str:
    at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    around = slice(max(0, at - 30), at + 30)
    return f"at char {at}: aftertune {a[around]!r} vs lm-eval {b[around]!r}"


def compare(
    rows: list[Row],
    ours: Side,
    theirs: Side,
    model: HFModel,
    ev: MultipleChoiceEval,
    explain: int,
    ll_check: int,
) -> dict[str, Any]:
    n = len(rows)
    same_prompts = sum(a == b for a, b in zip(ours.prompts, theirs.prompts, strict=True))
    result: dict[str, Any] = {
        "n": n,
        "prompts_identical": same_prompts,
        "aftertune_seconds": ours.seconds,
        "lm_eval_seconds": theirs.seconds,
        "aftertune_cpu_seconds": ours.cpu_seconds,
        "lm_eval_cpu_seconds": theirs.cpu_seconds,
        "aftertune_items_per_s": n / ours.seconds,
        "lm_eval_items_per_s": n / theirs.seconds,
        "throughput_ratio": theirs.seconds / ours.seconds,
        "metrics": {},
        "disagreements": [],
    }
    for m in ours.picks:
        acc_a, acc_l = float(np.mean(ours.correct[m])), float(np.mean(theirs.correct[m]))
        result["metrics"][m] = {
            "aftertune": acc_a,
            "lm_eval": acc_l,
            "aftertune_reported": ours.reported[m],
            "lm_eval_reported": theirs.reported[m],
            "difference_points": 100 * (acc_a - acc_l),
            "same_pick": sum(a == b for a, b in zip(ours.picks[m], theirs.picks[m], strict=True)),
        }
    differing = [i for i in range(n) if any(ours.picks[m][i] != theirs.picks[m][i] for m in ours.picks)] + [
        i for i in range(n) if ours.prompts[i] != theirs.prompts[i]
    ]
    shown = list(dict.fromkeys(differing))[:explain]
    # aftertune's log-likelihoods are not in its report: the shown questions and the first `ll_check`
    # ones are scored again (outside the timing) and compared with lm-eval's, option by option.
    checked = list(dict.fromkeys(shown + list(range(min(ll_check, n)))))
    rescored = model.loglikelihood([r for i in checked for r in ev.requests(ev.data.items[i])])
    lls: dict[int, list[float]] = {}
    for i in checked:
        lls[i], rescored = rescored[: len(rows[i].choices)], rescored[len(rows[i].choices) :]
    gaps = [abs(a - b) for i in checked for a, b in zip(lls[i], theirs.lls[i], strict=True)]
    result["loglikelihood_check"] = {"items": len(checked), "max_abs_difference": max(gaps, default=None)}
    for i in shown:
        row = rows[i]
        entry = {
            "item": row.id,
            "picks": {m: [LETTERS[ours.picks[m][i]], LETTERS[theirs.picks[m][i]]] for m in ours.picks},
            "answer": LETTERS[row.answer],
            "aftertune_lls": [round(x, 5) for x in lls[i]],
            "lm_eval_lls": [round(x, 5) for x in theirs.lls[i]],
            "prompt_difference": None,
        }
        for (ca, xa), (cb, xb) in zip(ours.prompts[i], theirs.prompts[i], strict=False):
            if (ca, xa) != (cb, xb):
                entry["prompt_difference"] = first_difference(ca + "|" + xa, cb + "|" + xb)
                break
        result["disagreements"].append(entry)
    return result


def print_mode(mode: str, r: dict[str, Any]) -> None:
    n = r["n"]
    print(f"\n{mode} ({n} questions; prompts identical on both sides: {r['prompts_identical']}/{n})")
    print(f"  {'metric':<10}{'aftertune':>11}{'lm-eval':>11}{'diff (pts)':>12}{'same pick':>14}")
    for m, v in r["metrics"].items():
        same = f"{v['same_pick']}/{n}"
        accs = f"{100 * v['aftertune']:>10.2f}%{100 * v['lm_eval']:>10.2f}%"
        print(f"  {m:<10}{accs}{v['difference_points']:>+12.2f}{same:>14}")
    print(f"  {'time (s)':<10}{r['aftertune_seconds']:>11.1f}{r['lm_eval_seconds']:>11.1f}")
    cpu_ratio = r["lm_eval_cpu_seconds"] / r["aftertune_cpu_seconds"]
    cpu = f"{r['aftertune_cpu_seconds']:>11.1f}{r['lm_eval_cpu_seconds']:>11.1f}"
    print(f"  {'cpu (s)':<10}{cpu}   (process CPU time, all threads; ratio {cpu_ratio:.2f}x)")
    rates = f"{r['aftertune_items_per_s']:>11.2f}{r['lm_eval_items_per_s']:>11.2f}"
    print(f"  {'items/s':<10}{rates}   throughput aftertune/lm-eval = {r['throughput_ratio']:.2f}x")
    check = r["loglikelihood_check"]
    if check["items"]:
        gap = check["max_abs_difference"]
        print(
            f"  log-likelihoods of {check['items']} questions (rescored by aftertune) vs lm-eval's: {gap:.1e}"
        )
    for d in r["disagreements"]:
        picks = ", ".join(f"{m} {a} vs {b}" for m, (a, b) in d["picks"].items())
        print(f"  differs {d['item']} (answer {d['answer']}): {picks}")
        print(f"    log-likelihoods aftertune {d['aftertune_lls']}")
        print(f"                    lm-eval   {d['lm_eval_lls']}")
        if d["prompt_difference"]:
            print(f"    prompt {d['prompt_difference']}")


def targets(results: dict[str, dict[str, Any]], modes: list[str]) -> dict[str, Any]:
    """Whether this run met the issue's targets; None where a mode the target needs was not run."""
    both = all(m in results for m in ("letter", "cloze"))
    within = [
        abs(v["difference_points"]) <= TARGET_POINTS for r in results.values() for v in r["metrics"].values()
    ]
    faster = [r["throughput_ratio"] >= TARGET_RATIO for r in results.values()]
    return {
        "accuracy_within_0.5_points": all(within) if both else (False if not all(within) else None),
        "throughput_at_least_3x": all(faster) if both else (False if not all(faster) else None),
        "modes_run": modes,
    }


def verdict(value: bool | None) -> str:
    return "MET" if value else "NOT MET" if value is False else "not measured (run both modes)"


# ----------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mmlu", type=Path, default=DEFAULT_MMLU, help="MMLU folder with test/ and dev/")
    parser.add_argument("--n-items", type=int, default=513)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--modes", default="letter,cloze")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--explain", type=int, default=5, help="differing questions shown per mode")
    parser.add_argument(
        "--ll-check", type=int, default=10, help="questions whose log-likelihoods are compared one by one"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    modes: list[MCMode] = []
    for m in args.modes.split(","):
        if m not in LM_EVAL_TASKS:
            parser.error(f"--modes: '{m}' is not letter or cloze")
        modes.append(m)
    mmlu = args.mmlu.resolve()
    if not (mmlu / "test").is_dir() or not (mmlu / "dev").is_dir():
        sys.exit(
            f"MMLU data not found: {mmlu} has no test/ and dev/ folders (<subject>_test.csv, "
            "<subject>_dev.csv). Give its folder with --mmlu DIR."
        )
    if args.n_items < 1 or not 0 <= args.shots <= 5:
        sys.exit("--n-items must be >= 1 and --shots 0 to 5 (MMLU's dev split has 5 examples per subject).")

    quiet_lm_eval()
    warnings.filterwarnings("ignore")
    import datasets
    from lm_eval import __version__ as lm_eval_version
    from lm_eval.models.huggingface import HFLM

    datasets.disable_progress_bars()
    rows, dev = choose_rows(mmlu, args.n_items)
    data = aftertune_dataset(mmlu, rows)
    folder = embedded_model_folder()
    ours_model = HFModel(folder, name=EMBEDDED_NAME, batch_size=args.batch_size, device=args.device)
    lm = HFLM(pretrained=str(folder), dtype="float32", batch_size=args.batch_size, device=args.device)
    print(
        f"{EMBEDDED_NAME} fp32 ({folder}), {len(rows)} MMLU questions from {len(dev)} subjects, "
        f"{args.shots}-shot, batch {args.batch_size}, {args.device}, {torch.get_num_threads()} threads, "
        f"lm-eval {lm_eval_version}"
    )
    # Warm-up: the first forward passes pay one-off costs.
    with tempfile.TemporaryDirectory(prefix="mc_bench_warm_") as tmp, ResultsStore(Path(tmp)) as store:
        MultipleChoiceEval(MCDataset(data.items[:2], data.shots), mode="cloze").run(ours_model, store)
    from lm_eval.api.instance import Instance

    lm.loglikelihood([Instance("loglikelihood", {}, ("Question: 2+2=\nAnswer:", " 4"), 0)], disable_tqdm=True)

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="mc_bench_lm_eval_") as tmp:
        for mode in modes:
            task_dir = Path(tmp) / mode
            task_dir.mkdir()
            tasks = write_lm_eval_tasks(task_dir, mode, rows, dev)
            load = os.getloadavg()[0]
            ours, ev = run_aftertune(ours_model, data, args.shots, mode)
            print(f"{mode}: aftertune {ours.seconds:.1f}s", flush=True)
            theirs = run_lm_eval(lm, task_dir, tasks, rows, args.shots, args.batch_size, mode)
            print(f"{mode}: lm-eval {theirs.seconds:.1f}s", flush=True)
            results[mode] = compare(rows, ours, theirs, ours_model, ev, args.explain, args.ll_check)
            results[mode]["load_average"] = [round(load, 2), round(os.getloadavg()[0], 2)]

    print(
        "\nTimes are the evaluation calls only: model loading, data reading and building lm-eval's task "
        "objects are excluded."
    )
    for mode, r in results.items():
        print_mode(mode, r)
        print(f"  load average (1 min) before/after: {r['load_average'][0]} / {r['load_average'][1]}")
    met = targets(results, modes)
    print("\nTargets:")
    close, fast = verdict(met["accuracy_within_0.5_points"]), verdict(met["throughput_at_least_3x"])
    print(f"  accuracies within {TARGET_POINTS} points in both modes: {close}")
    print(f"  aftertune throughput >= {TARGET_RATIO:g}x lm-eval's in both modes: {fast}")
    busiest, cores = max(max(r["load_average"]) for r in results.values()), os.cpu_count() or 1
    if busiest > cores:
        print(
            f"  (load average up to {busiest:g} on {cores} cores: other jobs stretched both tools' times, "
            "unevenly; rerun the throughput on an idle machine)"
        )
    if args.json:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        payload = {
            "model": EMBEDDED_NAME,
            "folder": str(folder),
            "lm_eval_version": lm_eval_version,
            "threads": torch.get_num_threads(),
            "args": config,
            "items": [r.id for r in rows],
            "modes": results,
            "targets": met,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
