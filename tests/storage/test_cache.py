from pathlib import Path

import orjson
import pytest

from factory.core.errors import FactoryError
from factory.storage.cache import COMPACT_AFTER, SampleCache, sample_key


def test_put_get_survives_reopen(tmp_path):
    with SampleCache(tmp_path) as c:
        c.put("k1", {"text": "a"})
        c.put("k2", {"text": "ü"})
    with SampleCache(tmp_path) as c:
        assert len(c) == 2 and c.get("k2") == {"text": "ü"} and "k1" in c and c.get("nope") is None


def test_torn_final_write_is_ignored(tmp_path):
    with SampleCache(tmp_path) as c:
        c.put("good", {"text": "a"})
    seg = next(tmp_path.glob("seg-*.log"))
    with open(seg, "ab") as f:
        f.write(b'torn\t{"text": "hal')  # the process died mid-line
    with SampleCache(tmp_path) as c:
        assert "good" in c and "torn" not in c and len(c) == 1
        c.put("after", {"text": "b"})
    with SampleCache(tmp_path) as c:
        assert c.get("after") == {"text": "b"}


def test_second_writer_is_refused(tmp_path):
    with SampleCache(tmp_path):
        with pytest.raises(FactoryError, match="another factory process"):
            SampleCache(tmp_path)


def test_many_segments_are_compacted(tmp_path):
    for i in range(COMPACT_AFTER + 2):
        with SampleCache(tmp_path) as c:
            c.put(f"k{i}", {"i": i})
    with SampleCache(tmp_path) as c:
        assert len(list(tmp_path.glob("seg-*.log"))) <= 3  # merged + the last run's + this one
        assert [c.get(f"k{i}")["i"] for i in range(COMPACT_AFTER + 2)] == list(range(COMPACT_AFTER + 2))


def test_key_is_order_insensitive_and_value_sensitive():
    assert sample_key({"a": 1, "b": 2}) == sample_key({"b": 2, "a": 1}) != sample_key({"a": 1, "b": 3})


def test_segment_writer_lines_are_readable_where_put_says(tmp_path):
    from factory.storage.cache import SegmentWriter

    writer = SegmentWriter(tmp_path / "seg-1.log")
    spots = [writer.put(f"k{i}", {"text": "x" * (i * 1000)}) for i in range(50)]
    writer.sync()  # everything queued is on disk for another reader
    data = (tmp_path / "seg-1.log").read_bytes()
    for i, (offset, length) in enumerate(spots):
        assert data[offset : offset + length] == f"k{i}\t".encode() + orjson.dumps({"text": "x" * (i * 1000)}) + b"\n"
    writer.close()
    with SampleCache(tmp_path, ("text",)) as cache:
        assert len(cache) == 50


def test_segment_writer_reports_a_failed_write_naming_the_file(tmp_path):
    from factory.storage.cache import SegmentWriter

    writer = SegmentWriter(Path("/dev/full"))  # every write fails with ENOSPC
    writer.put("k", {"text": "x" * 100_000})
    with pytest.raises(FactoryError, match=r"/dev/full: cannot write the cache: .*No space left"):
        writer.close()
    assert Path("/dev/full").exists()
