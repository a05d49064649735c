"""Sinks: where events leave Kafka for stores that boards and frontends read (ClickHouse, Redis)."""
