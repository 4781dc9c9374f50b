"""Files a killed command cannot leave half-written: each is written beside its place, then renamed
over it in one step, so a reader (or the resumed command) finds the old file or the new one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; when the block ends without error it replaces
    `path`. On an error the temporary file is removed and `path` is left as it was."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temp = Path(name)
    try:
        # mkstemp makes the file private (0600); results and reports are meant to be shared
        os.fchmod(fd, 0o644)
        os.close(fd)
        yield temp
        with temp.open("rb") as written:
            os.fsync(written.fileno())  # the rename must not reach the disk before the data does
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` whole or not at all."""
    with replacing(path) as temp:
        temp.write_text(text, encoding="utf-8")
    return Path(path)
