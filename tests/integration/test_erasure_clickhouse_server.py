"""Erasure from ClickHouse on the real 18.16 server: the same contract as on chdb
(tests/unit/test_erasure_clickhouse.py); 18.16 is where a NULL delete condition removes rows."""

from __future__ import annotations

import pytest

from cxstream.settings import Settings
from tests.support.services import LocalStack
from tests.unit.test_erasure_clickhouse import ErasureContract

pytestmark = pytest.mark.integration


class TestServerErasure(ErasureContract):
    @pytest.fixture(scope="class")
    @classmethod
    def base_settings(cls, local_stack: LocalStack) -> Settings:
        assert local_stack.settings.clickhouse.host, "the stack settings name a ClickHouse server"
        return local_stack.settings
