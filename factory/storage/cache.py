"""Content-addressed per-sample store: resume after any crash, top up n, never pay twice for a sample.

Each process appends to its own segment file `seg-*.log`, one line per finished sample: `KEY<TAB>JSON\\n`,
written by a thread of its own as soon as it is queued (so `kill -9` loses only what was queued in the last
milliseconds) and fsynced at most once a second. A torn last
line, from a crash mid-write, has no newline and is ignored on open. Reads go through an index of
(segment, offset, length), so a run's cache is never held in memory.

Hand-written: the alternatives (sqlite, diskcache) add a lock per write and a file format of their own, and
neither is simpler than an append-only log for a write-once, read-at-end workload.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import queue
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from ..core.errors import FactoryError
from ..core.redact import redact

COMPACT_AFTER = 16  # segments; merged into one on open so resumes don't accumulate files


def sample_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


class SampleCache:
    def __init__(self, root: Path, required: tuple[str, ...] = ()):
        """`required`: fields an entry must have to count as valid; one without them is bought again."""
        self.root = Path(root)
        self.required = required
        self._lock = _take_lock(self.root)
        self.index: dict[str, tuple[Path, int, int]] = {}
        self.damaged: list[str] = []
        self._readers: dict[Path, Any] = {}
        self._path = None
        segments = sorted(self.root.glob("seg-*.log"))
        self._scanned = set(segments)
        for seg in segments:
            self._scan(seg)
        if self.damaged:
            _warn(f"{self.root}: {len(self.damaged)} damaged cache entries skipped; they are generated again "
                  f"(first: {self.damaged[0]})")
        if len(segments) > COMPACT_AFTER or self.damaged:  # compaction also drops the damaged lines for good
            self._compact(segments)
        self._out = SegmentWriter(new_segment(self.root))
        self._path = self._out.path

    def _scan(self, seg: Path) -> None:
        """Indexes the valid entries; a torn final line (no newline, from a crash mid-write) is ignored and a
        damaged one (bad key, bad JSON, missing field) is left out, so that the sample is bought again."""
        offset = 0
        with open(seg, "rb") as f:
            for lineno, line in enumerate(f, 1):
                if line.endswith(b"\n"):
                    key = self._valid_key(line)
                    if key is not None:
                        self.index[key] = (seg, offset, len(line))
                    else:
                        self.damaged.append(f"{seg.name}:{lineno}")
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
        self._scanned.add(merged)
        self.index = new_index
        for handle in self._readers.values():
            handle.close()
        self._readers.clear()
        for seg in segments:
            seg.unlink()

    def refresh(self) -> int:
        """Indexes the segments other writers added since (a cluster's actors, under this cache's lock);
        returns how many entries that added."""
        before = len(self.index)
        for seg in sorted(self.root.glob("seg-*.log")):
            if seg not in self._scanned and seg != self._path:
                self._scanned.add(seg)
                self._scan(seg)
        return len(self.index) - before

    def __contains__(self, key: str) -> bool:
        return key in self.index

    def __len__(self) -> int:
        return len(self.index)

    def put(self, key: str, value: dict[str, Any]) -> None:
        offset, length = self._out.put(key, value)
        self.index[key] = (self._path, offset, length)

    def _read_line(self, key: str) -> bytes:
        path, offset, length = self.index[key]
        if path == self._path:
            self._out.sync()
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
            value = orjson.loads(line[line.index(b"\t") + 1 :])
        except (orjson.JSONDecodeError, ValueError):
            value = None
        if not self._valid_value(value):  # damaged after it was indexed: drop it so that a rerun buys it again
            del self.index[key]
            return None
        return value

    def close(self) -> None:
        self._out.close()
        for handle in self._readers.values():
            handle.close()
        self._lock.truncate(0)  # a clean exit leaves no pid: a pid found later means its holder was killed
        self._lock.close()  # closing the descriptor releases the lock

    def _valid_key(self, line: bytes) -> str | None:
        tab = line.find(b"\t")
        try:
            key = line[:tab].decode("utf-8")
            return key if tab > 0 and self._valid_value(orjson.loads(line[tab + 1 :])) else None
        except (UnicodeDecodeError, ValueError):
            return None

    def _valid_value(self, value: Any) -> bool:
        return isinstance(value, dict) and all(k in value for k in self.required)

    def __enter__(self) -> SampleCache:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def new_segment(root: Path) -> Path:
    return Path(root) / f"seg-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}.log"


class SegmentWriter:
    """Appends `KEY<TAB>JSON` lines to one segment from a thread of its own. Measured in
    bench/generate_client.py: a 24 KB write per sample on the event loop's thread cost ~50 us, as much as the
    request itself; queued, it overlaps the requests. A segment has one writer, so no lock is taken: the cache's
    LOCK (or, on a cluster, the driver's) says who may write the run."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file = open(self.path, "ab")
        self._size = self._file.tell()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._order = threading.Lock()  # offsets and queue order must agree when several threads put
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name=f"cache-writer-{self.path.name}", daemon=True)
        self._thread.start()

    def put(self, key: str, value: dict[str, Any]) -> tuple[int, int]:
        """Queues the line; returns where it will be (offset, length)."""
        if self._error is not None:
            raise FactoryError(f"{self.path}: cannot write the cache: {self._error}")
        line = key.encode() + b"\t" + orjson.dumps(value, default=str) + b"\n"
        with self._order:
            offset, self._size = self._size, self._size + len(line)
            self._queue.put(line)
        return offset, len(line)

    def sync(self) -> None:
        """Returns once every queued line is written (and readable through another handle)."""
        done = threading.Event()
        self._queue.put(done)
        while not done.wait(0.1):
            if not self._thread.is_alive():
                break
        if self._error is not None:
            raise FactoryError(f"{self.path}: cannot write the cache: {self._error}")

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._file.close()
        if self.path.is_file() and self.path.stat().st_size == 0:
            self.path.unlink()
        if self._error is not None:
            raise FactoryError(f"{self.path}: cannot write the cache: {self._error}")

    def _drain(self) -> None:
        synced = time.monotonic()
        while True:
            item, batch, size = self._queue.get(), [], 0
            while isinstance(item, bytes):  # gather what is queued (up to 4 MB) into one write
                batch.append(item)
                size += len(item)
                try:
                    item = self._queue.get_nowait() if size < 4 << 20 else "more"
                except queue.Empty:
                    item = "idle"
            try:
                if batch and self._error is None:
                    self._file.write(b"".join(batch))
                    self._file.flush()
                if item is None or time.monotonic() - synced > 1.0:
                    os.fsync(self._file.fileno())
                    synced = time.monotonic()
            except OSError as e:
                self._error = e
            if isinstance(item, threading.Event):
                item.set()
            elif item is None:
                return


