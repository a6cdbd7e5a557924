"""Content-addressed per-sample store: resume after any crash, top up n, never pay twice for a sample.

Each process appends to its own segment file `seg-*.log`, one line per finished sample: `KEY<TAB>JSON\\n`,
flushed at once (so `kill -9` loses nothing the OS received) and fsynced at most once a second. A torn last
line, from a crash mid-write, has no newline and is ignored on open. Reads go through an index of
(segment, offset, length), so a run's cache is never held in memory.

Hand-written: the alternatives (sqlite, diskcache) add a lock per write and a file format of their own, and
neither is simpler than an append-only log for a write-once, read-at-end workload.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from .errors import FactoryError

COMPACT_AFTER = 16  # segments; merged into one on open so resumes don't accumulate files


def sample_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


class SampleCache:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.root / "LOCK", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FactoryError(f"{self.root}: another process is writing this run's cache") from None
        self.index: dict[str, tuple[Path, int, int]] = {}
        self._readers: dict[Path, Any] = {}
        self._path = None
        segments = sorted(self.root.glob("seg-*.log"))
        for seg in segments:
            self._scan(seg)
        if len(segments) > COMPACT_AFTER:
            self._compact(segments)
        self._path = self.root / f"seg-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}.log"
        self._out = open(self._path, "ab")
        self._synced = time.monotonic()

    def _scan(self, seg: Path) -> None:
        offset = 0
        with open(seg, "rb") as f:
            for line in f:
                if line.endswith(b"\n") and b"\t" in line:  # a line without newline is a torn final write
                    key = line[: line.index(b"\t")].decode()
                    self.index[key] = (seg, offset, len(line))
                offset += len(line)

    def _compact(self, segments: list[Path]) -> None:
        merged = self.root / f"seg-00000000000000-{uuid.uuid4().hex[:8]}.log"
        tmp = merged.with_suffix(".tmp")
        new_index = {}
        with open(tmp, "wb") as out:
            for key in list(self.index):
                line = self._read_line(key)
                new_index[key] = (merged, out.tell(), len(line))
                out.write(line)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, merged)
        self.index = new_index
        for handle in self._readers.values():
            handle.close()
        self._readers.clear()
        for seg in segments:
            seg.unlink()

    def __contains__(self, key: str) -> bool:
        return key in self.index

    def __len__(self) -> int:
        return len(self.index)

    def put(self, key: str, value: dict[str, Any]) -> None:
        line = key.encode() + b"\t" + orjson.dumps(value, default=str) + b"\n"
        offset = self._out.tell()
        self._out.write(line)
        self._out.flush()
        if time.monotonic() - self._synced > 1.0:
            os.fsync(self._out.fileno())
            self._synced = time.monotonic()
        self.index[key] = (self._path, offset, len(line))

    def _read_line(self, key: str) -> bytes:
        path, offset, length = self.index[key]
        if path == self._path:
            self._out.flush()
        handle = self._readers.get(path)
        if handle is None:
            handle = self._readers[path] = open(path, "rb")
        handle.seek(offset)
        return handle.read(length)

    def get(self, key: str) -> dict[str, Any] | None:
        if key not in self.index:
            return None
        line = self._read_line(key)
        try:
            return orjson.loads(line[line.index(b"\t") + 1 :])
        except (orjson.JSONDecodeError, ValueError):
            return None  # a damaged entry is regenerated, not trusted

    def close(self) -> None:
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()
        for handle in self._readers.values():
            handle.close()
        if self._path.stat().st_size == 0:
            self._path.unlink()
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()

    def __enter__(self) -> SampleCache:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()
