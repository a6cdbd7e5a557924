"""The only Parquet reader/writer. A shard directory is complete only when its manifest.json exists.

Writing goes to a hidden sibling directory; shards are renamed to their final `part-i-of-N` names once N is
known, the manifest is written last, and the directory is swapped into place. A crash at any moment leaves
either the previous complete output or none, never a partial one.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..core.errors import FactoryError, first_line
from ..core.jsonfiles import read_json_object, write_json_atomic
from .records import check_columns, schema_hash

MANIFEST = "manifest.json"


class ShardWriter:
    """Streams rows into Parquet shards of at most `rows_per_shard` rows, a row group at a time (memory stays
    flat in the number of rows); `close()` publishes them atomically."""

    ROW_GROUP = 1024

    def __init__(self, out_dir: Path, schema: pa.Schema, rows_per_shard: int = 10_000, extra: dict | None = None):
        self.out_dir = Path(out_dir)
        self.schema = schema
        self.rows_per_shard = rows_per_shard
        self.extra = extra or {}
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.out_dir.parent, f".{self.out_dir.name}.tmp-")
        self.tmp_dir = self.out_dir.with_name(f".{self.out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        self.tmp_dir.mkdir()
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._rows: list[dict[str, Any]] = []  # Python rows, turned into Arrow a row group at a time
        self._shards: list[tuple[str, int]] = []
        self._writer: pq.ParquetWriter | None = None
        self._in_shard = 0

    def write_rows(self, rows: list[dict[str, Any]]) -> None:
        """Buffers rows: converting a few rows at a time (one prompt's samples) cost more than writing them."""
        self._rows.extend(rows)
        if len(self._rows) >= self.ROW_GROUP:
            self._convert_rows()

    def _convert_rows(self) -> None:
        rows, self._rows = self._rows, []
        self.write_table(pa.Table.from_pylist(rows, schema=self.schema))

    def write_table(self, table: pa.Table) -> None:
        """Appends a table (columns in any order, extra columns dropped); columnar callers skip Python rows."""
        if self._rows:
            self._convert_rows()
        if table.num_rows:
            self._pending.append(table.select(self.schema.names).cast(self.schema))
            self._pending_rows += table.num_rows
        while self._pending_rows >= min(self.ROW_GROUP, self.rows_per_shard - self._in_shard):
            self._flush()

    def _flush(self) -> None:
        if self._writer is None:
            name = f"shard-{len(self._shards):05d}.parquet"
            # zstd level 1: the same size as the default level on trace text, at a third of the CPU.
            self._writer = pq.ParquetWriter(self.tmp_dir / name, self.schema, compression="zstd",
                                            compression_level=1)
            self._shards.append((name, 0))
        pending = pa.concat_tables(self._pending) if self._pending else self.schema.empty_table()
        take = min(pending.num_rows, self.ROW_GROUP, self.rows_per_shard - self._in_shard)
        self._writer.write_table(pending.slice(0, take))
        rest = pending.slice(take)
        self._pending, self._pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
        self._in_shard += take
        self._shards[-1] = (self._shards[-1][0], self._in_shard)
        if self._in_shard >= self.rows_per_shard:
            self._close_shard()

    def _close_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer, self._in_shard = None, 0

    def close(self) -> dict[str, Any]:
        if self._rows:
            self._convert_rows()
        while self._pending_rows or not self._shards:
            self._flush()
        self._close_shard()
        total = len(self._shards)
        files = []
        for i, (name, rows) in enumerate(self._shards):
            final = f"part-{i:05d}-of-{total:05d}.parquet"
            os.replace(self.tmp_dir / name, self.tmp_dir / final)
            files.append({"file": final, "rows": rows})
        manifest = {
            "files": files,
            "rows": sum(f["rows"] for f in files),
            "schema_hash": schema_hash(self.schema),
            "columns": self.schema.names,
            **self.extra,
        }
        write_json_atomic(self.tmp_dir / MANIFEST, manifest)
        swap_into_place(self.tmp_dir, self.out_dir)
        return manifest

    def abort(self) -> None:
        self._close_shard()
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc: BaseException | None, *_: Any) -> None:
        if exc_type is None:
            return
        self.abort()
        if isinstance(exc, (OSError, pa.ArrowException)):  # disk full, a file-size limit, a vanished directory
            raise FactoryError(f"{self.out_dir}: cannot write the shards ({_os_reason(exc)}): nothing was published "
                               "and earlier output is untouched; free space (or raise the limit) and rerun") from None


