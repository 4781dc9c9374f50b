"""A results store or experiment file that is damaged, another program's, or of a newer format is
refused by every command with one paragraph naming the file and the fix, before any work, and
without touching it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aftertune.cli import app
from aftertune.errors import StoreError
from aftertune.judges.judgement import JudgeItem, Judgement
from aftertune.store import STORE_FILE, ResultsStore, judgement_key

runner = CliRunner()

SPEC = """\
name: files
seeds: [0]
arms:
  a:
    data: {source: "builtin:insecure_code", limit: 12}
training: {max_steps: 2, batch_size: 2, max_length: 64}
lora: {r: 4, alpha: 8, target_modules: [q_proj]}
eval:
  every: 2
  suite:
    - {kind: task_loss, holdout: 2}
"""


def a_store_with_rows(run_dir: Path) -> Path:
    """A real store, a few pages long, with its WAL folded into the file."""
    items = [JudgeItem("q", f"answer {i} " * 50, "aligned") for i in range(100)]
    with ResultsStore(run_dir) as store:
        store.put_judgements("j", [(judgement_key("j", it), it, Judgement(50.0)) for it in items])
    with sqlite3.connect(run_dir / STORE_FILE) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return run_dir / STORE_FILE


def damaged(run_dir: Path) -> Path:
    """A store whose pages after the schema have garbage headers (a bad disk, a botched copy): SQLite
    opens it and reads the schema, and only a query of a table fails."""
    path = a_store_with_rows(run_dir)
    data = bytearray(path.read_bytes())
    page = 4096
    for start in range(2 * page, len(data), page):
        data[start : start + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    return path


def truncated(run_dir: Path) -> Path:
    path = a_store_with_rows(run_dir)
    path.write_bytes(path.read_bytes()[: 3 * 4096])
    return path


def garbage(run_dir: Path) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / STORE_FILE).write_bytes(b"\x00\x01 not a database " * 300)
    return run_dir / STORE_FILE


def foreign(run_dir: Path) -> Path:
    run_dir.mkdir(parents=True)
    with sqlite3.connect(run_dir / STORE_FILE) as db:
        db.execute("CREATE TABLE users (name TEXT)")
        db.execute("INSERT INTO users VALUES ('ada')")
    db.close()
    return run_dir / STORE_FILE


def newer(run_dir: Path) -> Path:
    path = a_store_with_rows(run_dir)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'version'")
    db.close()
    return path


BAD_STORES = {
    "damaged": (damaged, "is damaged|not an aftertune results store"),
    "truncated": (truncated, "is damaged|not an aftertune results store"),
    "garbage": (garbage, "not an aftertune results store"),
    "foreign": (foreign, "not an aftertune results store"),
    "newer": (newer, "version 99"),
}


@pytest.mark.parametrize("kind", BAD_STORES)
def test_the_store_refuses_the_file_and_leaves_it_as_it_was(tmp_path: Path, kind: str) -> None:
    make, message = BAD_STORES[kind]
    path = make(tmp_path / "run")
    before = path.read_bytes()
    with pytest.raises(StoreError, match=message) as raised:
        ResultsStore(tmp_path / "run")
    assert str(path) in str(raised.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [STORE_FILE], "no -wal or -shm left beside it"


def one_paragraph_error(output: str, path: Path) -> str:
    assert "Traceback" not in output
    assert output.startswith("error: "), output
    assert str(path) in " ".join(output.split()), output
    return output


@pytest.mark.parametrize("kind", BAD_STORES)
def test_eval_refuses_the_store_before_loading_a_model(tmp_path: Path, kind: str) -> None:
    make, message = BAD_STORES[kind]
    path = make(tmp_path / "run")
    result = runner.invoke(app, ["eval", "embedded", "--out", str(tmp_path / "run"), "--max-new-tokens", "4"])
    assert result.exit_code == StoreError.exit_code, result.output
    one_paragraph_error(result.output, path)
    assert any(m in result.output for m in message.split("|"))
    assert not (tmp_path / "run" / "config.json").exists(), "nothing is written beside a refused store"


@pytest.mark.parametrize("kind", ["foreign", "damaged"])
def test_run_and_sweep_refuse_the_store_before_writing_anything(tmp_path: Path, kind: str) -> None:
    make, _ = BAD_STORES[kind]
    path = make(tmp_path / "run")
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    result = runner.invoke(app, ["run", str(spec), "--out", str(tmp_path / "run")])
    assert result.exit_code == StoreError.exit_code, result.output
    one_paragraph_error(result.output, path)
    assert not (tmp_path / "run" / "experiment.json").exists()

    # a sweep of a directory whose experiment file is right but whose store is not
    (tmp_path / "run" / "experiment.json").write_text(
        json.dumps({"spec": {**_spec_fields(spec)}, "base_dir": str(tmp_path)})
    )
    result = runner.invoke(app, ["sweep", str(tmp_path / "run")])
    assert result.exit_code == StoreError.exit_code, result.output
    one_paragraph_error(result.output, path)


def _spec_fields(spec: Path) -> dict:  # type: ignore[type-arg]
    from aftertune.train.spec import load_spec

    loaded, _ = load_spec(spec)
    return loaded.model_dump(mode="json")


@pytest.mark.parametrize(
    "content",
    ['{"spec": {"name": "fil', "not json at all", '["a list"]', '{"spec": {"name": "x"}}'],
    ids=["torn", "text", "list", "no-base-dir"],
)
def test_a_damaged_experiment_file_is_named_with_the_fix(tmp_path: Path, content: str) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "experiment.json").write_text(content)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    commands = [["run", str(spec), "--out", str(run_dir)], ["sweep", str(run_dir)], ["report", str(run_dir)]]
    for command in commands:
        result = runner.invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        one_paragraph_error(result.output, run_dir / "experiment.json")
        assert "not an experiment file written by `aftertune run`" in " ".join(result.output.split())
    assert (run_dir / "experiment.json").read_text() == content


def test_an_experiment_file_of_an_unknown_spec_is_named_with_the_fix(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    saved = {"spec": {**_spec_fields(_write(tmp_path / "spec.yaml", SPEC)), "from_the_future": 1}}
    (run_dir / "experiment.json").write_text(json.dumps({**saved, "base_dir": str(tmp_path)}))
    result = runner.invoke(app, ["sweep", str(run_dir)])
    assert result.exit_code == 2, result.output
    one_paragraph_error(result.output, run_dir / "experiment.json")
    assert "cannot read" in result.output


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_eval_and_run_do_not_write_into_each_others_run_directories(tmp_path: Path) -> None:
    experiment = tmp_path / "experiment"
    experiment.mkdir()
    (experiment / "experiment.json").write_text('{"spec": {}, "base_dir": "."}')
    (experiment / "summary.json").write_text('{"name": "the experiment"}')
    result = runner.invoke(app, ["eval", "embedded", "--out", str(experiment), "--max-new-tokens", "4"])
    assert result.exit_code == 2, result.output
    one_paragraph_error(result.output, experiment)
    assert "would overwrite its summary.json" in result.output
    assert json.loads((experiment / "summary.json").read_text()) == {"name": "the experiment"}
    assert sorted(p.name for p in experiment.iterdir()) == ["experiment.json", "summary.json"]

    evaluated = tmp_path / "eval"
    evaluated.mkdir()
    (evaluated / "config.json").write_text('{"model": "embedded"}')
    result = runner.invoke(app, ["run", str(_write(tmp_path / "spec.yaml", SPEC)), "--out", str(evaluated)])
    assert result.exit_code == 2, result.output
    one_paragraph_error(result.output, evaluated)
    assert sorted(p.name for p in evaluated.iterdir()) == ["config.json"]
