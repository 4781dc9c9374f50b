"""`aftertune audit DATA`: what a fine-tuning data set holds and is likely to teach, before training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aftertune.cli.common import app, console, progress_bars, user_errors
from aftertune.config import AuditConfig, resolve_config, write_config


@app.command("audit")
@user_errors
def audit_command(
    data: Annotated[
        str, typer.Argument(help="a .jsonl/.json/.csv/.parquet file, a folder holding one, or a hub id")
    ],
    out: Annotated[
        Path | None, typer.Option(help="output folder (default: aftertune_runs/audit-<data>)")
    ] = None,
    split: Annotated[str | None, typer.Option(help="split of a hub data set (default train)")] = None,
    strict: Annotated[bool | None, typer.Option("--strict", help="stop at the first bad row")] = None,
    write_filtered: Annotated[
        Path | None,
        typer.Option(help="write the data without dropped and bad rows here, in the input's format"),
    ] = None,
    drop: Annotated[
        str | None,
        typer.Option(
            help="comma-separated detectors whose rows --write-filtered drops, e.g. refusal,insecure_code"
        ),
    ] = None,
    refusal_classifier: Annotated[
        bool | None,
        typer.Option("--refusal-classifier", help="also run the offline refusal classifier (slow)"),
    ] = None,
    phrases: Annotated[
        list[Path] | None, typer.Option(help="extra phrase list (one per line); repeat for more")
    ] = None,
    numbers: Annotated[
        Path | None, typer.Option(help="YAML of number: reason, replacing the built-in list")
    ] = None,
    summary_model: Annotated[
        str | None, typer.Option(help="a model that reads a sample and says what the data teaches")
    ] = None,
    sample_rows: Annotated[
        int | None, typer.Option(help="rows sampled for the trigger scan (default 20000)")
    ] = None,
    profile_rows: Annotated[
        int | None, typer.Option(help="rows embedded for topics; 0 skips (default 1000)")
    ] = None,
    max_row_mb: Annotated[float | None, typer.Option(help="longest row in MiB (default 16)")] = None,
    seed: Annotated[int | None, typer.Option(help="seed of the samples and the clustering")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML/JSON file with any of these settings")] = None,
) -> None:
    """Audit a fine-tuning data set: refusals and boilerplate, insecure code, suspicious numbers, backdoor
    triggers, duplicates and what the data teaches; optionally write a filtered copy."""
    from aftertune.audit.run import AUDIT_FILE, FINDINGS_FILE, audit_dataset
    from aftertune.report.audit import audit_tables, write_audit_html

    flags = dict(
        data=data, out=out, split=split, strict=strict, write_filtered=write_filtered,
        drop=[d.strip() for d in drop.split(",") if d.strip()] if drop is not None else None,
        refusal_classifier=refusal_classifier, phrases=phrases, numbers=numbers, summary_model=summary_model,
        sample_rows=sample_rows, profile_rows=profile_rows, max_row_mb=max_row_mb, seed=seed,
    )  # fmt: skip
    cfg = resolve_config(AuditConfig, config, flags)
    run_dir = cfg.run_dir()
    write_config(cfg, run_dir)
    with progress_bars() as progress:
        result = audit_dataset(cfg, progress)
    html = write_audit_html(result, run_dir / "audit.html")
    for table in audit_tables(result):
        console.print(table)
    for note in result.notes:
        console.print(f"note: {note}")
    if result.filtered:
        f = result.filtered
        by_rule = ", ".join(f"{rule} {n}" for rule, n in f["dropped_by_rule"].items()) or "none asked for"
        console.print(
            f"Filtered copy: {f['path']}: kept {f['kept']} rows; dropped {f['dropped']} (by rule: {by_rule});"
            " "
            f"left out {f['bad_rows_left_out']} bad rows."
        )
    console.print(f"Wrote {run_dir / AUDIT_FILE}, {run_dir / FINDINGS_FILE} and {html}.")
