"""Upsert the boards into a folder of a running Grafana (grafana-client, Grafana's HTTP API).

Idempotent: the folder's uid is derived from its title, so a second push finds the folder it
created; boards are saved by their fixed uids with ``overwrite`` (a new version of the same
board, never a copy). The steps, each failing with an error that names it and the URL:

1. ``GET /api/health`` (no auth): is there a Grafana at the URL at all?
2. ``GET /api/folders/<uid>``, creating the folder on 404: is the token accepted?
3. ``GET /api/datasources/uid/<uid>``: a missing ClickHouse datasource is a warning (the boards
   are saved, but show "datasource not found" until it is provisioned).
4. ``POST /api/dashboards/db`` per board.

The token is never part of a message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlparse

from dashboards.datasource import DATASOURCE_UID
from dashboards.errors import GrafanaPushError

T = TypeVar("T")
_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class PushedBoard:
    uid: str
    title: str
    status: str
    version: int | None
    url: str


@dataclass
class PushReport:
    grafana_url: str
    grafana_version: str
    folder_uid: str
    folder_created: bool
    boards: list[PushedBoard] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def folder_uid(title: str) -> str:
    """A Grafana uid (at most 40 of ``[a-z0-9-]``) derived from a folder title."""
    slug = _SLUG.sub("-", title.lower()).strip("-")[:40].strip("-")
    if not slug:
        raise GrafanaPushError(f"folder title {title!r} has no letters or digits to make a uid of")
    return slug


def check_url(url: str) -> tuple[str, str, int | None, str]:
    """``(scheme, host, port, path prefix)`` of a Grafana base URL, or a clear error."""
    parsed = urlparse(url)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise GrafanaPushError(
            f"Grafana URL {url!r} is not an http(s) URL with a host "
            "(expected e.g. http://127.0.0.1:3000 or https://grafana.example.com/grafana)"
        )
    if parsed.username or parsed.password:
        raise GrafanaPushError(
            f"Grafana URL for {parsed.hostname} carries credentials: pass a token instead"
        )
    try:
        port = parsed.port
    except ValueError as exc:
        raise GrafanaPushError(f"Grafana URL {url!r}: bad port: {exc}") from exc
    return parsed.scheme, parsed.hostname, port, parsed.path.strip("/")


def _api(url: str, token: str | None, timeout: float, verify: bool) -> Any:
    from grafana_client import GrafanaApi

    scheme, host, port, prefix = check_url(url)
    return GrafanaApi(
        token,
        host=host,
        port=port,
        url_path_prefix=f"{prefix}/" if prefix else "",
        protocol=scheme,
        verify=verify,
        timeout=timeout,
        user_agent="cxstream-dashboards",
    )


def _call(step: str, url: str, call: Callable[[], T]) -> T:
    """Run one API call; turn every failure into an error naming the step and the URL."""
    import niquests.exceptions
    from grafana_client.client import (
        GrafanaClientError,
        GrafanaException,
        GrafanaServerError,
        GrafanaTimeoutError,
        GrafanaUnauthorizedError,
    )

    try:
        return call()
    except GrafanaUnauthorizedError as exc:
        raise GrafanaPushError(
            f"{step}: Grafana at {url} refused the token (401 Unauthorized): pass a "
            "service-account token with the Editor role (--token or CX_GRAFANA__TOKEN)",
            status=401,
        ) from exc
    except GrafanaTimeoutError as exc:
        raise GrafanaPushError(f"{step}: Grafana at {url} did not answer in time: {exc}") from exc
    except GrafanaClientError as exc:
        if exc.status_code == 403:
            raise GrafanaPushError(
                f"{step}: Grafana at {url} accepted the token but refused the request (403 "
                f"Forbidden: {exc.message}): the token needs the Editor role",
                status=403,
            ) from exc
        raise GrafanaPushError(
            f"{step}: Grafana at {url} answered {exc.status_code}: {exc.message}",
            status=exc.status_code,
        ) from exc
    except GrafanaServerError as exc:
        raise GrafanaPushError(
            f"{step}: Grafana at {url} failed: {exc.message}", status=exc.status_code
        ) from exc
    except GrafanaException as exc:
        raise GrafanaPushError(f"{step}: cannot talk to Grafana at {url}: {exc}") from exc
    except niquests.exceptions.RequestException as exc:
        raise GrafanaPushError(f"{step}: cannot reach Grafana at {url}: {exc}") from exc
    except ValueError as exc:  # a body that is not JSON: something else answers there
        raise GrafanaPushError(
            f"{step}: the server at {url} does not answer like Grafana's HTTP API: {exc}"
        ) from exc


def push_boards(
    boards: Mapping[str, Mapping[str, Any]],
    *,
    url: str,
    token: str | None,
    folder: str,
    timeout: float = 10.0,
    verify: bool = True,
    message: str = "cxstream dashboards push",
) -> PushReport:
    """Upsert ``boards`` (uid -> exported JSON) into ``folder``; see the module docstring."""
    api = _api(url, token, timeout, verify)
    try:
        health = _call("health check", url, lambda: api.client.GET("/health"))
    except GrafanaPushError as exc:
        if exc.status == 404:
            raise GrafanaPushError(
                f"health check: no Grafana HTTP API at {url} (GET /api/health answered 404): "
                "check the URL, including any path prefix Grafana is served under",
                status=404,
            ) from exc
        raise
    if not isinstance(health, dict) or "database" not in health:
        raise GrafanaPushError(
            f"health check: the server at {url} is not Grafana (GET /api/health answered "
            f"{str(health)[:80]!r})"
        )
    report = PushReport(url, str(health.get("version", "")), folder_uid(folder), False)
    report.folder_created = _ensure_folder(api, url, report.folder_uid, folder)
    try:
        _call(
            "datasource check",
            url,
            lambda: api.datasource.get_datasource_by_uid(DATASOURCE_UID),
        )
    except GrafanaPushError as exc:
        if exc.status != 404:
            raise
        report.warnings.append(
            f"Grafana has no datasource with uid {DATASOURCE_UID!r}: the boards show "
            "'datasource not found' until it exists (provision it with "
            "dashboards/provisioning/datasources/clickhouse.yaml)"
        )
    for uid, board in boards.items():
        body: dict[str, Any] = {
            "dashboard": {**board, "id": None},
            "folderUid": report.folder_uid,
            "overwrite": True,
            "message": message,
        }
        answer = _call(f"save board {uid}", url, partial(api.dashboard.update_dashboard, body))
        if not isinstance(answer, dict) or answer.get("status") != "success":
            raise GrafanaPushError(f"save board {uid}: Grafana at {url} answered {answer!r}")
        report.boards.append(
            PushedBoard(
                uid=str(answer.get("uid", uid)),
                title=str(board.get("title", "")),
                status=str(answer["status"]),
                version=answer.get("version"),
                url=str(answer.get("url", "")),
            )
        )
    return report


def _ensure_folder(api: Any, url: str, uid: str, title: str) -> bool:
    """True when the folder had to be created."""
    try:
        _call(f"find folder {uid}", url, lambda: api.folder.get_folder(uid))
        return False
    except GrafanaPushError as exc:
        if exc.status != 404:
            raise
    _call(f"create folder {title!r}", url, lambda: api.folder.create_folder(title, uid=uid))
    return True
