"""Schema evolution: BACKWARD_TRANSITIVE with Avro's checker, the project's conventions, ids."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from schemas.catalog import LOCK_FILE, SCHEMA_ROOT, assign_ids, load_catalog, read_lock
from schemas.cli import schemas
from schemas.compat import Problem, check_schemas, reader_problems

V1 = json.loads((SCHEMA_ROOT / "channel_interaction" / "v1.avsc").read_text())


def field(definition: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in definition["fields"] if f["name"] == name)


def write_versions(root: Path, versions: list[dict[str, Any]], name: str = "interaction") -> Path:
    folder = root / "avro" / name
    folder.mkdir(parents=True, exist_ok=True)
    for number, definition in enumerate(versions, start=1):
        (folder / f"v{number}.avsc").write_text(json.dumps(definition))
    return root / "avro"


def check(tmp_path: Path, versions: list[dict[str, Any]]) -> list[Problem]:
    root = write_versions(tmp_path, versions)
    assign_ids(root, tmp_path / "lock.json")
    return check_schemas(root, tmp_path / "lock.json")


def only_problem(problems: list[Problem]) -> str:
    assert len(problems) == 1, problems
    return str(problems[0])


# --------------------------------------------------------------------------- the repo


def test_repo_versions_read_all_earlier_versions_and_ids_hold() -> None:
    problems = check_schemas(SCHEMA_ROOT, LOCK_FILE, previous_lock=read_lock(LOCK_FILE))
    evolution = [p for p in problems if "cannot read" in p.message or "id" in p.message]
    assert evolution == []


def test_repo_schemas_pass_every_rule() -> None:
    assert check_schemas(SCHEMA_ROOT, LOCK_FILE) == []


def test_channel_interaction_v2_adds_optional_fields_only() -> None:
    v1, v2 = load_catalog().versions("channel_interaction")[:2]
    assert v2.field_names - v1.field_names == {"campaign_id", "locale"}
    assert v1.field_names <= v2.field_names
    assert reader_problems(v2.definition, v1.definition) == []
    # forward: a v1 reader ignores the new fields too
    assert reader_problems(v1.definition, v2.definition) == []


# --------------------------------------------------------------------------- breaking changes


def test_a_compatible_v2_passes(tmp_path: Path) -> None:
    v2 = copy.deepcopy(V1)
    v2["fields"].append({"name": "campaign_id", "type": ["null", "string"], "default": None,
                         "doc": "Campaign."})
    assert check(tmp_path, [V1, v2]) == []


def test_required_field_without_default_is_caught(tmp_path: Path) -> None:
    v2 = copy.deepcopy(V1)
    v2["fields"].append({"name": "campaign_id", "type": "string", "doc": "Campaign."})
    message = only_problem(check(tmp_path, [V1, v2]))
    assert message.startswith("interaction v2: cannot read data written with v1")
    assert "reader field missing default value" in message
    assert "'campaign_id'" in message


def test_changed_type_is_caught(tmp_path: Path) -> None:
    v2 = copy.deepcopy(V1)
    field(v2, "topic")["type"] = "long"
    field(v2, "topic")["default"] = 0
    message = only_problem(check(tmp_path, [V1, v2]))
    assert "type mismatch" in message
    assert "field 'topic'" in message
    assert "long not compatible with writer type: string" in message


def test_removed_enum_symbol_is_caught(tmp_path: Path) -> None:
    v2 = copy.deepcopy(V1)
    field(v2, "action")["type"]["symbols"].remove("atm_session")
    message = only_problem(check(tmp_path, [V1, v2]))
    assert "missing enum symbols" in message
    assert "atm_session" in message
    assert "field 'action'" in message


def test_compatibility_is_transitive(tmp_path: Path) -> None:
    """v3 reads v2 but not v1: BACKWARD alone would pass it, BACKWARD_TRANSITIVE must not."""
    v2 = copy.deepcopy(V1)
    v2["fields"] = [f for f in v2["fields"] if f["name"] != "duration_ms"]
    v3 = copy.deepcopy(v2)
    v3["fields"].insert(-1, {"name": "duration_ms", "type": ["null", "string"], "default": None,
                             "doc": "Now text."})
    assert reader_problems(v3, v2) == []
    message = only_problem(check(tmp_path, [V1, v2, v3]))
    assert message.startswith("interaction v3: cannot read data written with v1")
    assert "duration_ms" in message


# --------------------------------------------------------------------------- conventions


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: field(d, "topic").pop("doc"), "field 'topic' has no doc"),
        (lambda d: d.pop("doc"), "the record has no doc"),
        (lambda d: d["fields"].pop(0), "needs field 'event_id'"),
        (lambda d: field(d, "occurred_at").update(type="long"), "timestamp-millis"),
        (lambda d: d.update(partition_key=["nobody"]), "partition_key field 'nobody'"),
        (lambda d: d.pop("partition_key"), "needs a 'partition_key'"),
        (lambda d: field(d, "search_query").update(pii="secret"), "unknown pii class 'secret'"),
    ],
)
def test_conventions(tmp_path: Path, change: Any, words: str) -> None:
    broken = copy.deepcopy(V1)
    change(broken)
    message = only_problem(check(tmp_path, [broken]))
    assert message.startswith("interaction v1: ")
    assert words in message


# --------------------------------------------------------------------------- ids


def test_lock_assigns_the_next_ids_and_keeps_old_ones(tmp_path: Path) -> None:
    lock_file = tmp_path / "lock.json"
    root = write_versions(tmp_path, [V1])
    write_versions(tmp_path, [V1], name="other")
    assert assign_ids(root, lock_file) == {"interaction": {"1": 1}, "other": {"1": 2}}
    v2 = copy.deepcopy(V1)
    v2["fields"].append({"name": "x", "type": ["null", "int"], "default": None, "doc": "x"})
    write_versions(tmp_path, [V1, v2])
    assert assign_ids(root, lock_file) == {"interaction": {"1": 1, "2": 3}, "other": {"1": 2}}
    assert check_schemas(root, lock_file, previous_lock={"interaction": {"1": 1}}) == []


def test_changed_reused_and_unordered_ids_are_caught(tmp_path: Path) -> None:
    lock_file = tmp_path / "lock.json"
    v2 = copy.deepcopy(V1)
    v2["doc"] = "Second version."
    root = write_versions(tmp_path, [V1, v2])
    lock_file.write_text(json.dumps({"interaction": {"1": 5, "2": 4, "3": 9}}))
    messages = [str(p) for p in check_schemas(root, lock_file,
                                              previous_lock={"interaction": {"1": 4}})]
    assert "interaction: ids must grow with the version, got [5, 4]" in messages
    assert any(m.startswith("interaction v3: locked id without a schema file") for m in messages)
    assert "interaction v1: id changed from 4 to 5: ids are assigned once and never change" \
        in messages


def test_unlocked_version_is_reported(tmp_path: Path) -> None:
    root = write_versions(tmp_path, [V1])
    (tmp_path / "lock.json").write_text("{}")
    message = only_problem(check_schemas(root, tmp_path / "lock.json"))
    assert "no schema id" in message
    assert "cxstream schemas lock" in message


# --------------------------------------------------------------------------- the CLI


def test_cli_check_fails_with_the_problem_and_lock_assigns(tmp_path: Path) -> None:
    v2 = copy.deepcopy(V1)
    field(v2, "topic")["type"] = "int"
    field(v2, "topic")["default"] = 0
    root = write_versions(tmp_path, [V1, v2])
    lock_file = tmp_path / "lock.json"
    runner = CliRunner()
    locked = runner.invoke(schemas, ["lock", "--root", str(root), "--lock-file", str(lock_file)])
    assert "locked interaction v1: id 1" in locked.output
    assert "locked interaction v2: id 2" in locked.output
    assert locked.exit_code == 1  # locked, but the check after it fails
    result = runner.invoke(schemas, ["check", "--root", str(root), "--lock-file", str(lock_file),
                                     "--no-against-git"])
    assert result.exit_code == 1
    assert "interaction v2: cannot read data written with v1" in result.output
    assert "field 'topic'" in result.output


def test_cli_list_shows_versions_and_ids() -> None:
    result = CliRunner().invoke(schemas, ["list"])
    assert result.exit_code == 0
    line = next(x for x in result.output.splitlines() if x.startswith("channel_interaction"))
    ids = load_catalog().versions("channel_interaction")
    assert f"v1={ids[0].schema_id}, v2={ids[1].schema_id}" in line
    assert "key=customer_id|anonymous_id" in line
    assert "search_query(free_text)" in line
