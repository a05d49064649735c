"""Every panel's SQL over simulated traffic, and the scorecard against KPIs computed in Python.

:class:`BoardQueriesContract` holds the tests; here they run on embedded chdb (ClickHouse 26.x,
no service). ``tests/integration/test_dashboards_server.py`` runs the same tests on the
ClickHouse 18.16 server. The store: two simulated days (inputs from the simulator, outputs
derived from its ground truth, see :mod:`dashboards.testing`) pushed through the real sink path.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr

from cxstream.settings import Settings
from cxstream.simulate import SimulationConfig
from dashboards.export import build_all
from dashboards.kpis import ANSWER_WINDOW_SECONDS, LEAKAGE_SEVERITIES, SATISFIED_SCORE
from dashboards.macros import TimeRange
from dashboards.runner import PanelCheck, check_board, panel_queries, run_query
from dashboards.testing import LoadReport, SimulatedData, load, simulate
from sinks.clickhouse.backend import ClickHouseBackend, make_backend
from sinks.clickhouse.migrations import migrate
from sinks.clickhouse.testing import shared_chdb_path

DAY_MS = 86_400_000
ONLINE = {"web", "app", "social", "chat"}  # the plan's online channels, stated independently
ACTIVITY = (
    "channel_interaction", "transaction", "chat_session", "feedback_submitted",
    "product_holding_changed", "recommendation_feedback",
)  # fmt: skip
BOARDS = ("cx-scorecard", "cx-feedback-sla", "cx-security", "cx-personalisation", "cx-pipeline")


@dataclass
class Store:
    settings: Settings
    backend: ClickHouseBackend
    data: SimulatedData
    report: LoadReport

    @property
    def whole(self) -> TimeRange:
        """The simulated days up to now (the sink's own tables are stamped with wall time)."""
        return TimeRange(self.data.start_ms, int(time.time() * 1000) + 60_000)

    def day(self, index: int) -> TimeRange:
        """Simulated day ``index`` as a dashboard range (00:00:00 to 23:59:59 UTC)."""
        start = self.data.start_ms + index * DAY_MS
        return TimeRange(start, start + DAY_MS - 1000)


def simulation_config() -> SimulationConfig:
    # two whole UTC days that ended at least a day ago (every 24 h answer window has closed),
    # starting on a Monday so the weekly rhythm, and with the seed the traffic, is the same
    # whatever day the tests run
    today = int(time.time() * 1000) // DAY_MS
    monday = today - 3 - (today - 3 + 3) % 7  # 1970-01-01 was a Thursday
    return SimulationConfig(
        start_ms=monday * DAY_MS,
        duration_ms=2 * DAY_MS,
        customers=300,
        staff=20,
        seed=11,
        feedback_per_visit=0.1,
        survey_per_visit=0.2,
    )


def boundary_feedback(start_ms: int) -> list[tuple[str, dict[str, Any]]]:
    """Two items answered exactly at the end of their 24 h window and one second after it.

    The simulator answers within hours or well after a day, so without these the window's edge
    (``<=``, whole seconds) would go untested.
    """
    events: list[tuple[str, dict[str, Any]]] = []
    submitted = start_ms + 10 * 3_600_000
    for number, wait_ms in (
        (1, ANSWER_WINDOW_SECONDS * 1000 + 999),
        (2, ANSWER_WINDOW_SECONDS * 1000 + 1000),
    ):
        fid, customer = f"fb-edge-{number}", "C00000001"
        events.append(
            (
                "feedback_submitted",
                {
                    "event_id": str(uuid.UUID(int=number, version=4)),
                    "occurred_at": submitted,
                    "customer_id": customer,
                    "feedback_id": fid,
                    "channel": "web",
                    "category": "fees",
                    "severity": "medium",
                    "department": "customer_service",
                    "text": None,
                    "contact_email": None,
                    "contact_phone": None,
                    "source": "web-banking",
                },
            )
        )
        events.append(
            (
                "feedback_status_changed",
                {
                    "event_id": str(uuid.UUID(int=100 + number, version=4)),
                    "occurred_at": submitted + wait_ms,
                    "customer_id": customer,
                    "feedback_id": fid,
                    "status": "responded",
                    "department": None,
                    "agent_id": "S00001",
                    "note": None,
                    "source": "helpdesk",
                },
            )
        )
    return events


def stat_value(store: Store, board: dict[str, Any], title: str, time_range: TimeRange) -> Any:
    queries = [q for q in panel_queries(board, time_range) if q.title == title]
    assert len(queries) == 1, title
    result = run_query(store.backend, queries[0])
    assert len(result.rows) == 1, (title, result)
    assert len(result.columns) == 1, (title, result)
    return result.rows[0][0]


def expected_kpis(data: SimulatedData, time_range: TimeRange, now_s: int) -> dict[str, Any]:
    """The KPIs of ``time_range``, straight from the generated events (no ClickHouse)."""
    lo, hi = time_range.from_s, time_range.to_s

    def within(record: dict[str, Any]) -> bool:
        return lo <= record["occurred_at"] // 1000 <= hi

    requests = [
        r
        for r in data.of("channel_interaction")
        if within(r) and r["action"] in ("information_request", "service_request")
    ]
    scores: dict[str, list[int]] = {}
    for r in data.of("survey_response"):
        if within(r):
            scores.setdefault(r["dimension"], []).append(r["score"])

    def satisfied(dimension: str) -> float:
        values = scores[dimension]
        return sum(s >= SATISFIED_SCORE for s in values) / len(values)

    submitted = {
        r["feedback_id"]: r["occurred_at"] // 1000
        for r in data.of("feedback_submitted")
        if within(r)
    }
    first_response: dict[str, int] = {}
    for r in data.of("feedback_status_changed"):  # any time: a late answer is still an answer
        if r["status"] == "responded":
            at = r["occurred_at"] // 1000
            first_response[r["feedback_id"]] = min(first_response.get(r["feedback_id"], at), at)
    on_time = closed = 0
    waits = []
    for fid, sent in submitted.items():
        answered = first_response.get(fid)
        if answered is not None:
            waits.append(answered - sent)
        if answered is not None or now_s - sent > ANSWER_WINDOW_SECONDS:
            closed += 1
            on_time += answered is not None and answered - sent <= ANSWER_WINDOW_SECONDS
    waits.sort()

    def quantile_exact(level: float) -> int:  # ClickHouse quantileExact: element level * n
        return waits[min(int(level * len(waits)), len(waits) - 1)]

    active = {
        r["customer_id"]
        for name in ACTIVITY
        for r in data.of(name)
        if within(r) and r.get("customer_id") is not None
    }
    served = {
        r["customer_id"]
        for name in ("recommendation", "recommendation_feedback")
        for r in data.of(name)
        if within(r)
    }
    leakage = [
        r
        for r in data.of("security_flag")
        if within(r) and r["principal_type"] == "staff" and r["severity"] in LEAKAGE_SEVERITIES
    ]
    info = scores["information_access"]
    return {
        "Requests served online": sum(r["channel"] in ONLINE for r in requests) / len(requests),
        "Information-access score": sum(info) / len(info),
        "Feedback answered within 24 h": on_time / closed,
        "Time to first response p50": quantile_exact(0.5),
        "Time to first response p95": quantile_exact(0.95),
        "Satisfaction with feedback handling": satisfied("feedback_handling"),
        "Active customers served personally": len(active & served) / len(active),
        "Satisfaction with personalised service": satisfied("personalisation"),
        "Customer-information leakage incidents": len(leakage),
        "Satisfaction with security": satisfied("security"),
    }


class BoardQueriesContract:
    """Tests every ClickHouse build must pass; subclasses provide ``base_settings``."""

    @pytest.fixture(scope="class")
    @classmethod
    def base_settings(cls) -> Settings:
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def store(cls, base_settings: Settings) -> Iterator[Store]:
        database = f"t_dash_{uuid.uuid4().hex[:10]}"
        settings = base_settings.model_copy(
            update={
                "clickhouse": base_settings.clickhouse.model_copy(update={"database": database}),
                "kafka": base_settings.kafka.model_copy(update={"topic_prefix": database}),
                "privacy": base_settings.privacy.model_copy(
                    update={"pseudonym_key": SecretStr("dashboards-test-key")}
                ),
            }
        )
        backend = make_backend(settings)
        try:
            migrate(backend)
            data = simulate(simulation_config())
            data.events.extend(boundary_feedback(data.start_ms))
            report = load(settings, backend, data)
            yield Store(settings, backend, data, report)
        finally:
            backend.execute(f"DROP DATABASE IF EXISTS {database}")
            backend.close()

    @pytest.fixture(scope="class")
    @classmethod
    def boards(cls) -> dict[str, dict[str, Any]]:
        return build_all()

    @pytest.mark.parametrize("uid", BOARDS)
    def test_every_panel_runs_and_returns_what_its_panel_needs(
        self, store: Store, boards: dict[str, dict[str, Any]], uid: str
    ) -> None:
        checks = check_board(store.backend, boards[uid], store.whole, require_rows=True)
        assert checks, uid
        failed = [p for c in checks for p in c.problems]
        assert failed == [], "\n\n".join(failed)

    @pytest.mark.parametrize(
        ("uid", "selections"),
        [
            ("cx-scorecard", {"channel": ["app", "web"]}),
            ("cx-feedback-sla", {"department": ["customer_service"], "channel": ["app"]}),
            ("cx-security", {"severity": ["critical"], "principal_type": ["staff"]}),
            ("cx-personalisation", {"channel": ["app"]}),
            ("cx-pipeline", {"event_type": ["transaction", "dlq"]}),
        ],
    )
    def test_panels_run_with_variables_set(
        self,
        store: Store,
        boards: dict[str, dict[str, Any]],
        uid: str,
        selections: dict[str, list[str]],
    ) -> None:
        checks: list[PanelCheck] = check_board(
            store.backend, boards[uid], store.whole, selections=selections
        )
        failed = [p for c in checks for p in c.problems]
        assert failed == [], "\n\n".join(failed)

    @pytest.mark.parametrize("day", [0, 1])
    def test_scorecard_equals_the_kpis_computed_from_the_events(
        self, store: Store, boards: dict[str, dict[str, Any]], day: int
    ) -> None:
        expected = expected_kpis(store.data, store.day(day), int(time.time()))
        measured = {
            title: stat_value(store, boards["cx-scorecard"], title, store.day(day))
            for title in expected
        }
        assert measured == pytest.approx(expected, rel=1e-9)

    def test_scorecard_values_are_the_board_stats(self, store: Store) -> None:
        from dashboards.scorecard import scorecard_values

        expected = expected_kpis(store.data, store.day(0), int(time.time()))
        values = {v.kpi.title: v.value for v in scorecard_values(store.backend, store.day(0))}
        assert values == pytest.approx({t: float(v) for t, v in expected.items()}, rel=1e-9)

    def test_the_simulated_days_exercise_every_kpi(self, store: Store) -> None:
        days = [expected_kpis(store.data, store.day(d), int(time.time())) for d in (0, 1)]
        # late answers and leaks happen, so the equality above is not between trivial values
        assert any(0 < d["Feedback answered within 24 h"] < 1 for d in days), days
        assert any(d["Customer-information leakage incidents"] >= 1 for d in days), days
        assert all(0 < d["Active customers served personally"] < 1 for d in days), days

    def test_department_and_channel_filter_the_feedback_board(
        self, store: Store, boards: dict[str, dict[str, Any]]
    ) -> None:
        day = store.day(0)
        board = boards["cx-feedback-sla"]
        records = [
            r
            for r in store.data.of("feedback_submitted")
            if day.from_s <= r["occurred_at"] // 1000 <= day.to_s
        ]
        for department in ("customer_service", "it"):
            query = next(
                q
                for q in panel_queries(board, day, selections={"department": [department]})
                if q.title == "Submitted"
            )
            rows = run_query(store.backend, query).rows
            assert rows[0][0] == sum(r["department"] == department for r in records)
        query = next(
            q
            for q in panel_queries(board, day, selections={"channel": ["app", "web"]})
            if q.title == "Submitted"
        )
        assert run_query(store.backend, query).rows[0][0] == sum(
            r["channel"] in ("app", "web") for r in records
        )

    def test_pipeline_board_counts_what_the_sink_stored(
        self, store: Store, boards: dict[str, dict[str, Any]]
    ) -> None:
        board = boards["cx-pipeline"]
        events_in = stat_value(store, board, "Events in", store.whole)
        stored = store.report.messages - 3  # the three undecodable messages were dead-lettered
        assert events_in == stored + store.report.dead_letters  # dead letters land as rows too
        assert stat_value(store, board, "Dead letters", store.whole) == 3


class TestChdbBoardQueries(BoardQueriesContract):
    @pytest.fixture(scope="class")
    @classmethod
    def base_settings(cls) -> Settings:
        settings = Settings()
        return settings.model_copy(
            update={
                "clickhouse": settings.clickhouse.model_copy(
                    update={"host": None, "chdb_path": shared_chdb_path()}
                )
            }
        )
