"""Experiment specs: valid ones load (the built-in demos too); every mistake names file:line and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from aftertune.errors import InputError
from aftertune.train.spec import builtin_spec, load_spec

VALID = """\
name: mine
seeds: [0, 1]
control: secure
arms:
  insecure:
    data: data.jsonl
  secure:
    data: {source: "builtin:secure_code", limit: 40}
    training: {learning_rate: 1.0e-4}
  relapse:
    stages:
      - data: builtin:insecure_code
      - data: data.jsonl
        training: {epochs: 1}
training: {max_steps: 5, batch_size: 2}
eval:
  every: 2
  suite:
    - kind: misalignment
      samples: 1
    - kind: task_loss
      holdout: 4
gates:
  - misaligned_rate > 20%
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "data.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
    )
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def test_a_valid_spec_loads_with_merged_settings(tmp_path: Path) -> None:
    spec, base_dir = load_spec(write(tmp_path, VALID))
    assert base_dir == tmp_path.resolve()
    assert list(spec.arms) == ["insecure", "secure", "relapse"] and spec.seeds == [0, 1]
    secure = spec.training.merged(spec.arms["secure"].training)
    assert secure.learning_rate == 1e-4 and secure.max_steps == 5 and secure.batch_size == 2
    assert [s.data.source for s in spec.arms["relapse"].all_stages] == ["builtin:insecure_code", "data.jsonl"]
    assert spec.holdout == 4 and spec.parsed_gates[0].threshold == pytest.approx(0.2)


@pytest.mark.parametrize("name", ["demo", "demo_quick"])
def test_builtin_specs_load(name: str) -> None:
    spec, _ = builtin_spec(name)
    assert spec.control == "secure" and spec.eval.every


@pytest.mark.parametrize(
    ("change", "line", "says"),
    [
        (
            ("training: {max_steps: 5, batch_size: 2}", "training: {max_steps: 5, batch_sise: 2}"),
            0,
            "batch_sise",
        ),
        (("  every: 2", "  every: two"), 0, "every"),
        (("    data: data.jsonl\n  secure:", "    data: missing.jsonl\n  secure:"), 0, "missing.jsonl"),
        (("  - misaligned_rate > 20%", "  - misaligned_rate is high"), 0, "cannot read the gate"),
        (("control: secure", "control: nobody"), 0, "not one of the arms"),
        (("seeds: [0, 1]", "seeds: [1, 1]"), 0, "seeds repeat"),
        (("    - kind: task_loss", "    - kind: task_los"), 0, "kind"),
        (
            ("  insecure:\n    data: data.jsonl", "  insecure:\n    training: {epochs: 1}"),
            0,
            "exactly one of",
        ),
        (
            ('    data: {source: "builtin:secure_code", limit: 40}', "    data: builtin:nothing"),
            0,
            "built-in",
        ),
        (("    training: {learning_rate: 1.0e-4}", "    training: {learning_rate: -1}"), 0, "learning_rate"),
    ],
)
def test_mistakes_name_the_line(tmp_path: Path, change: tuple[str, str], line: int, says: str) -> None:
    """`line` counts from the first line of the changed text (0: that line itself)."""
    assert change[0] in VALID
    line += VALID[: VALID.index(change[0])].count("\n") + 1
    path = write(tmp_path, VALID.replace(change[0], change[1]))
    with pytest.raises(InputError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert f"{path}:{line}" in message and says in message, message


def test_bad_yaml_and_empty_files(tmp_path: Path) -> None:
    path = write(tmp_path, "name: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_spec(path)
    path.write_text("")
    with pytest.raises(InputError, match="empty"):
        load_spec(path)
    with pytest.raises(InputError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")
