"""Names from user files that become parts of paths (experiment and arm names) or keys beside them
(eval names): checked so that none can lead a write outside its run directory. Endpoint URLs, which
are written into config files, stores and reports, are checked to carry no credentials.

Pydantic validators call these; the ValueError they raise becomes an InputError naming the file,
line and field.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from aftertune.errors import InputError

#: a folder name: letters, digits, '_', '.', '-' (Unicode letters and digits too); never '.' or '..'
_COMPONENT = re.compile(r"[\w.-]+")
#: longest name that becomes one path component (file systems allow 255 bytes; UTF-8 letters take up to 4)
MAX_NAME = 64


def check_folder_name(name: str, what: str) -> str:
    """`name` if it is usable as one folder name inside a run directory, else ValueError saying why."""
    if "\x00" in name:
        raise ValueError(f"{what} {name!r} holds a NUL character")
    if not _COMPONENT.fullmatch(name) or set(name) == {"."}:
        raise ValueError(
            f"{what} {name!r} must be letters, digits, '_', '.' or '-' (no '/', spaces, or a bare '.' or "
            "'..'), since it names a folder of the run directory"
        )
    if len(name) > MAX_NAME:
        raise ValueError(f"{what} is {len(name)} characters long; give at most {MAX_NAME}")
    return name


def check_label(name: str, what: str) -> str:
    """`name` if it is usable as a result label (eval and metric names): no path separator, NUL or
    control character, at most MAX_NAME characters; else ValueError saying why."""
    if any(c in name for c in "/\\") or any(ord(c) < 32 for c in name):
        raise ValueError(f"{what} {name!r} must not hold '/', '\\\\', NUL or control characters")
    if not name.strip():
        raise ValueError(f"{what} is empty")
    if len(name) > MAX_NAME:
        raise ValueError(f"{what} is {len(name)} characters long; give at most {MAX_NAME}")
    return name


def check_no_nul(value: object, what: str) -> object:
    """`value` unless it is a string (or a list of them) holding a NUL character, which no path may hold."""
    values = value if isinstance(value, list | tuple) else [value]
    if any(isinstance(v, str) and "\x00" in v for v in values):
        raise ValueError(f"{what} holds a NUL character (\\x00), which no file name or path may hold")
    return value


def refuse_secrets_in_url(url: str) -> None:
    """InputError when an endpoint URL carries what may be a credential (user:password@, ?query,
    #fragment): the URL is written into config.json, the store and the report. The message shows the
    URL with that part masked."""
    url = url.strip().removeprefix("llm:")
    if not url.startswith(("http://", "https://")):
        return
    parts = urlsplit(url)
    if not (parts.username or parts.password or parts.query or parts.fragment or "@" in parts.netloc):
        return
    masked = parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment="").geturl()
    raise InputError(
        f"The endpoint URL {masked} was given with credentials or a query string (masked here). "
        "aftertune writes endpoint URLs into config.json, the results store and reports, so it takes "
        "no secret in them: put the API key in the environment variable OPENAI_API_KEY instead, which "
        "is sent as a Bearer token and never written anywhere."
    )


def refuse_secrets_in_urls(value: object) -> object:
    """`value` unless it is (or is a list holding) an endpoint URL with credentials; see above."""
    for v in value if isinstance(value, list | tuple) else [value]:
        if isinstance(v, str):
            refuse_secrets_in_url(v)
    return value