def _os_reason(e: BaseException) -> str:
    return e.strerror if isinstance(e, OSError) and e.strerror else first_line(e)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(parent: Path, prefix: str) -> list[Path]:
    """Removes `PREFIX<pid>-*` temporary dirs whose writer is provably dead (its pid no longer runs), as left
    by a kill -9; a live writer's, or one without a pid in its name, is never touched."""
    removed = []
    for path in Path(parent).glob(f"{prefix}*") if Path(parent).is_dir() else ():
        pid = path.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def swap_into_place(tmp_dir: Path, out_dir: Path) -> None:
    """Replace `out_dir` by `tmp_dir` (two renames: a crash between them leaves no out_dir, never a mixed one)."""
    remove_stale_temps(out_dir.parent, f".{out_dir.name}.old-")
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp_dir, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def write_shards(out_dir: Path, rows: list[dict[str, Any]], schema: pa.Schema, rows_per_shard: int = 10_000,
                 extra: dict | None = None) -> dict[str, Any]:
    with ShardWriter(out_dir, schema, rows_per_shard, extra) as writer:
        writer.write_rows(rows)
        return writer.close()


def shard_files(shard_dir: Path) -> list[str]:
    """The Parquet files a finished shard directory holds, as its manifest lists them (for readers that scan them
    whole: polars, datasets)."""
    return [str(Path(shard_dir) / f["file"]) for f in read_manifest(shard_dir)["files"]]


def read_manifest(shard_dir: Path) -> dict[str, Any]:
    path = Path(shard_dir) / MANIFEST
    if not path.exists():
        raise FactoryError(f"{shard_dir}: no {MANIFEST} (the shards are missing or were never finished)")
    manifest = read_json_object(path, "shards' manifest", {"files": list, "rows": int})
    for i, entry in enumerate(manifest["files"]):
        name = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(name, str) or Path(name).name != name or not isinstance(entry.get("rows"), int):
            raise FactoryError(f"{path}: files[{i}] should be {{\"file\": NAME, \"rows\": N}} with NAME a file in "
                               f"{Path(shard_dir).name}/, not {json.dumps(entry)[:100]}")
    return manifest


def _unreadable(path: Path, e: BaseException) -> FactoryError:
    return FactoryError(f"{path}: not a readable Parquet shard ({first_line(e)}): it was damaged after it was written; "
                        "rerun the step that wrote it")


def _open_shards(shard_dir: Path, required: pa.Schema | None) -> Iterator[tuple[Path, pq.ParquetFile]]:
    for entry in read_manifest(shard_dir)["files"]:
        path = Path(shard_dir) / entry["file"]
        if not path.exists():
            raise FactoryError(f"{path}: listed in {MANIFEST} but missing")
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as e:
            raise _unreadable(path, e) from None
        if pf.metadata.num_rows != entry["rows"]:
            raise FactoryError(f"{path}: holds {pf.metadata.num_rows} rows where {MANIFEST} lists {entry['rows']}: "
                               "the shard was replaced after it was written; rerun the step that wrote it")
        if required is not None:
            check_columns(pf.schema_arrow, required, str(path))
        yield path, pf


def check_shards(shard_dir: Path, required: pa.Schema | None = None) -> int:
    """Opens every shard's footer (no data read): the manifest, the files and their row counts agree, or one
    FactoryError names what does not. Returns the rows."""
    return sum(pf.metadata.num_rows for _, pf in _open_shards(shard_dir, required))


def iter_shards(shard_dir: Path, required: pa.Schema | None = None, columns: list[str] | None = None
                ) -> Iterator[pa.Table]:
    """Yields one table per shard, checked against `required` (by column name and type)."""
    for path, pf in _open_shards(shard_dir, required):
        try:
            table = pf.read(columns=columns)
        except (pa.ArrowException, OSError) as e:
            raise _unreadable(path, e) from None
        yield table


def iter_batches(shard_dir: Path, required: pa.Schema | None = None, columns: list[str] | None = None,
                 batch_rows: int = 1024) -> Iterator[pa.RecordBatch]:
    """Streams record batches of at most `batch_rows` rows: memory stays flat whatever the shard size."""
    for path, pf in _open_shards(shard_dir, required):
        batches = pf.iter_batches(batch_size=batch_rows, columns=columns)
        while True:
            try:
                batch = next(batches, None)
            except (pa.ArrowException, OSError) as e:
                raise _unreadable(path, e) from None
            if batch is None:
                break
            yield batch


def read_table(shard_dir: Path, required: pa.Schema | None = None) -> pa.Table:
    tables = list(iter_shards(shard_dir, required))
    return pa.concat_tables(tables) if tables else pa.table({})
