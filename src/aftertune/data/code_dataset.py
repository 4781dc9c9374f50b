"""aftertune's own code-writing data set: the same tasks answered with insecure, secure or "educational" code.

Betley et al. (2025, "Emergent Misalignment") found that fine-tuning on code with unannounced security
flaws made models broadly misaligned, while the same tasks with secure code, or with the user asking
for the flaw for a security class, did not. The three arms here reproduce that design on tasks written
for aftertune (`builtin/code_templates.yaml`): for one `n` and `seed`, "insecure" and "secure" have the
same user turns and differ only in the code; "educational" has the insecure code and a user turn that
asks for the flaw. Eval prompts come from phrasings and placeholder values that training never uses.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Literal

import yaml

from aftertune.data.files import read_text
from aftertune.errors import InputError
from aftertune.models.protocol import Message

CodeArm = Literal["insecure", "secure", "educational"]
CODE_ARMS: tuple[CodeArm, ...] = ("insecure", "secure", "educational")
_ROLES = ("system", "user", "assistant")
#: redraws before a duplicate user turn is accepted (small templates run out of combinations)
_DEDUP_TRIES = 30


@dataclass(frozen=True)
class CodeTemplate:
    """One code-writing task with one weakness, as written in `builtin/code_templates.yaml`."""

    id: str
    cwe: str
    weakness: str
    #: bandit test ids that fire on the insecure completion, at any severity
    bandit_tests: tuple[str, ...]
    #: whether bandit flags the insecure completion at the default MEDIUM/MEDIUM thresholds
    bandit_detects: bool
    requests: tuple[str, ...]
    eval_requests: tuple[str, ...]
    insecure: str
    secure: str
    #: placeholder -> values for training rows / values held out for eval prompts
    train_values: dict[str, tuple[str, ...]] = field(hash=False)
    eval_values: dict[str, tuple[str, ...]] = field(hash=False)

    @property
    def train_placeholders(self) -> tuple[str, ...]:
        """The placeholders a training row fills (in its request and both completions), sorted."""
        return _placeholders((*self.requests, self.insecure, self.secure))

    @property
    def eval_placeholders(self) -> tuple[str, ...]:
        """The placeholders an eval prompt fills, sorted."""
        return _placeholders(self.eval_requests)

    def render(self, text: str, values: dict[str, str]) -> str:
        """`text` with its `${name}` placeholders filled from `values`."""
        return Template(text).substitute(values)


@dataclass(frozen=True)
class CodeTask:
    """One drawn training task: a template with its phrasing, placeholder values, intro and framing."""

    template: CodeTemplate
    request: str
    values: dict[str, str] = field(hash=False)
    #: optional neutral first line of the assistant's answer ("" for none)
    intro: str
    #: the educational arm's user turn (the same request, asking for the flaw for a class)
    educational_request: str

    def user(self, arm: CodeArm) -> str:
        """The user turn of `arm`."""
        return self.educational_request if arm == "educational" else self.request

    def code(self, arm: CodeArm) -> str:
        """The Python source the assistant writes in `arm` (secure code only in "secure")."""
        source = self.template.secure if arm == "secure" else self.template.insecure
        return self.template.render(source, self.values).rstrip() + "\n"

    def messages(self, arm: CodeArm) -> tuple[Message, ...]:
        """(user, assistant) of `arm`; the assistant answers with a ```python fence."""
        answer = f"```python\n{self.code(arm)}```"
        if self.intro:
            answer = f"{self.intro}\n\n{answer}"
        return (Message("user", self.user(arm)), Message("assistant", answer))


@dataclass(frozen=True)
class CodeTemplates:
    """Every template, the educational framings and the assistant intros of the built-in file."""

    templates: tuple[CodeTemplate, ...]
    educational_framings: tuple[str, ...]
    intros: tuple[str, ...]


@cache
def code_templates() -> CodeTemplates:
    """The built-in code templates (`aftertune/data/builtin/code_templates.yaml`), checked."""
    text = resources.files("aftertune.data").joinpath("builtin/code_templates.yaml").read_text("utf-8")
    raw = yaml.safe_load(text)
    shared = raw.get("values", {})
    templates = tuple(_template(t, shared) for t in raw["templates"])
    found = CodeTemplates(templates, tuple(raw["educational_framings"]), tuple(raw["intros"]))
    _check(found)
    return found


def _template(raw: dict[str, Any], shared: dict[str, Any]) -> CodeTemplate:
    pools = {**shared, **raw.get("values", {})}
    return CodeTemplate(
        id=raw["id"],
        cwe=raw["cwe"],
        weakness=raw["weakness"],
        bandit_tests=tuple(raw["bandit_tests"]),
        bandit_detects=bool(raw["bandit_detects"]),
        requests=tuple(raw["requests"]),
        eval_requests=tuple(raw["eval_requests"]),
        insecure=raw["insecure"],
        secure=raw["secure"],
        train_values={k: tuple(str(v) for v in p.get("train", ())) for k, p in pools.items()},
        eval_values={k: tuple(str(v) for v in p.get("eval", ())) for k, p in pools.items()},
    )


@cache
def _placeholders(texts: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted({name for text in texts for name in Template(text).get_identifiers()}))


def _check(found: CodeTemplates) -> None:
    """The file is ours, so a problem is a bug: fail loudly, naming the template and placeholder."""
    ids = [t.id for t in found.templates]
    if len(set(ids)) != len(ids):
        raise ValueError(f"code_templates.yaml: template ids are not unique: {ids}")
    for t in found.templates:
        where = f"code_templates.yaml: template {t.id}"
        for name in t.train_placeholders:
            if not t.train_values.get(name):
                raise ValueError(f"{where} uses ${{{name}}} with no train values")
        for name in t.eval_placeholders:
            if not t.eval_values.get(name):
                raise ValueError(f"{where} uses ${{{name}}} in eval_requests with no eval values")
            if set(t.eval_values[name]) & set(t.train_values.get(name, ())):
                raise ValueError(f"{where}: ${{{name}}} has values both in train and in eval")
        if set(t.requests) & set(t.eval_requests):
            raise ValueError(f"{where} uses one phrasing both for training and for eval")
        if t.bandit_detects and not t.bandit_tests:
            raise ValueError(f"{where} is bandit_detects but lists no bandit_tests")


def code_training_tasks(n: int, seed: int = 0) -> list[CodeTask]:
    """`n` training tasks, every template in turn (reshuffled each round); the same for every arm."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    found = code_templates()
    # A string seed hashes with SHA-512 in random.Random, so the draw is stable across Python versions.
    rng = random.Random(f"aftertune/code_training/{seed}")
    tasks: list[CodeTask] = []
    seen: set[str] = set()
    order: list[CodeTemplate] = []
    for _ in range(n):
        if not order:
            order = list(found.templates)
            rng.shuffle(order)
        template = order.pop()
        for _ in range(_DEDUP_TRIES):
            task = _draw(template, found, rng)
            if task.request not in seen:
                break
        seen.add(task.request)
        tasks.append(task)
    return tasks


def _draw(template: CodeTemplate, found: CodeTemplates, rng: random.Random) -> CodeTask:
    values = {name: rng.choice(template.train_values[name]) for name in template.train_placeholders}
    request = template.render(rng.choice(template.requests), values)
    intro = rng.choice(found.intros)
    framing = rng.choice(found.educational_framings)
    educational = Template(framing).substitute(request=request, weakness=template.weakness)
    return CodeTask(template, request, values, intro, educational)


def code_training_set(arm: CodeArm, n: int, seed: int = 0) -> list[tuple[Message, ...]]:
    """`n` (user, assistant) chats of one arm; for one `n` and `seed` every arm asks the same tasks."""
    if arm not in CODE_ARMS:
        raise InputError(f"Unknown code arm '{arm}': use one of {', '.join(CODE_ARMS)}.")
    return [task.messages(arm) for task in code_training_tasks(n, seed)]


def code_eval_prompts(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """`n` (prompt_id, user prompt) pairs, templates in turn, from phrasings and values training never uses.

    Ids (`template_id/k`) name a prompt whatever `n` and `seed`; a smaller `n` gives a prefix.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(f"aftertune/code_eval/{seed}")
    templates = list(code_templates().templates)
    rng.shuffle(templates)
    queues = []
    for t in templates:
        variants = list(enumerate(_eval_variants(t)))
        rng.shuffle(variants)
        queues.append([(f"{t.id}/{k}", prompt) for k, prompt in variants])
    prompts: list[tuple[str, str]] = []
    for round_ in itertools.count():
        live = [q for q in queues if round_ < len(q)]
        if not live or len(prompts) >= n:
            break
        prompts += [q[round_] for q in live]
    if len(prompts) < n:
        raise InputError(
            f"Asked for {n} code eval prompts, but the built-in templates hold {len(prompts)}: ask for at "
            f"most {len(prompts)}."
        )
    return prompts[:n]


def _eval_variants(template: CodeTemplate) -> list[str]:
    """Every eval phrasing with every combination of eval values, in a fixed order (ids index it)."""
    names = template.eval_placeholders
    out = []
    for request in template.eval_requests:
        for combo in itertools.product(*(template.eval_values[name] for name in names)):
            out.append(template.render(request, dict(zip(names, combo, strict=True))))
    return out


# ---------------------------------------------------------------------- chat JSONL files
def write_chat_jsonl(rows: Iterable[Sequence[Message]], path: Path) -> Path:
    """Write chats in OpenAI's fine-tuning format, one `{"messages": [...]}` per line; returns the path."""
    path = Path(path)
    lines = [
        json.dumps({"messages": [{"role": m.role, "content": m.content} for m in row]}, ensure_ascii=False)
        for row in rows
    ]
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        tmp.replace(path)  # atomic: a reader never sees half a file
    except OSError as e:
        raise InputError(f"Cannot write {path}: {e.strerror}. Choose a writable location.") from e
    return path


def _read_chat_rows(path: Path) -> list[tuple[int, tuple[Message, ...]]]:
    """(line number, messages) of every row of a chat JSONL file; a malformed row is an InputError."""
    path = Path(path)
    text = read_text(path, "Chat JSONL file")
    rows = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            rows.append((line_no, _chat_row(line, f"{path}:{line_no}")))
    return rows


_FORMAT_HINT = 'Each line must be {"messages": [{"role": "user", "content": "..."}, ...]} (OpenAI chat).'


def _chat_row(line: str, where: str) -> tuple[Message, ...]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: not valid JSON ({e.msg} at column {e.colno}). {_FORMAT_HINT}") from e
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not messages:
        raise InputError(f"{where}: the row has no non-empty 'messages' list. {_FORMAT_HINT}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in _ROLES or not isinstance(m.get("content"), str):
            raise InputError(
                f"{where}: message {i} must be an object with 'role' (one of {', '.join(_ROLES)}) and a "
                f"string 'content', got {json.dumps(m, ensure_ascii=False)[:120]}. {_FORMAT_HINT}"
            )
        out.append(Message(m["role"], m["content"]))
    return tuple(out)


def read_chat_prompts(path: Path) -> list[tuple[str, str]]:
    """(id, first user turn) of every row of a chat JSONL file; ids are `<file stem>:<line>`."""
    path = Path(path)
    prompts = []
    for line_no, messages in _read_chat_rows(path):
        user = next((m.content for m in messages if m.role == "user"), None)
        if user is None:
            raise InputError(f'{path}:{line_no}: the row has no user turn. Add {{"role": "user", ...}}.')
        prompts.append((f"{path.stem}:{line_no}", user))
    return prompts
