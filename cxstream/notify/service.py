"""The notifier: consume alerts and security flags, deliver to on-call, commit after delivery.

At-least-once with idempotent effects: offsets are committed only after every message of a
batch was delivered, suppressed by an acknowledgement, or dead-lettered (and its rotation's
fallback tried). A restart re-reads the uncommitted tail; the delivery log skips keys already
delivered, and the rest go out with the same idempotency key (``webhook-id``), so a receiver that
dedupes on it sees each alert once. The on-call member is the one on call at the alert's
``fired_at``, so a replay picks the same person and key.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from cxstream.errors import CxStreamError, ServiceError
from cxstream.notify.channels import Channel, Delivery, delivery_key
from cxstream.notify.delivery_log import DeliveryLog
from cxstream.notify.errors import DeliveryError, RoutingError
from cxstream.notify.notification import ESCALATIONS, Notification, from_event, level_rank
from cxstream.notify.retry import RetryPolicy, with_retry
from cxstream.notify.routing import Router
from cxstream.settings import NotifySettings, Settings

log = logging.getLogger(__name__)

#: the event types the notifier consumes
SOURCES: tuple[str, ...] = ("alert", "security_flag")

#: called when a delivery failed for good, before the fallback; the service dead-letters there
OnDead = Callable[[Delivery, CxStreamError], Awaitable[None]]


class Notifier:
    """Routing, idempotency, retries, dead-letter and fallback for one notification (no Kafka)."""

    def __init__(
        self,
        config: NotifySettings,
        delivery_log: DeliveryLog,
        channels: Mapping[str, Channel],
        *,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.config = config
        self.log = delivery_log
        self.channels = dict(channels)
        self.router = Router(config)
        self.policy = policy or RetryPolicy.from_settings(config)
        self.counts: Counter[str] = Counter()
        # a key being delivered right now: a duplicate in the same batch waits for it instead
        # of racing it past the delivery log (which only knows finished deliveries)
        self._inflight: dict[str, asyncio.Future[DeliveryError | None]] = {}

    def deliveries(self, n: Notification) -> list[Delivery]:
        """The (recipient, channel) deliveries of ``n``: its rotation's member on call then."""
        rotation = self.router.rotation_for(n)
        member = rotation.on_call(n.fired_at)
        out = []
        for channel in rotation.config.channels:
            address = {
                "webhook": member.webhook_url,
                "chat": member.chat_url,
                "email": member.email,
            }[channel]
            if address is None:
                log.warning(
                    "notify: %s of rotation %s has no %s address; skipped",
                    member.name,
                    rotation.name,
                    channel,
                )
                continue
            out.append(
                Delivery(delivery_key(n.alert_id, member.name, channel), n, member.name, address)
            )
        return out

    def suppressed(self, n: Notification) -> bool:
        """An escalation above a level that on-call already acknowledged is not sent."""
        if n.level not in ESCALATIONS:
            return False
        ack = self.log.ack_of(n.subject_key)
        return ack is not None and level_rank(n.level) > ack.level_rank

    async def deliver(self, n: Notification, on_dead: OnDead) -> None:
        self.log.remember(n)
        if self.suppressed(n):
            self.log.finish(delivery_key(n.alert_id, "*", "*"), n.alert_id, "suppressed")
            self.counts["suppressed"] += 1
            return
        try:
            planned = self.deliveries(n)
        except RoutingError as exc:
            self.counts["unroutable"] += 1
            await on_dead(Delivery(delivery_key(n.alert_id, "*", "route"), n, "*", ""), exc)
            return
        if not planned:
            missing = RoutingError(
                f"notify: alert {n.alert_id}: the member on call has no address "
                "for any channel of the rotation"
            )
            await self._fail(
                n, Delivery(delivery_key(n.alert_id, "*", "none"), n, "*", ""), missing, on_dead
            )
            return
        await asyncio.gather(*(self._one(d, on_dead) for d in planned))

    async def _one(self, delivery: Delivery, on_dead: OnDead) -> None:
        channel = delivery.key.rsplit("/", 1)[1]
        error = await self._attempt(delivery, channel)
        if error is None:
            return
        await self._fail(delivery.notification, delivery, error, on_dead)

    async def _attempt(self, delivery: Delivery, channel_name: str) -> DeliveryError | None:
        running = self._inflight.get(delivery.key)
        if running is not None:
            self.counts["already_done"] += 1
            await asyncio.shield(running)
            return None  # the first copy dead-letters and falls back if it failed
        future: asyncio.Future[DeliveryError | None] = asyncio.get_running_loop().create_future()
        self._inflight[delivery.key] = future
        try:
            result = await self._attempt_once(delivery, channel_name)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._inflight[delivery.key]

    async def _attempt_once(self, delivery: Delivery, channel_name: str) -> DeliveryError | None:
        if self.log.state(delivery.key) is not None:
            self.counts["already_done"] += 1  # delivered before a crash or rebalance
            return None
        channel = self.channels.get(channel_name)
        if channel is None:
            return DeliveryError(
                f"notify: channel {channel_name} is not configured", retryable=False
            )
        n = delivery.notification

        def record(attempt: int, error: DeliveryError | None) -> None:
            self.counts["attempts"] += 1
            self.log.record_attempt(
                delivery.key,
                n.alert_id,
                channel_name,
                delivery.recipient,
                attempt,
                ok=error is None,
                status=None if error is None else error.status,
                error=None if error is None else str(error)[:500],
            )

        error = await with_retry(self.policy, lambda: channel.send(delivery), record)
        if error is None:
            self.log.finish(delivery.key, n.alert_id, "delivered")
            self.counts["delivered"] += 1
        return error

    async def _fail(
        self, n: Notification, delivery: Delivery, error: CxStreamError, on_dead: OnDead
    ) -> None:
        # dead-letter first: if the fallback also fails, the alert is still kept for replay
        await on_dead(delivery, error)
        self.counts["dead_lettered"] += 1
        try:
            rotation = self.router.rotation_for(n)
        except RoutingError:
            rotation = None
        fallback = rotation.config.fallback if rotation is not None else None
        if fallback is not None and rotation is not None:
            spare = Delivery(
                delivery_key(n.alert_id, f"{rotation.name}.fallback", fallback.channel),
                n,
                f"{rotation.name}.fallback",
                fallback.address,
            )
            fallback_error = await self._attempt(spare, fallback.channel)
            self.counts["fallback_ok" if fallback_error is None else "fallback_failed"] += 1
            if fallback_error is not None:
                log.error(
                    "notify: alert %s: fallback %s failed too: %s",
                    n.alert_id,
                    fallback.channel,
                    fallback_error,
                )
        self.log.finish(delivery.key, n.alert_id, "dead")


