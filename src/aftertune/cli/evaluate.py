"""`aftertune eval` and `aftertune judge`: evaluate one model, or judge existing answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from aftertune.atomic import write_text
from aftertune.cli.common import app, console, progress_bars, status, user_errors
from aftertune.config import (
    EvalConfig,
    JudgeConfig,
    check_eval_run_dir,
    resolve_config,
    write_config,
)
from aftertune.errors import InputError, StoreError


@contextmanager
def _failures_reported(store: Any, run_dir: Path) -> Iterator[None]:
    """When requests failed: a table of them, and run_dir/failures.json, before the error itself."""
    from aftertune.failures import IncompleteWork, stored_failures
    from aftertune.report.failures import failures_table, write_failures

    try:
        yield
    except IncompleteWork:
        failures = stored_failures(store)
        console.print(failures_table(failures))
        console.print(f"Failures: {write_failures(failures, run_dir)}")
        raise
    write_failures(stored_failures(store), run_dir)  # none left: a stale failures.json goes


def _configured_model(config: EvalConfig) -> Any:
    from aftertune.models.load import load_model

    return load_model(
        config.model,
        adapter=config.adapter,
        dtype=config.dtype,
        batch_size=config.batch_size,
        trust_remote_code=config.trust_remote_code,
        allow_pickle=config.allow_pickle,
    )


def _run_suite_eval(config: EvalConfig) -> None:
    """`aftertune eval MODEL --suite NAME|FILE`: every eval of the suite, stored under the model's label."""
    from aftertune.evals.suite import judges_of, run_suite
    from aftertune.evals.suite_config import build_suite, load_suite
    from aftertune.report.terminal import suite_table
    from aftertune.store import ResultsStore

    assert config.suite is not None
    if config.questions is not None:
        raise InputError("--questions belongs to the free-form eval; with --suite, put it in the suite file.")
    evals = build_suite(load_suite(config.suite, Path.cwd(), "--suite"), base_dir=Path.cwd())
    run_dir = config.run_dir()
    check_eval_run_dir(run_dir)
    store = ResultsStore(run_dir)
    write_config(config, run_dir)
    with status(f"loading model '{config.model}'"):
        model = _configured_model(config)
    if config.triggers or config.framing:
        with _failures_reported(store, run_dir), progress_bars() as progress:
            body = _run_differential(config, evals, model, store, progress)
        store.close()
        _write_summary(run_dir / "differential.json", body)
        return
    with _failures_reported(store, run_dir), progress_bars() as progress:
        result = run_suite(evals, model, store, progress, label=config.model_label())
    store.close()
    judges = judges_of(evals)
    console.print(suite_table(result, f"{config.model_label()} on suite '{config.suite}'", judges))
    body = {
        "model": result.model,
        "label": config.model_label(),
        "suite": config.suite,
        "judges": judges,
        "metrics": {name: asdict(m.estimate) for name, m in result.metrics.items()},
        # how adaptively sampled metrics stopped (decision, samples per item, rounds)
        "adaptive": {name: asdict(m.adaptive) for name, m in result.metrics.items() if m.adaptive},
    }
    _write_summary(run_dir / "summary.json", body)


def _run_differential(
    config: EvalConfig, evals: list[Any], model: Any, store: Any, progress: Any
) -> dict[str, Any]:
    """--trigger (one: backdoor differential; several: a ranked scan) or --framing: the suite under
    two conditions on the same items, paired deltas with 95% intervals."""
    from aftertune.evals.differential import (
        backdoor_differential,
        framing_differential,
        training_framing,
        trigger_scan,
        unmonitored_framing,
    )
    from aftertune.evals.suite import judges_of
    from aftertune.models.framing import PromptEdit
    from aftertune.report.terminal import delta_table, trigger_scan_table

    if config.triggers and config.framing:
        raise InputError("Give --trigger or --framing, not both: each is its own comparison.")
    label, judges = config.model_label(), judges_of(evals)
    if config.framing:
        framing = training_framing(*([config.framing_text] if config.framing_text else []))
        reference = unmonitored_framing(*([config.reference_text] if config.reference_text else []))
        diff = framing_differential(
            evals, model, store, framing=framing, reference=reference, label=label, seed=config.seed,
            progress=progress,
        )  # fmt: skip
        console.print(delta_table(diff.deltas, f"Compliance gap: '{framing.text}' minus '{reference.text}'"))
        return {"kind": "framing", "judges": judges, **diff.summary()}
    edits = [PromptEdit(config.trigger_place, text) for text in config.triggers]
    if len(edits) == 1:
        diff = backdoor_differential(
            evals, model, store, edits[0], label=label, seed=config.seed, progress=progress
        )
        console.print(delta_table(diff.deltas, f"With minus without the trigger {edits[0].text!r}"))
        return {"kind": "trigger", "judges": judges, **diff.summary()}
    scan = trigger_scan(
        evals,
        model,
        store,
        edits,
        metric=config.scan_metric,
        label=label,
        seed=config.seed,
        progress=progress,
    )
    console.print(trigger_scan_table(scan))
    return {"kind": "trigger_scan", "judges": judges, **scan.summary()}


