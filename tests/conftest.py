"""Test-wide fixtures and rules.

Services: a test that needs Kafka, Redis or ClickHouse is marked ``integration``; everything under
``tests/integration`` gets that marker automatically. For those tests only, the autouse fixture
``_integration_services`` pulls in the session-scoped ``local_stack`` fixture, which brings the
native stack up once per session through :mod:`tests.support.services` (reusing services that
already run, stopping at the end only those it started). A test that needs addresses or wants to
stop/start a service requests ``local_stack`` (a :class:`tests.support.services.LocalStack`).

Unit tests (``tests/unit``) never start services: marking one ``integration`` is a collection
error. Run only unit tests with ``pytest tests/unit`` or ``pytest -m "not integration"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.services import LocalStack, ensure_stack, release_stack

_TESTS = Path(__file__).resolve().parent
_UNIT = _TESTS / "unit"
_INTEGRATION = _TESTS / "integration"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselection, so auto-added markers count
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.path)).resolve()
        marked = item.get_closest_marker("integration") is not None
        if path.is_relative_to(_INTEGRATION) and not marked:
            item.add_marker(pytest.mark.integration)
        elif path.is_relative_to(_UNIT) and marked:
            raise pytest.UsageError(
                f"{item.nodeid}: unit tests must not need services; move it to tests/integration"
            )


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """The native stack (Kafka, Redis, ClickHouse), healthy for the whole session."""
    stack = ensure_stack()
    try:
        yield stack
    finally:
        release_stack(stack)


@pytest.fixture(autouse=True)
def _integration_services(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("integration") is not None:
        request.getfixturevalue("local_stack")