def build_channels(settings: Settings, session: Any) -> dict[str, Channel]:
    """The channels the configured rotations use (the webhook channel needs secrets)."""
    from cxstream.notify.channels.chat import ChatChannel
    from cxstream.notify.channels.email import EmailChannel
    from cxstream.notify.channels.webhook import WebhookChannel

    config = settings.notify
    wanted = {c for r in config.rotations for c in r.channels}
    wanted |= {r.fallback.channel for r in config.rotations if r.fallback is not None}
    channels: dict[str, Channel] = {}
    if "webhook" in wanted:
        channels["webhook"] = WebhookChannel(
            session,
            [s.get_secret_value() for s in config.webhook_secrets],
            timeout=config.timeout_seconds,
        )
    if "chat" in wanted:
        channels["chat"] = ChatChannel(
            session, style=config.chat_format, timeout=config.timeout_seconds
        )
    if "email" in wanted:
        channels["email"] = EmailChannel(config)
    return channels


class NotifierService:
    """confluent-kafka consumer of the alert and security-flag topics around a :class:`Notifier`."""

    def __init__(self, settings: Settings, *, consumer_config: Mapping[str, Any] | None = None):
        self.settings = settings
        self.config = settings.notify
        self._consumer_config = dict(consumer_config or {})
        self.notifier: Notifier | None = None
        self.topics = [settings.topic(name) for name in SOURCES]

    def consumer_settings(self) -> dict[str, Any]:
        from streams.kafka_config import confluent_config

        return confluent_config(
            self.settings,
            **{
                "group.id": self.config.group_id,
                **(
                    {"group.instance.id": self.config.instance_id}
                    if self.config.instance_id
                    else {}
                ),
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                **self._consumer_config,
            },
        )

    async def run(self, stop: asyncio.Event, *, ready: asyncio.Event | None = None) -> None:
        import aiohttp
        from confluent_kafka import Consumer, Producer

        from cxstream.notify.ack import start_ack_api
        from streams.codec import build_codec
        from streams.kafka_config import confluent_config

        codec = build_codec(self.settings)
        delivery_log = DeliveryLog(self.config.delivery_log_path)
        consumer = Consumer(self.consumer_settings(), logger=log)
        producer = Producer(confluent_config(self.settings, **{"enable.idempotence": True}))
        connector = aiohttp.TCPConnector(limit=self.config.concurrency)
        session = aiohttp.ClientSession(connector=connector)
        ack_runner = None
        try:
            self.notifier = Notifier(
                self.config, delivery_log, build_channels(self.settings, session)
            )
            if self.config.ack_api_key is not None:
                ack_runner = await start_ack_api(self.settings, delivery_log, self.notifier)
            if not self.config.routes:
                log.warning("notify: notify.routes is empty: every alert will be dead-lettered")
            consumer.subscribe(self.topics)
            loop = asyncio.get_running_loop()
            if ready is not None:
                ready.set()
            while not stop.is_set():
                messages = await loop.run_in_executor(
                    None, consumer.consume, self.config.batch_max, 0.2
                )
                if messages:
                    await self._handle(messages, codec, producer, consumer)
        finally:
            if ack_runner is not None:
                await ack_runner.cleanup()
            await session.close()
            consumer.close()
            producer.flush(10)
            delivery_log.close()

    async def _handle(
        self, messages: Sequence[Any], codec: Any, producer: Any, consumer: Any
    ) -> None:
        from confluent_kafka import KafkaError, TopicPartition

        from cxstream.errors import DecodeError
        from streams.dlq import SourceMessage, build_dead_letter

        assert self.notifier is not None
        notifier = self.notifier
        dlq_topic = self.settings.topic("dlq")
        failed: list[str] = []

        def dead_letter(message: Any, error: Exception, step: str) -> None:
            letter = build_dead_letter(
                dlq_topic, SourceMessage.from_confluent(message), error, step=step
            )

            def on_report(err: Any, _msg: Any) -> None:
                if err is not None:
                    failed.append(str(err))

            producer.produce(
                letter.topic,
                letter.value,
                letter.key,
                headers=letter.headers,
                on_delivery=on_report,
            )
            producer.poll(0)

        semaphore = asyncio.Semaphore(self.config.concurrency)
        tasks = []
        ends: dict[tuple[str, int], int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise ServiceError(f"notify: Kafka consumer failed: {error}")
                continue
            ends[(message.topic(), message.partition())] = message.offset() + 1
            try:
                decoded = codec.decode(message.value())
                notification = from_event(decoded.name, decoded.record, self.settings)
            except (DecodeError, ValueError, KeyError) as exc:
                dead_letter(message, exc, "notify.decode")
                continue

            async def on_dead(
                delivery: Delivery, exc: CxStreamError, message: Any = message
            ) -> None:
                dead_letter(message, exc, f"notify.{delivery.key.rsplit('/', 1)[1]}")

            async def run_one(n: Notification, on_dead: OnDead = on_dead) -> None:
                async with semaphore:
                    await notifier.deliver(n, on_dead)

            tasks.append(run_one(notification))
        await asyncio.gather(*tasks)
        remaining = await asyncio.get_running_loop().run_in_executor(None, producer.flush, 30)
        if remaining or failed:
            raise ServiceError(
                f"notify: dead letters not acknowledged by Kafka ({remaining} "
                f"pending, errors: {failed[:3]}); offsets not committed"
            )
        if ends:
            offsets = [TopicPartition(t, p, o) for (t, p), o in ends.items()]
            consumer.commit(offsets=offsets, asynchronous=False)


def serve(settings: Settings) -> None:
    """Run the notifier until SIGINT/SIGTERM (``cxstream notify serve``)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await NotifierService(settings).run(stop)

    asyncio.run(main())
