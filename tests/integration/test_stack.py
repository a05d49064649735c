"""The native stack answers real clients, and one service can be stopped and started again."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from clickhouse_driver import Client
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from cxstream.stack import manager
from tests.support.services import LocalStack

pytestmark = pytest.mark.integration


def test_every_service_is_healthy(local_stack: LocalStack) -> None:
    rows = manager.status(local_stack.settings)
    assert [(row.name, row.healthy) for row in rows] == [
        ("kafka", True),
        ("redis", True),
        ("clickhouse", True),
    ]
    assert all(row.pid for row in rows)


def test_up_again_is_a_noop(local_stack: LocalStack) -> None:
    assert not any(result.started for result in manager.up(local_stack.settings))


def test_kafka_round_trip_through_a_consumer_group(local_stack: LocalStack) -> None:
    topic = f"cx.test.stack.{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": local_stack.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(
        timeout=30
    )
    try:
        producer = Producer({"bootstrap.servers": local_stack.kafka_bootstrap})
        producer.produce(topic, key=b"k", value=b"hello")
        assert producer.flush(30) == 0
        consumer = Consumer(
            {
                "bootstrap.servers": local_stack.kafka_bootstrap,
                "group.id": f"cx-test-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
            }
        )
        consumer.subscribe([topic])
        try:
            started = time.monotonic()
            message = None
            while message is None and time.monotonic() - started < 30:
                message = consumer.poll(1.0)
            assert message is not None, "no message within 30 s"
            assert message.error() is None
            assert message.value() == b"hello"
            # group.initial.rebalance.delay.ms=0: a lone consumer joins at once, not after 3 s
            assert time.monotonic() - started < 10
        finally:
            consumer.close()
    finally:
        admin.delete_topics([topic])[topic].result(timeout=30)


def test_kafka_refuses_to_auto_create_topics(local_stack: LocalStack) -> None:
    producer = Producer(
        {"bootstrap.servers": local_stack.kafka_bootstrap, "message.timeout.ms": 3000}
    )
    errors: list[object] = []
    producer.produce(
        f"cx.test.missing.{uuid.uuid4().hex[:8]}",
        value=b"x",
        on_delivery=lambda e, _m: errors.append(e),
    )
    producer.flush(10)
    assert errors
    assert errors[0] is not None


def test_clickhouse_answers_in_utc(local_stack: LocalStack) -> None:
    client = Client(host=local_stack.clickhouse_host, port=local_stack.clickhouse_port)
    try:
        assert client.execute("SELECT 1") == [(1,)]
        ((zone,),) = client.execute("SELECT timezone()")
        assert zone in ("UTC", "Etc/UTC")  # the config's <timezone>; 18.16 may name the alias
    finally:
        client.disconnect()


def test_redis_survives_stop_and_start(local_stack: LocalStack) -> None:
    key = f"cx:test:stack:{uuid.uuid4().hex}"
    client = redis.Redis.from_url(local_stack.redis_url, socket_timeout=2)
    client.set(key, "kept")
    stopped = local_stack.stop("redis")
    assert stopped.stopped
    assert not stopped.killed
    with pytest.raises(redis.ConnectionError):
        client.ping()
    assert not next(
        row for row in manager.status(local_stack.settings) if row.name == "redis"
    ).healthy
    started = local_stack.start("redis")
    assert started.started
    assert started.pid != stopped.pid
    fresh = redis.Redis.from_url(local_stack.redis_url, socket_timeout=2)
    try:
        assert fresh.get(key) == b"kept"  # appendonly + graceful stop: nothing lost
        fresh.delete(key)
    finally:
        fresh.close()
        client.close()


def test_unknown_topic_metadata_is_an_error(local_stack: LocalStack) -> None:
    admin = AdminClient({"bootstrap.servers": local_stack.kafka_bootstrap})
    metadata = admin.list_topics(topic=f"cx.test.none.{uuid.uuid4().hex[:8]}", timeout=10)
    (topic,) = metadata.topics.values()
    assert topic.error is not None
