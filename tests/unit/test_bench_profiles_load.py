"""The latency load of ``bench profiles``: encoded events, probes of fresh customers."""

from __future__ import annotations

from cxstream.bench.profiles import _latency_load, _simulated, _Span
from cxstream.settings import Settings
from streams.codec import build_codec


def test_probes_are_first_events_of_fresh_customers_and_the_first_send_is_none() -> None:
    settings = Settings()
    codec = build_codec(settings)
    load = _latency_load(settings, 100, 20, None)
    assert len(load) == 101
    assert load[0][4] is None  # the warm-up send
    probes = [send for send in load if send[4] is not None]
    assert [p[4] for p in probes] == [f"PROBE{i:09d}" for i in (20, 40, 60, 80, 100)]
    for topic, value, key, event_id, probe in probes:
        decoded = codec.decode(value)
        assert topic == settings.topic("channel_interaction")
        assert decoded.name == "channel_interaction"
        assert decoded.record["customer_id"] == probe == key
        assert str(decoded.record["event_id"]) == event_id
    assert len({send[3] for send in load}) == 101  # every event id fresh


def test_the_mixed_load_cycles_the_stream_to_each_event_type_s_topic() -> None:
    settings = Settings()
    codec = build_codec(settings)
    stream = _simulated(80_000)[-1000:]  # past the start-up registrations and holdings
    load = _latency_load(settings, 1000, 20, stream)
    names = set()
    for i, (topic, value, _key, _event_id, probe) in enumerate(load):
        decoded = codec.decode(value)
        assert topic == settings.topic(decoded.name)
        if probe is None:
            assert decoded.name == stream[i % len(stream)][0]
            names.add(decoded.name)
    assert len(names) > 3  # not only channel interactions


def test_a_span_reports_rate_and_cpu_per_event() -> None:
    figures = _Span((10.0, 1000, 5.0), (12.0, 51_000, 6.5)).figures("w")
    assert figures == {
        "w_events_per_s": 25_000,
        "w_cpu_us_per_event": 30.0,
        "w_events_per_cpu_s": 33_333,
    }


def test_a_stream_without_interactions_still_gets_probes() -> None:
    settings = Settings()
    stream = [(name, record) for name, record in _simulated(5000) if name != "channel_interaction"]
    load = _latency_load(settings, 40, 20, stream)
    assert [send[4] for send in load if send[4]] == ["PROBE000000020", "PROBE000000040"]


def test_delays_are_grouped_by_the_window_their_probe_was_sent_in() -> None:
    from cxstream.bench.profiles import _WINDOW_S, _by_window

    start = 1000.0
    windows = _by_window(
        {start: 0.1, start + 0.5: 0.2, start + _WINDOW_S * 2 + 0.1: 0.9, start + _WINDOW_S: 0.3}
    )
    assert windows == [[0.1, 0.2], [0.3], [0.9]]
    assert _by_window({}) == []
