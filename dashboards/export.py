"""Boards -> JSON files, and the checks that the JSON is a sound Grafana dashboard model.

``dashboards/json/<uid>.json`` is what Grafana's file provisioning loads and what ``push``
sends. :func:`stale_files` says whether those files still equal what the code builds (the test
suite fails when they drift: run ``cxstream dashboards build``). :func:`validate` checks one
board's model: it reads back through the SDK's own decoder unchanged, every panel has a query
on the provisioned datasource, the grid is well formed and every template variable a query
uses is defined.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dashboards.datasource import DATASOURCE_TYPE, DATASOURCE_UID, JSON_DIR
from dashboards.errors import DashboardError

#: panel type -> the target ``format`` it must use (0 time series, 1 table)
PANEL_FORMATS: dict[str, int] = {"timeseries": 0, "stat": 1, "table": 1, "barchart": 1}
_UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")
GRID_COLUMNS = 24


def board_json(model: Any) -> dict[str, Any]:
    """An SDK dashboard model as plain JSON data."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    data: dict[str, Any] = json.loads(json.dumps(model, cls=JSONEncoder))
    return data


def build_all() -> dict[str, dict[str, Any]]:
    """Every board as JSON data, by uid, in board order."""
    from dashboards.boards import build_boards

    boards: dict[str, dict[str, Any]] = {}
    for model in build_boards():
        data = board_json(model)
        if data["uid"] in boards:
            raise DashboardError(f"two boards share the uid {data['uid']!r}")
        boards[data["uid"]] = data
    return boards


def render(board: Mapping[str, Any]) -> str:
    """The exported text of a board: stable key order, so diffs show only real changes."""
    return json.dumps(board, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_all(
    directory: Path = JSON_DIR, boards: Mapping[str, Mapping[str, Any]] | None = None
) -> list[Path]:
    """Write ``<uid>.json`` for every board and remove files of boards that no longer exist."""
    boards = boards if boards is not None else build_all()
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for uid, board in boards.items():
        path = directory / f"{uid}.json"
        path.write_text(render(board), encoding="utf-8")
        written.append(path)
    for path in directory.glob("*.json"):
        if path.stem not in boards:
            path.unlink()
    return written


def stale_files(
    directory: Path = JSON_DIR, boards: Mapping[str, Mapping[str, Any]] | None = None
) -> list[str]:
    """Names of exported files that are missing, differ from the code, or belong to no board."""
    boards = boards if boards is not None else build_all()
    stale = []
    for uid, board in boards.items():
        path = directory / f"{uid}.json"
        if not path.exists() or path.read_text(encoding="utf-8") != render(board):
            stale.append(path.name)
    stale += sorted(p.name for p in directory.glob("*.json") if p.stem not in boards)
    return stale


def load_exported(directory: Path = JSON_DIR) -> dict[str, dict[str, Any]]:
    """The committed board files, by uid."""
    boards = {}
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        boards[str(data.get("uid"))] = data
    return boards


def panels(board: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every panel of a board, rows included, nested row panels flattened."""
    out: list[dict[str, Any]] = []
    for panel in board.get("panels") or []:
        out.append(panel)
        out.extend(panel.get("panels") or [])
    return out


def validate(board: Mapping[str, Any], *, datasource_uid: str = DATASOURCE_UID) -> list[str]:
    """Problems of one board's JSON model (empty when it is sound)."""
    uid = str(board.get("uid", ""))
    where = f"board {uid or board.get('title')!r}"
    problems: list[str] = []
    if not _UID.match(uid):
        problems.append(f"{where}: uid must be 1-40 of [A-Za-z0-9_-]")
    if not board.get("title"):
        problems.append(f"{where}: no title")
    problems += _round_trip(board, where)
    all_panels = panels(board)
    ids = [p.get("id") for p in all_panels]
    if len(set(ids)) != len(ids) or None in ids:
        problems.append(f"{where}: panel ids must be present and unique, got {ids}")
    problems += _grid(all_panels, where)
    defined = {v["name"] for v in (board.get("templating") or {}).get("list") or []}
    for panel in all_panels:
        if panel.get("type") != "row":
            problems += _panel(panel, where, datasource_uid, defined)
    return problems


def _round_trip(board: Mapping[str, Any], where: str) -> list[str]:
    from grafana_foundation_sdk.models.dashboard import Dashboard

    from dashboards.clickhouse import register

    register()
    try:
        again = board_json(Dashboard.from_json(dict(board)))
    except (KeyError, TypeError, ValueError) as exc:
        return [f"{where}: the SDK cannot read the model back: {exc!r}"]
    if again != board:
        changed = sorted(k for k in set(board) | set(again) if board.get(k) != again.get(k))
        return [f"{where}: the SDK reads the model back differently (keys {changed})"]
    return []


def _panel(
    panel: Mapping[str, Any], where: str, datasource_uid: str, defined: set[str]
) -> list[str]:
    name = f"{where} panel {panel.get('id')} {panel.get('title')!r}"
    kind = panel.get("type")
    problems: list[str] = []
    if kind not in PANEL_FORMATS:
        return [f"{name}: panel type {kind!r} is not one the boards use {sorted(PANEL_FORMATS)}"]
    if not panel.get("title"):
        problems.append(f"{name}: no title")
    targets = panel.get("targets") or []
    if not targets:
        problems.append(f"{name}: no query")
    ref_ids = [t.get("refId") for t in targets]
    if len(set(ref_ids)) != len(ref_ids) or not all(ref_ids):
        problems.append(f"{name}: refIds must be present and unique, got {ref_ids}")
    for target in targets:
        source = target.get("datasource") or {}
        if source != {"type": DATASOURCE_TYPE, "uid": datasource_uid}:
            problems.append(
                f"{name}: datasource {source} is not the provisioned {datasource_uid!r}"
            )
        sql = str(target.get("rawSql", "")).strip()
        if not sql.upper().startswith("SELECT"):
            problems.append(f"{name}: rawSql must be a SELECT, got {sql[:40]!r}")
        if target.get("format") != PANEL_FORMATS[kind]:
            problems.append(
                f"{name}: a {kind} panel needs format {PANEL_FORMATS[kind]}, got "
                f"{target.get('format')!r}"
            )
        missing = sorted(used_variables(sql) - defined)
        if missing:
            problems.append(f"{name}: uses undefined template variables {missing}")
    return problems


def used_variables(sql: str) -> set[str]:
    """Template variables a query refers to (Grafana globals and plugin macros excluded)."""
    names = {next(g for g in m.groups() if g) for m in _VARIABLE.finditer(sql)}
    return {n for n in names if not n.startswith("__")}


def _grid(all_panels: Iterable[Mapping[str, Any]], where: str) -> list[str]:
    problems: list[str] = []
    cells: dict[tuple[int, int], str] = {}
    for panel in all_panels:
        pos = panel.get("gridPos") or {}
        x, y, w, h = (int(pos.get(k, -1)) for k in ("x", "y", "w", "h"))
        name = f"{where} panel {panel.get('id')} {panel.get('title')!r}"
        if min(x, y) < 0 or w <= 0 or h <= 0 or x + w > GRID_COLUMNS:
            problems.append(f"{name}: gridPos {pos} is outside the {GRID_COLUMNS}-column grid")
            continue
        for cx in range(x, x + w):
            for cy in range(y, y + h):
                other = cells.setdefault((cx, cy), name)
                if other != name:
                    problems.append(f"{name}: overlaps {other} at ({cx}, {cy})")
                    break
            else:
                continue
            break
    return problems
