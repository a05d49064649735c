"""The reused-context zstd decompressor: same bytes as cramjam, used by aiokafka's batches."""

from __future__ import annotations

from typing import Any

import cramjam
import pytest
import zstandard
from aiokafka.record import default_records
from aiokafka.record._crecords import default_records as compiled

from streams.fast_zstd import decompress, install_fast_zstd

ZSTD = 4  # the record batch attribute of zstd
PAYLOAD = b"".join(b"channel_interaction %06d web login " % i * 3 for i in range(400))


@pytest.mark.parametrize("size", [0, 1, 180, 2700, len(PAYLOAD)])
def test_frames_with_and_without_a_content_size(size: int) -> None:
    data = PAYLOAD[:size]
    with_size = bytes(cramjam.zstd.compress(data, level=3))
    without_size = zstandard.ZstdCompressor(write_content_size=False).compress(data)
    assert decompress(with_size) == data
    assert decompress(memoryview(without_size)) == data
    assert decompress(without_size) == bytes(cramjam.zstd.decompress(without_size))


def test_concatenated_frames_are_all_decompressed() -> None:
    compressor = zstandard.ZstdCompressor(write_content_size=False)
    frames = compressor.compress(b"first ") + compressor.compress(b"second")
    assert decompress(frames) == b"first second"


def test_a_truncated_frame_raises() -> None:
    frame = zstandard.ZstdCompressor().compress(PAYLOAD)
    with pytest.raises(zstandard.ZstdError):
        decompress(frame[: len(frame) // 2])


def _zstd_batch(builder_class: Any, count: int) -> bytes:
    builder = builder_class(2, ZSTD, 0, -1, -1, -1, 1 << 20)
    for i in range(count):
        builder.append(i, 1_780_000_000_000 + i, b"C%d" % i, b"value-%d" % i * 20, [])
    return bytes(builder.build())


@pytest.mark.parametrize(
    ("module", "builder_class", "batch_class"),
    [
        (compiled, compiled.DefaultRecordBatchBuilder, compiled.DefaultRecordBatch),
        (
            default_records,
            default_records._DefaultRecordBatchBuilderPy,
            default_records._DefaultRecordBatchPy,
        ),
    ],
    ids=["C", "Python"],
)
def test_aiokafka_batches_decompress_through_it(
    module: Any, builder_class: Any, batch_class: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_fast_zstd()
    assert compiled.zstd_decode is decompress
    assert default_records.zstd_decode is decompress
    calls: list[int] = []

    def counting(payload: bytes) -> bytes:
        calls.append(len(payload))
        return decompress(payload)

    # the implementations look the name up per batch: what install_fast_zstd relies on
    monkeypatch.setattr(module, "zstd_decode", counting)
    batch = batch_class(bytearray(_zstd_batch(builder_class, 50)))
    assert [record.value for record in batch] == [b"value-%d" % i * 20 for i in range(50)]
    assert len(calls) == 1
