"""Reading user files with errors that name the file and line."""

from __future__ import annotations

from pathlib import Path

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
