"""Ground truth of injected security scenarios, kept beside the events and never inside them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol

from cxstream.errors import ConfigurationError


@dataclass(slots=True)
class ScenarioLabel:
    """One injected scenario: what it was, who did it, when, and which events make it up."""

    scenario: str  # one of config.SCENARIO_TYPES
    label_id: str
    principal_type: str  # customer | staff
    #: the principal the scenario is about (victim customer, offending staff member); for
    #: credential stuffing, which spans many accounts, the first account tried
    principal_id: str
    start_ms: int
    end_ms: int
    event_ids: list[str]
    #: every principal whose access events take part (many for credential stuffing)
    principal_ids: list[str] = field(default_factory=list)
    #: attacker's network identity, when the scenario has one
    ip: str | None = None
    device_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: False when the run stopped (``max_events``) before all of the scenario's events went out
    complete: bool = True

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["start"] = _iso(self.start_ms)
        data["end"] = _iso(self.end_ms)
        return data


class LabelSink(Protocol):
    def write(self, label: ScenarioLabel) -> None:
        """Record one label; called once per scenario when its last event has been generated."""


class ListLabelSink:
    """Keeps labels in memory (tests, benchmarks, in-process consumers)."""

    def __init__(self) -> None:
        self.labels: list[ScenarioLabel] = []

    def write(self, label: ScenarioLabel) -> None:
        self.labels.append(label)


class JsonlLabelSink:
    """Appends one JSON object per line to ``path`` (flushed per label, so a crash keeps them)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._file: IO[str] | None = None

    def __enter__(self) -> JsonlLabelSink:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"labels file {self.path}: cannot open: {exc}") from exc
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def write(self, label: ScenarioLabel) -> None:
        if self._file is None:
            raise ConfigurationError(f"labels file {self.path}: write before open")
        self._file.write(json.dumps(label.to_json(), ensure_ascii=False) + "\n")
        self._file.flush()
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_labels(path: Path) -> list[dict[str, Any]]:
    """The labels of a JSON-lines file written by :class:`JsonlLabelSink`."""
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")