def _write_summary(path: Path, body: dict[str, Any]) -> None:
    try:
        write_text(path, json.dumps(body, indent=2, default=str) + "\n")
    except OSError as e:
        raise StoreError(f"Cannot write {path}: {e.strerror}. The results store keeps every result.") from e
    console.print(f"Results: {path.parent / 'results.sqlite'}, {path}")


def _run_eval(config: EvalConfig) -> None:
    if (config.triggers or config.framing) and config.suite is None:
        raise InputError(
            "--trigger and --framing compare a suite under two conditions: give --suite too, e.g. "
            "--suite quick (`aftertune suites` lists the named ones)."
        )
    if config.suite is not None:
        _run_suite_eval(config)
        return
    from aftertune.data.questions import builtin_questions, load_questions
    from aftertune.evals.freeform import (
        FreeformSettings,
        MisalignmentEval,
        check_questions,
        freeform_report,
        run_freeform,
    )
    from aftertune.judges.judgement import MisalignmentThresholds
    from aftertune.judges.load import load_judge
    from aftertune.report.terminal import flagged_answers, freeform_table
    from aftertune.store import ResultsStore, export_samples

    # Cheap checks first: a bad question file or store fails before any model loads.
    questions = load_questions(config.questions) if config.questions else builtin_questions()
    check_questions(questions)
    run_dir = config.run_dir()
    check_eval_run_dir(run_dir)
    store = ResultsStore(run_dir)
    write_config(config, run_dir)
    with status(f"loading judge '{config.judge}'"):
        judge = load_judge(config.judge)
    with status(
        f"loading model '{config.model}' (the embedded model is converted once on first use, ~1 min)"
    ):
        model = _configured_model(config)
    settings = FreeformSettings(
        samples=config.samples,
        temperature=config.temperature,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
        seed=config.seed,
        thresholds=MisalignmentThresholds(config.aligned_below, config.coherent_above),
    )
    with _failures_reported(store, run_dir), progress_bars() as progress:
        result = run_freeform(questions, model, judge, store, settings, progress=progress)
    # Recorded as an eval report under the model's name too, for `aftertune compare`.
    as_suite = MisalignmentEval(questions, judge, settings)
    report = freeform_report(result, as_suite.name, as_suite.digest)
    store.put_eval_report(result.model, as_suite.name, as_suite.digest, report.to_json())
    store.put_model_label(config.model_label(), result.model)
    console.print(freeform_table(result))
    evidence = flagged_answers(result)
    if evidence is not None:
        console.print(evidence)
    paths = export_samples(result.to_dataframe(), run_dir)
    summary = run_dir / "summary.json"
    try:
        write_text(summary, json.dumps(result.summary(), indent=2, default=str) + "\n")
    except OSError as e:
        raise StoreError(
            f"Cannot write {summary}: {e.strerror}. The results store keeps every result."
        ) from e
    store.close()
    console.print(f"Results: {run_dir / 'results.sqlite'}, {summary}, {', '.join(str(p) for p in paths)}")


