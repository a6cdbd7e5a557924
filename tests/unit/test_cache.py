import pytest

from factory.cache import COMPACT_AFTER, SampleCache, sample_key
from factory.errors import FactoryError


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
