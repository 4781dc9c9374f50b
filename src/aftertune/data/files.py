"""Reading user files with errors that name the file and line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from aftertune.errors import InputError


def read_text(path: Path, what: str) -> str:
    """The file's text as UTF-8; a missing, unreadable, empty or non-UTF-8 file is an InputError."""
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"{what} {path} does not exist. Check the path (relative paths start at {Path.cwd()})."
        )
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder; give the path of a file.")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"Cannot read {what} {path}: {e.strerror}.") from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError(
            f"{path}:{line}: {what} is not valid UTF-8 (byte {raw[e.start]:#04x} at offset {e.start}). "
            "Re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 FILE > NEW`)."
        ) from e
    if not text.strip():
        raise InputError(f"{what} {path} is empty.")
    return text


def load_yaml(path: Path, what: str) -> tuple[Any, yaml.Node | None]:
    """A YAML file's data and its node tree (which knows every value's line); InputError on bad YAML."""
    text = read_text(path, what)
    try:
        return yaml.safe_load(text), yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise InputError(f"{where}: not valid YAML ({problem}). Fix the syntax at that line.") from e


def yaml_line(root: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    """The 1-based line of the value at `loc` (keys and list indices) in a composed YAML tree, or of
    the deepest part of `loc` that exists (an unknown or missing key points at its parent)."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if k.value == str(part)), None)
            key = next((k for k, _ in node.value if k.value == str(part)), None)
            if found is None:
                return line
            node, line = found, (key or found).start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def validation_message(error: ValidationError, source: Path, root: yaml.Node | None) -> str:
    """A pydantic error as `file:line: field 'a.b': problem (got value)` lines, one per problem."""
    problems = []
    for err in error.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "tagged-")))]
        line = yaml_line(root, loc)
        where = f"{source}:{line}" if line else str(source)
        field = ".".join(map(str, loc)) or "(top level)"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; see the documented fields)"
        got = err.get("input")
        shown = "" if err["type"] in ("missing", "extra_forbidden") else f" (got {got!r:.80})"
        problems.append(f"{where}: field '{field}': {message}{shown}")
    return "; ".join(problems)


def hub_split_rows(
    dataset: str,
    split: str,
    what: str,
    config: str | None = None,
    data_files: str | Sequence[str] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """(where, row) for every row of one split of a Hugging Face hub data set, read with `datasets`;
    `where` reads "DATASET[SPLIT] row N". Any failure (offline, no such id, config or split, a gated
    set) is an InputError that says what to check and that a local file works instead."""
    import datasets  # lazy: importing datasets takes about a second

    datasets.disable_progress_bars()
    try:
        rows = datasets.load_dataset(dataset, config, split=split, data_files=data_files)
    except Exception as e:  # datasets raises many types; every one means "not available as asked"
        raise InputError(
            f"Cannot load {what} '{dataset}' from the Hugging Face hub (config {config!r}, split "
            f"{split!r}): {type(e).__name__}: {str(e)[:300]}. Check the id, config and split, your "
            "connection (or HF_TOKEN for a gated set), or give a local file instead."
        ) from e
    return [(f"{dataset}[{split}] row {n}", dict(row)) for n, row in enumerate(rows)]
