"""Durable log of delivery attempts and acknowledgements: one local SQLite file.

Why SQLite and not a Kafka topic: the log is read on every delivery (was this key already
delivered?) and written on every attempt; a local file answers that in microseconds with no
startup replay, keeps a queryable audit trail (``sqlite3 delivery.sqlite``), and holds the ack
store in the same transaction domain. Its job in the at-least-once chain is narrow: offsets are
committed only after delivery, so after a crash the alerts since the last commit come again and
the log skips those already delivered. Losing the log (another host, a lost disk) can only cause
a repeat with the same idempotency key, which receivers dedupe; it can never lose an alert.
WAL with ``synchronous=NORMAL`` survives a killed process (what the crash tests do); an OS
crash may lose the last transactions, with the same harmless effect. With several notifier
instances, give them a shared volume or accept receiver-side dedupe after a rebalance.

Tables: ``attempts`` (every try, with outcome), ``deliveries`` (final state per idempotency key:
delivered | dead | suppressed), ``alerts`` (what each alert id was, so an ack can find its
subject), ``acks`` (per subject: up to which level on-call acknowledged).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from cxstream.errors import ServiceError
from cxstream.notify.notification import Notification, level_rank

_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    key TEXT NOT NULL, alert_id TEXT NOT NULL, channel TEXT NOT NULL, recipient TEXT NOT NULL,
    attempt INTEGER NOT NULL, at_ms INTEGER NOT NULL, ok INTEGER NOT NULL,
    status INTEGER, error TEXT
);
CREATE INDEX IF NOT EXISTS attempts_alert ON attempts (alert_id);
CREATE TABLE IF NOT EXISTS deliveries (
    key TEXT PRIMARY KEY, alert_id TEXT NOT NULL, state TEXT NOT NULL, at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY, subject_key TEXT NOT NULL, level TEXT NOT NULL,
    department TEXT NOT NULL, first_seen_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS acks (
    subject_key TEXT PRIMARY KEY, alert_id TEXT NOT NULL, level_rank INTEGER NOT NULL,
    at_ms INTEGER NOT NULL, by TEXT
);
"""


@dataclass(frozen=True, slots=True)
class Ack:
    alert_id: str
    subject_key: str
    level_rank: int
    at_ms: int
    by: str | None


def _now_ms() -> int:
    return int(time.time() * 1000)


class DeliveryLog:
    """The notifier's local store; one connection, used from the event-loop thread only."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise ServiceError(f"notify delivery log {self.path} cannot be opened: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    # -- deliveries --------------------------------------------------------------------------

    def state(self, key: str) -> str | None:
        row = self._db.execute("SELECT state FROM deliveries WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def record_attempt(
        self,
        key: str,
        alert_id: str,
        channel: str,
        recipient: str,
        attempt: int,
        *,
        ok: bool,
        status: int | None = None,
        error: str | None = None,
    ) -> None:
        self._db.execute(
            "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, alert_id, channel, recipient, attempt, _now_ms(), int(ok), status, error),
        )

    def finish(self, key: str, alert_id: str, state: str) -> None:
        """Final state of a delivery key; the first final state stays (replays keep it)."""
        self._db.execute(
            "INSERT OR IGNORE INTO deliveries VALUES (?, ?, ?, ?)",
            (key, alert_id, state, _now_ms()),
        )

    def attempts(self, alert_id: str) -> list[tuple[str, int, bool, int | None]]:
        """``(key, attempt, ok, status)`` of every attempt for an alert, in order."""
        rows = self._db.execute(
            "SELECT key, attempt, ok, status FROM attempts WHERE alert_id = ? ORDER BY rowid",
            (alert_id,),
        ).fetchall()
        return [(str(k), int(a), bool(o), s) for k, a, o, s in rows]

    def states(self, alert_id: str) -> dict[str, str]:
        rows = self._db.execute(
            "SELECT key, state FROM deliveries WHERE alert_id = ?", (alert_id,)
        ).fetchall()
        return {str(k): str(s) for k, s in rows}

    # -- alerts and acknowledgements ------------------------------------------------------------

    def remember(self, notification: Notification) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO alerts VALUES (?, ?, ?, ?, ?)",
            (
                notification.alert_id,
                notification.subject_key,
                notification.level,
                notification.department,
                _now_ms(),
            ),
        )

    def acknowledge(self, alert_id: str, by: str | None = None) -> Ack | None:
        """Record that on-call acknowledged ``alert_id``; ``None`` if the id is unknown.

        Idempotent: acknowledging again, or a lower level of the same subject, keeps the
        first acknowledgement's time; a higher level raises the suppression bar.
        """
        row = self._db.execute(
            "SELECT subject_key, level FROM alerts WHERE alert_id = ?", (alert_id,)
        ).fetchone()
        if row is None:
            return None
        subject_key, level = str(row[0]), str(row[1])
        self._db.execute(
            "INSERT INTO acks VALUES (?, ?, ?, ?, ?) ON CONFLICT (subject_key) DO UPDATE SET "
            "alert_id = excluded.alert_id, level_rank = excluded.level_rank "
            "WHERE excluded.level_rank > acks.level_rank",
            (subject_key, alert_id, level_rank(level), _now_ms(), by),
        )
        return self.ack_of(subject_key)

    def ack_of(self, subject_key: str) -> Ack | None:
        row = self._db.execute(
            "SELECT alert_id, level_rank, at_ms, by FROM acks WHERE subject_key = ?",
            (subject_key,),
        ).fetchone()
        if row is None:
            return None
        return Ack(str(row[0]), subject_key, int(row[1]), int(row[2]), row[3])
