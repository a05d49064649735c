"""The ClickHouse store's conformance suite on the real server (Debian's 18.16, native protocol).

Same tests as on chdb (tests/unit/test_clickhouse_contract.py): the DDL, the rollups, the
fence and retention must behave identically on both backends.
"""

from __future__ import annotations

import pytest

from cxstream.settings import Settings
from tests.support.services import LocalStack
from tests.unit.test_clickhouse_contract import ClickHouseContract

pytestmark = pytest.mark.integration


class TestServerContract(ClickHouseContract):
    @pytest.fixture(scope="class")
    @classmethod
    def base_settings(cls, local_stack: LocalStack) -> Settings:
        assert local_stack.settings.clickhouse.host, "the stack settings name a ClickHouse server"
        return local_stack.settings

    def test_the_server_is_the_18_16_build(self, base_settings: Settings) -> None:
        from sinks.clickhouse.backend import ServerBackend

        backend = ServerBackend(base_settings)
        try:
            # the common dialect is only proven if the oldest supported server really ran it
            assert backend.server_version().startswith("18.16")
        finally:
            backend.close()
