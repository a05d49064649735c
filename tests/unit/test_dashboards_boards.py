"""The board models: stable uids, sound JSON, one provisioned datasource, no drift from code."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.boards import BOARD_UIDS
from dashboards.datasource import (
    DASHBOARD_PROVISIONING,
    DATASOURCE_PROVISIONING,
    DATASOURCE_TYPE,
    JSON_DIR,
)
from dashboards.export import build_all, load_exported, panels, render, stale_files, validate
from dashboards.kpis import KPIS, SATISFIED_SCORE
from sinks.clickhouse.migrations import MIGRATIONS_DIR

REPO = Path(__file__).resolve().parents[2]
#: pinned: links, bookmarks, provisioning and `push` all find boards by these
PINNED_UIDS = {
    "cx-scorecard": "CX scorecard",
    "cx-feedback-sla": "Feedback & SLA",
    "cx-security": "Security",
    "cx-personalisation": "Personalisation",
    "cx-pipeline": "Pipeline health",
}


@pytest.fixture(scope="module")
def boards() -> dict[str, dict[str, Any]]:
    return build_all()


def _targets(board: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(p, t) for p in panels(board) for t in p.get("targets") or []]


def test_board_uids_and_titles_are_pinned(boards: dict[str, dict[str, Any]]) -> None:
    assert {uid: b["title"] for uid, b in boards.items()} == PINNED_UIDS
    assert sorted(BOARD_UIDS.values()) == sorted(PINNED_UIDS)


def test_exported_json_equals_what_the_code_builds(boards: dict[str, dict[str, Any]]) -> None:
    assert stale_files(JSON_DIR, boards) == [], "run `cxstream dashboards build`"
    assert load_exported(JSON_DIR) == boards


def test_stale_files_notices_an_edited_export(
    boards: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    for uid, board in boards.items():
        (tmp_path / f"{uid}.json").write_text(render(board))
    assert stale_files(tmp_path, boards) == []
    edited = copy.deepcopy(boards["cx-security"])
    edited["title"] = "Security (edited by hand)"
    (tmp_path / "cx-security.json").write_text(render(edited))
    (tmp_path / "old-board.json").write_text("{}")
    assert stale_files(tmp_path, boards) == ["cx-security.json", "old-board.json"]


@pytest.mark.parametrize("uid", sorted(PINNED_UIDS))
def test_every_board_validates(boards: dict[str, dict[str, Any]], uid: str) -> None:
    assert validate(boards[uid]) == []


def test_panel_ids_are_unique_and_every_panel_has_a_query(
    boards: dict[str, dict[str, Any]],
) -> None:
    for board in boards.values():
        ids = [p["id"] for p in panels(board)]
        assert len(ids) == len(set(ids)), board["uid"]
        for panel in panels(board):
            if panel["type"] != "row":
                assert panel["targets"], (board["uid"], panel["title"])
                assert all(t["rawSql"].strip() for t in panel["targets"])


def test_every_datasource_reference_is_the_provisioned_one(
    boards: dict[str, dict[str, Any]],
) -> None:
    provisioned = yaml.safe_load(DATASOURCE_PROVISIONING.read_text())["datasources"]
    uids = {d["uid"]: d for d in provisioned}
    for board in boards.values():
        for panel, target in _targets(board):
            ref = target["datasource"]
            assert ref["uid"] in uids, (board["uid"], panel["title"], ref)
            assert uids[ref["uid"]]["type"] == ref["type"] == DATASOURCE_TYPE
        # and nothing else in the model points at another datasource
        text = render(board)
        assert set(re.findall(r'"uid": "([^"]+)"', text)) <= {board["uid"], *uids}


def test_provisioning_matches_compose() -> None:
    compose = yaml.safe_load((REPO / "docker" / "compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"] if ":" in v}
    assert mounts["/etc/grafana/provisioning"] == "../dashboards/provisioning"
    assert mounts["/var/lib/grafana/dashboards"] == "../dashboards/json"
    provider = yaml.safe_load(DASHBOARD_PROVISIONING.read_text())["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    # every ${VAR} the datasource file reads is set in Grafana's environment
    wanted = set(re.findall(r"\$\{(\w+)\}", DATASOURCE_PROVISIONING.read_text()))
    assert wanted, "the datasource reads its connection from the environment"
    assert wanted <= set(grafana["environment"])
    source = yaml.safe_load(DATASOURCE_PROVISIONING.read_text())["datasources"][0]
    assert source["jsonData"]["protocol"] == "native"
    assert grafana["environment"]["CLICKHOUSE_PORT"] == "9000"
    assert grafana["environment"]["CLICKHOUSE_USER"] == "cxstream"
    assert "grafana-clickhouse-datasource" in grafana["environment"]["GF_INSTALL_PLUGINS"]


def test_every_kpi_is_a_stat_with_its_target_on_the_scorecard(
    boards: dict[str, dict[str, Any]],
) -> None:
    scorecard = boards["cx-scorecard"]
    stats = {p["title"]: p for p in panels(scorecard) if p["type"] == "stat"}
    trends = {p["title"] for p in panels(scorecard) if p["type"] == "timeseries"}
    assert set(stats) == {k.title for k in KPIS}
    for kpi in KPIS:
        steps = stats[kpi.title]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        if kpi.better == "higher":  # green at target, red below
            assert steps == [
                {"color": "red", "value": None},
                {"color": "green", "value": kpi.target},
            ]
        else:  # green at or below target, red above
            assert steps[0] == {"color": "green", "value": None}
            assert steps[1]["color"] == "red"
            assert steps[1]["value"] > kpi.target
        assert stats[kpi.title]["fieldConfig"]["defaults"]["unit"] == kpi.unit
        trend = {f"{kpi.title} · trend", "Time to first response · trend"} & trends
        assert trend, f"{kpi.title} has no trend"


def test_satisfied_score_matches_the_rollup() -> None:
    rollup = (MIGRATIONS_DIR / "0004_rollups_information.sql").read_text()
    assert f"countIf(score >= {SATISFIED_SCORE}) AS satisfied" in rollup


def test_panel_sql_stays_in_the_common_dialect(boards: dict[str, dict[str, Any]]) -> None:
    # the 18.16 server run proves it; this names the usual culprits early
    banned = ("toStartOfInterval", "$__timeInterval", "$__timeGroup", "DateTime64", "Map(")
    for board in boards.values():
        for panel, target in _targets(board):
            used = [b for b in banned if b in target["rawSql"]]
            assert not used, (board["uid"], panel["title"], used)


def _first_stat(board: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in board["panels"] if p["type"] == "stat")


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda b: _first_stat(b)["targets"][0]["datasource"].update(uid="other"), "datasource"),
        (lambda b: _first_stat(b).update(targets=[]), "no query"),
        (lambda b: _first_stat(b)["gridPos"].update(x=0, y=0, w=24), "overlaps"),
        (lambda b: _first_stat(b)["gridPos"].update(x=22, w=4), "outside"),
        (lambda b: _first_stat(b).update(id=b["panels"][0]["id"]), "ids"),
        (
            lambda b: _first_stat(b)["targets"][0].update(rawSql="SELECT $nope"),
            "undefined template variables ['nope']",
        ),
        (lambda b: _first_stat(b)["targets"][0].update(format=0), "needs format 1"),
        (lambda b: b.update(uid="no spaces allowed"), "uid"),
        (lambda b: _first_stat(b).update(notAGrafanaKey=1), "SDK reads the model back"),
    ],
)
def test_validate_reports_broken_boards(
    boards: dict[str, dict[str, Any]], breakage: Any, expected: str
) -> None:
    board = copy.deepcopy(boards["cx-scorecard"])
    breakage(board)
    problems = validate(board)
    assert any(expected in p for p in problems), problems
