"""``cxstream dashboards push`` against real local HTTP servers started by the tests.

No Grafana server can be installed here (BRIEF §3). The error paths use servers that answer
the way a wrong URL or a bad token does (404 everywhere, 401 everywhere, nothing listening);
the upsert path uses a server that records the calls and answers as Grafana's HTTP API
documents (folders by uid, ``POST /api/dashboards/db`` with ``overwrite``), so the test checks
what is sent on the wire and that a second push changes nothing but the version.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from click.testing import CliRunner

from dashboards.cli import dashboards
from dashboards.datasource import DATASOURCE_UID
from dashboards.errors import GrafanaPushError
from dashboards.export import build_all
from dashboards.push import check_url, folder_uid, push_boards

TOKEN = "glsa_test_token_do_not_print"


class Handler(BaseHTTPRequestHandler):
    server: Server

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.calls.append((self.command, self.path, dict(self.headers), body))
        status, payload = self.server.respond(self, body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    # http.server dispatches on these names
    do_GET = do_POST = do_PUT = _answer  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


class Server(ThreadingHTTPServer):
    def __init__(self, respond: Callable[[Handler, Any], tuple[int, Any]]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.respond = respond
        self.calls: list[tuple[str, str, dict[str, str], Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def serving(respond: Callable[[Handler, Any], tuple[int, Any]]) -> Iterator[Server]:
    server = Server(respond)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class FakeGrafanaState:
    """What a Grafana keeps between calls: folders and dashboard versions, by uid."""

    def __init__(self, *, datasource: bool = True) -> None:
        self.folders: dict[str, str] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, int] = {}
        self.datasource = datasource

    def respond(self, handler: Handler, body: Any) -> tuple[int, Any]:
        if (
            handler.headers.get("Authorization") != f"Bearer {TOKEN}"
            and handler.path != "/api/health"
        ):
            return 401, {"message": "Unauthorized"}
        method, path = handler.command, handler.path
        if method == "GET" and path == "/api/health":
            return 200, {"commit": "test", "database": "ok", "version": "11.6.0"}
        if method == "GET" and path.startswith("/api/folders/"):
            uid = path.rsplit("/", 1)[1]
            if uid in self.folders:
                return 200, {"uid": uid, "title": self.folders[uid]}
            return 404, {"message": "folder not found"}
        if method == "POST" and path == "/api/folders":
            self.folders[body["uid"]] = body["title"]
            return 200, {"uid": body["uid"], "title": body["title"]}
        if method == "GET" and path == f"/api/datasources/uid/{DATASOURCE_UID}":
            if self.datasource:
                return 200, {"uid": DATASOURCE_UID, "type": "grafana-clickhouse-datasource"}
            return 404, {"message": "Data source not found"}
        if method == "POST" and path == "/api/dashboards/db":
            board = body["dashboard"]
            if body.get("folderUid") not in self.folders:
                return 400, {"message": "folder not found"}
            if board["uid"] in self.dashboards and not body.get("overwrite"):
                return 412, {"status": "name-exists", "message": "exists"}
            self.dashboards[board["uid"]] = board
            self.versions[board["uid"]] = self.versions.get(board["uid"], 0) + 1
            uid = board["uid"]
            return 200, {
                "status": "success",
                "uid": uid,
                "url": f"/d/{uid}/x",
                "version": self.versions[uid],
            }
        return 404, {"message": "Not found"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def boards() -> dict[str, dict[str, Any]]:
    return build_all()


def test_push_upserts_into_a_folder_and_is_idempotent(boards: dict[str, dict[str, Any]]) -> None:
    state = FakeGrafanaState()
    with serving(state.respond) as server:
        first = push_boards(boards, url=server.url, token=TOKEN, folder="CX stream")
        second = push_boards(boards, url=server.url, token=TOKEN, folder="CX stream")
    assert first.folder_uid == second.folder_uid == "cx-stream"
    assert (first.folder_created, second.folder_created) == (True, False)
    assert state.folders == {"cx-stream": "CX stream"}
    assert [b.uid for b in first.boards] == list(boards)
    assert [b.version for b in second.boards] == [2] * len(boards)
    assert first.grafana_version == "11.6.0"
    assert not first.warnings
    # what Grafana stored is the exported model (Grafana assigns the numeric id)
    assert state.dashboards == {uid: {**board, "id": None} for uid, board in boards.items()}
    saves = [c for c in server.calls if c[1] == "/api/dashboards/db"]
    assert len(saves) == 2 * len(boards)
    assert all(c[3]["overwrite"] is True and c[3]["folderUid"] == "cx-stream" for c in saves)
    assert all(c[2]["Authorization"] == f"Bearer {TOKEN}" for c in saves)
    creates = [c for c in server.calls if c[0] == "POST" and c[1] == "/api/folders"]
    assert len(creates) == 1


def test_a_missing_datasource_is_a_warning(boards: dict[str, dict[str, Any]]) -> None:
    state = FakeGrafanaState(datasource=False)
    with serving(state.respond) as server:
        report = push_boards(boards, url=server.url, token=TOKEN, folder="cxstream")
    assert len(report.boards) == len(boards)
    assert len(report.warnings) == 1
    assert DATASOURCE_UID in report.warnings[0]


def test_a_bad_token_is_named_and_never_printed(boards: dict[str, dict[str, Any]]) -> None:
    with (
        serving(lambda h, b: (401, {"message": "invalid API key"})) as server,
        pytest.raises(GrafanaPushError) as caught,
    ):
        push_boards(boards, url=server.url, token=TOKEN, folder="cxstream")
    assert caught.value.status == 401
    assert "refused the token (401 Unauthorized)" in str(caught.value)
    assert server.url in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert [c[1] for c in server.calls] == ["/api/health"]  # stopped at the first refusal


def test_a_token_refused_after_the_health_check(boards: dict[str, dict[str, Any]]) -> None:
    state = FakeGrafanaState()
    with (
        serving(state.respond) as server,
        pytest.raises(GrafanaPushError, match=r"find folder cxstream: .*refused the token"),
    ):
        push_boards(boards, url=server.url, token="wrong", folder="cxstream")
    assert state.dashboards == {}


def test_a_url_that_is_not_grafana(boards: dict[str, dict[str, Any]]) -> None:
    with (
        serving(lambda h, b: (404, {"message": "no such page"})) as server,
        pytest.raises(GrafanaPushError) as caught,
    ):
        push_boards(boards, url=f"{server.url}/wrong-prefix", token=TOKEN, folder="cx")
    assert caught.value.status == 404
    assert "no Grafana HTTP API at" in str(caught.value)
    assert "path prefix" in str(caught.value)
    assert server.calls[0][1] == "/wrong-prefix/api/health"


def test_a_server_answering_something_else(boards: dict[str, dict[str, Any]]) -> None:
    with (
        serving(lambda h, b: (200, {"hello": "world"})) as server,
        pytest.raises(GrafanaPushError, match="is not Grafana"),
    ):
        push_boards(boards, url=server.url, token=TOKEN, folder="cx")


def test_nothing_listening(boards: dict[str, dict[str, Any]]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(GrafanaPushError, match=f"health check: cannot reach Grafana at {url}"):
        push_boards(boards, url=url, token=TOKEN, folder="cx", timeout=2)


@pytest.mark.parametrize(
    "url", ["localhost:3000", "ftp://grafana", "http://", "http://admin:pw@host:3000"]
)
def test_malformed_urls_are_refused_before_any_request(url: str) -> None:
    with pytest.raises(GrafanaPushError, match="Grafana URL"):
        check_url(url)


def test_folder_uids() -> None:
    assert folder_uid("cxstream") == "cxstream"
    assert folder_uid("CX · Boards (prod)") == "cx-boards-prod"
    assert len(folder_uid("x" * 80)) == 40
    with pytest.raises(GrafanaPushError):
        folder_uid("···")


def test_cli_push_reports_the_error_without_the_token() -> None:
    with serving(lambda h, b: (401, {"message": "invalid API key"})) as server:
        result = CliRunner().invoke(
            dashboards, ["push", "--url", server.url, "--token", TOKEN, "--folder", "cx"]
        )
    assert result.exit_code != 0
    assert isinstance(result.exception, GrafanaPushError)
    assert TOKEN not in result.output
    assert TOKEN not in str(result.exception)