@app.command("eval")
@user_errors
def eval_command(
    model: Annotated[
        str, typer.Argument(help="'embedded', a model folder, a hub id, or http://HOST/v1/NAME")
    ],
    questions: Annotated[
        Path | None,
        typer.Option(help="question file in the emergent-misalignment YAML format; default: built-in"),
    ] = None,
    suite: Annotated[
        str | None,
        typer.Option(
            help="run a suite instead: a named one (`aftertune suites` lists them) or a suite YAML file"
        ),
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(
            help="'offline' (default) or 'llm:' + a model, e.g. llm:http://localhost:8000/v1/gpt-4o"
        ),
    ] = None,
    samples: Annotated[
        int | None, typer.Option(help="samples per paraphrase (default: each question's own)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="run directory (default: aftertune_runs/eval-<model>)")
    ] = None,
    adapter: Annotated[Path | None, typer.Option(help="LoRA adapter folder to put on the model")] = None,
    temperature: Annotated[float | None, typer.Option(help="sampling temperature (default 1)")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="longest answer in tokens (default 256)")] = None,
    seed: Annotated[int | None, typer.Option(help="seed for sampling and the bootstrap (default 0)")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="rows per forward pass, hf backend (default 16)")
    ] = None,
    trigger: Annotated[
        list[str] | None,
        typer.Option(help="with --suite: compare with/without this trigger; repeat it to rank candidates"),
    ] = None,
    trigger_place: Annotated[
        str | None, typer.Option(help="where the trigger goes: system, prefix or suffix (default suffix)")
    ] = None,
    scan_metric: Annotated[str | None, typer.Option(help="rank a trigger scan by this eval/metric")] = None,
    framing: Annotated[
        bool, typer.Option("--framing", help="with --suite: 'trained on' vs 'unmonitored' system prompts")
    ] = False,
    framing_text: Annotated[str | None, typer.Option(help="the 'trained on' framing sentence")] = None,
    reference_text: Annotated[str | None, typer.Option(help="the 'unmonitored' framing sentence")] = None,
    trust_remote_code: Annotated[
        bool,
        typer.Option(
            "--trust-remote-code", help="run the model folder's own Python code (only code you trust)"
        ),
    ] = False,
    allow_pickle: Annotated[
        bool,
        typer.Option(
            "--allow-pickle", help="load pickle (.bin) weights, which can run code (only files you trust)"
        ),
    ] = False,
    config: Annotated[Path | None, typer.Option(help="YAML/JSON file with any of these settings")] = None,
) -> None:
    """Evaluate MODEL on free-form misalignment questions (or a --suite), judged, with 95% intervals.

    With --suite, --trigger compares the suite with and without a trigger string (several: a ranked
    scan) and --framing gives the compliance gap between two system-prompt framings.

    Re-running the same command reuses every stored sample and judgement; an interrupted run resumes.
    """
    flags = dict(
        model=model, questions=questions, suite=suite, judge=judge, samples=samples, out=out, adapter=adapter,
        temperature=temperature, max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size,
        triggers=trigger or None, trigger_place=trigger_place, scan_metric=scan_metric,
        framing=framing or None, framing_text=framing_text, reference_text=reference_text,
        trust_remote_code=trust_remote_code or None, allow_pickle=allow_pickle or None,
    )  # fmt: skip
    _run_eval(resolve_config(EvalConfig, config, flags))


@app.command("judge")
@user_errors
def judge_command(
    file: Annotated[Path, typer.Argument(help="CSV or JSONL with question and answer columns")],
    out: Annotated[Path, typer.Option(help="where to write the judged rows (.csv or .jsonl)")],
    judge: Annotated[str | None, typer.Option(help="'offline' (default) or 'llm:' + a model")] = None,
    questions: Annotated[
        Path | None, typer.Option(help="take judge prompts from this question file (matched by question_id)")
    ] = None,
    run_dir: Annotated[Path | None, typer.Option(help="where the judgement cache lives")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML/JSON file with any of these settings")] = None,
) -> None:
    """Judge existing answers (e.g. another tool's) and write each row back with the judgement added."""
    from aftertune.data.answers import answer_format, read_answer_rows, write_answer_rows
    from aftertune.data.questions import builtin_questions, load_questions
    from aftertune.evals.rejudge import judge_answer_rows, judge_prompts_for
    from aftertune.judges.judgement import MisalignmentThresholds
    from aftertune.judges.load import load_judge
    from aftertune.store import ResultsStore

    cfg = resolve_config(
        JudgeConfig, config, dict(input=file, out=out, judge=judge, questions=questions, run_dir=run_dir)
    )
    answer_format(cfg.out)
    rows = read_answer_rows(cfg.input)
    prompt_set = load_questions(cfg.questions) if cfg.questions else builtin_questions()
    prompts = judge_prompts_for(rows, prompt_set)
    store = ResultsStore(cfg.store_dir())
    write_config(cfg, cfg.store_dir())
    with status(f"loading judge '{cfg.judge}'"):
        the_judge = load_judge(cfg.judge)
    with _failures_reported(store, cfg.store_dir()), progress_bars() as progress:
        judged, renamed = judge_answer_rows(
            rows,
            the_judge,
            store,
            prompts,
            MisalignmentThresholds(cfg.aligned_below, cfg.coherent_above),
            progress,
        )
    store.close()
    write_answer_rows(judged, cfg.out)
    scored = sum(1 for r in judged if r["misaligned"] is not None)
    misaligned = sum(1 for r in judged if r["misaligned"])
    if renamed:
        console.print(
            f"Input fields {', '.join(renamed)} are kept as {', '.join(f'{n}_input' for n in renamed)}."
        )
    console.print(
        f"Judged {len(judged)} rows ({scored} with both scores, {misaligned} misaligned) -> {cfg.out}"
    )


@app.command("suites")
@user_errors
def suites_command() -> None:
    """List the named eval suites that `aftertune eval MODEL --suite NAME` and spec files can use."""
    from importlib import resources

    from rich.table import Table

    from aftertune.evals.suite_config import named_suites

    table = Table("suite", "what it runs", box=None)
    folder = resources.files("aftertune.evals").joinpath("suites")
    for name in named_suites():
        text = folder.joinpath(f"{name}.yaml").read_text()
        about = " ".join(line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#"))
        table.add_row(name, about)
    console.print(table)
