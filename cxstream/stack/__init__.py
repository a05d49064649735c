"""The native local stack: Kafka (KRaft, Maven Central jars), Redis and ClickHouse as plain
processes under ``StackSettings.home`` — no Docker needed.

Entry points: ``cxstream stack up|down|status|fetch|logs`` (:mod:`cxstream.stack.cli`) and, for
code and tests, :mod:`cxstream.stack.manager` (``up``, ``down``, ``status``, ``start_service``,
``stop_service``, ``kill_service``). Importing this package starts nothing.
"""
