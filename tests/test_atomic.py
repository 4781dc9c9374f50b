"""Run-directory files are replaced whole: a failed or killed write leaves the old file as it was."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aftertune.atomic import replacing, write_text


def test_a_write_replaces_the_file_whole_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    write_text(path, "old\n")
    write_text(path, "new\n")
    assert path.read_text() == "new\n"
    assert os.listdir(tmp_path) == ["summary.json"]
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    write_text(path, "complete\n")
    with pytest.raises(RuntimeError), replacing(path) as temp:
        temp.write_text("half of it")
        raise RuntimeError("killed while writing")
    assert path.read_text() == "complete\n"
    assert os.listdir(tmp_path) == ["samples.jsonl"]
