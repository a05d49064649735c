"""Detection rules, one module each; every rule is ``evaluate(state, event, config)``.

A rule reads and updates its own part of the principal's state (a JSON-able dict, stored in a
Faust table by :mod:`processors.security.state`) and returns a :class:`Finding` when the event
completes its pattern. ``applies(principal_type, action)`` says which events a rule can act on
at all (:func:`rules_for` picks the rules per event kind once, instead of calling every rule on
every event). Rules are deterministic functions of (state, event): a replay of the same
events over the same state finds the same things, which is what makes flag ids stable.
"""

from __future__ import annotations

import functools

from processors.security.rules import (
    brute_force,
    impossible_travel,
    new_device_sensitive_action,
    off_hours_staff,
    staff_bulk_access,
)
from processors.security.rules.base import Finding, Rule

_MODULES = (
    brute_force,
    impossible_travel,
    new_device_sensitive_action,
    off_hours_staff,
    staff_bulk_access,
)
#: per-principal rules, in evaluation order (credential stuffing runs per ip/device instead:
#: :mod:`processors.security.rules.credential_stuffing`)
PRINCIPAL_RULES: tuple[Rule, ...] = tuple(module.evaluate for module in _MODULES)


@functools.cache
def rules_for(principal_type: str, action: str) -> tuple[Rule, ...]:
    """The per-principal rules that can act on an event of this kind, in evaluation order.

    >>> [rule.__module__.rsplit(".", 1)[1] for rule in rules_for("customer", "login_failure")]
    ['brute_force']
    """
    return tuple(m.evaluate for m in _MODULES if m.applies(principal_type, action))


__all__ = ["PRINCIPAL_RULES", "Finding", "Rule", "rules_for"]
