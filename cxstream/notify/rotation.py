"""On-call rotations from configuration: who is on call at a given instant.

Members take turns of ``shift_hours`` starting at ``handover_at`` (turn ``n`` begins at
``handover_at + n * shift``; instants before ``handover_at`` count backwards the same way).
An override names a member for ``[start, end)`` and beats the turn; when overrides overlap the
one listed last wins (the most recent edit of a schedule is usually appended).

The notifier asks for the member on call at the alert's *firing* time, not at delivery time, so
a replay after a crash reaches the same person with the same idempotency key.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cxstream.errors import ConfigurationError
from cxstream.settings import NotifyMemberSettings, NotifyRotationSettings


def _ms(value: datetime) -> int:
    if value.tzinfo is None:  # naive means UTC, like the rest of the platform
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


class Rotation:
    """One rotation: ``on_call(at_ms)`` gives the member on call then."""

    def __init__(self, config: NotifyRotationSettings) -> None:
        self.config = config
        self.name = config.name
        self._members = {member.name: member for member in config.members}
        if len(self._members) != len(config.members):
            raise ConfigurationError(f"notify rotation {config.name}: member names repeat")
        self._order = [member.name for member in config.members]
        self._start_ms = _ms(config.handover_at)
        self._shift_ms = round(config.shift_hours * 3_600_000)
        self._overrides: list[tuple[int, int, str]] = []
        for override in config.overrides:
            if override.member not in self._members:
                raise ConfigurationError(
                    f"notify rotation {config.name}: override names unknown member "
                    f"{override.member!r} (members: {', '.join(self._order)})"
                )
            start, end = _ms(override.start), _ms(override.end)
            if end <= start:
                raise ConfigurationError(
                    f"notify rotation {config.name}: override for {override.member} ends "
                    f"({override.end}) before it starts ({override.start})"
                )
            self._overrides.append((start, end, override.member))

    def member(self, name: str) -> NotifyMemberSettings:
        return self._members[name]

    def turn(self, at_ms: int) -> NotifyMemberSettings:
        """The member whose regular turn covers ``at_ms`` (overrides ignored)."""
        index = (at_ms - self._start_ms) // self._shift_ms  # floor: works before the start too
        return self._members[self._order[index % len(self._order)]]

    def on_call(self, at_ms: int) -> NotifyMemberSettings:
        for start, end, name in reversed(self._overrides):
            if start <= at_ms < end:
                return self._members[name]
        return self.turn(at_ms)
