"""The ClickHouse analytics sink: Kafka event topics -> raw tables and KPI rollups.

- :mod:`~sinks.clickhouse.backend`: one :class:`ClickHouseBackend` protocol, a ClickHouse server
  (clickhouse-driver) or embedded chdb;
- :mod:`~sinks.clickhouse.tables` and ``migrations/NNNN_*.sql`` with
  :mod:`~sinks.clickhouse.migrations`: the tables (generated from the Avro schemas), rollups and
  their versioned, idempotent DDL;
- :mod:`~sinks.clickhouse.rows`: decoded events -> columns, PII pseudonymised;
- :mod:`~sinks.clickhouse.sink`: the consuming sink (no loss, no duplicates);
- :mod:`~sinks.clickhouse.retention`: dropping expired partitions;
- :mod:`~sinks.clickhouse.cli`: ``cxstream db`` and ``cxstream sink``.

Nothing is imported here, so importing a submodule stays cheap.
"""