def _warn(message: str) -> None:
    from ..core.redact import redact_text

    sys.stderr.write(f"warning: {redact_text(message)}\n")


def _take_lock(root: Path):
    """One writer per cache: an flock on root/LOCK, which the kernel releases when its holder dies however it
    dies; the holder's pid is written in it to name it in the refusal, and to say when a dead one's is taken."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = open(root / "LOCK", "a+")
    except OSError as e:
        raise FactoryError(f"{root}: cannot create the run's cache: {e.strerror or e}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise FactoryError(f"{root.parent}: another factory process{who} is writing this run; wait for it to "
                           "finish or stop it, then rerun") from None
    handle.seek(0)
    previous = handle.read().strip()
    if previous.isdigit() and int(previous) != os.getpid():
        _warn(f"{root}: taking over the lock left by pid {previous}, which stopped without releasing it")
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def cache_record(same: dict[str, Any], c: Any) -> dict[str, Any]:
    """What the cache keeps of a finished sample (a teachers.Completion), with what is the same for every sample."""
    return {"text": c.text, "reasoning_content": c.reasoning_content, "finish_reason": c.finish_reason,
            "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens, "latency_s": c.latency_s,
            **({"billed": c.billed} if c.billed else {}), **same,
            "created_at": datetime.now(timezone.utc).isoformat()}


@functools.lru_cache(maxsize=64)
def _redacted_json(raw: bytes) -> str:
    return json.dumps(redact(orjson.loads(raw)))


def sampling_column(sampling: dict[str, Any]) -> str:
    """The trace's `sampling` column: redacted JSON, computed once per distinct setting rather than once per
    sample (redaction walks the environment for secrets, which cost more than the rest of the sample's work)."""
    return _redacted_json(orjson.dumps(sampling))
