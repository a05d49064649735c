"""Detection rules, one module each; every rule is ``evaluate(state, event, config)``.

A rule reads and updates its own part of the principal's state (a JSON-able dict, stored in a
Faust table by :mod:`processors.security.state`) and returns a :class:`Finding` when the event
completes its pattern. Rules are deterministic functions of (state, event): a replay of the same
events over the same state finds the same things, which is what makes flag ids stable.
"""

from __future__ import annotations

from processors.security.rules import (
    brute_force,
    impossible_travel,
    new_device_sensitive_action,
    off_hours_staff,
    staff_bulk_access,
)
from processors.security.rules.base import Finding, Rule

#: per-principal rules, in evaluation order (credential stuffing runs per ip/device instead:
#: :mod:`processors.security.rules.credential_stuffing`)
PRINCIPAL_RULES: tuple[Rule, ...] = (
    brute_force.evaluate,
    impossible_travel.evaluate,
    new_device_sensitive_action.evaluate,
    off_hours_staff.evaluate,
    staff_bulk_access.evaluate,
)

__all__ = ["PRINCIPAL_RULES", "Finding", "Rule"]
