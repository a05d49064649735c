"""The board queries on the ClickHouse 18.16 server (native protocol), same tests as on chdb.

See tests/unit/test_dashboards_sql.py: every panel's SQL with its macros expanded runs over the
simulated store and returns the columns its panel type needs; the scorecard equals the KPIs
computed from the events in Python.
"""

from __future__ import annotations

import pytest

from cxstream.settings import Settings
from sinks.clickhouse.backend import ServerBackend
from tests.support.services import LocalStack
from tests.unit.test_dashboards_sql import BoardQueriesContract

pytestmark = pytest.mark.integration


class TestServerBoardQueries(BoardQueriesContract):
    @pytest.fixture(scope="class")
    @classmethod
    def base_settings(cls, local_stack: LocalStack) -> Settings:
        assert local_stack.settings.clickhouse.host, "the stack settings name a ClickHouse server"
        return local_stack.settings

    def test_the_server_is_the_18_16_build(self, base_settings: Settings) -> None:
        backend = ServerBackend(base_settings)
        try:
            # the common dialect is only proven if the oldest supported server ran the panels
            assert backend.server_version().startswith("18.16")
        finally:
            backend.close()
