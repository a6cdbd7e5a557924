"""A local model is known by its content, not its path: a model retrained into the same directory must never be
served the old model's cached samples (issue 22, item 1).

The identity is a SHA-256 over every file of the directory (weights, config, tokenizer, generation config), by
relative name. Hashing a 15 GB model takes seconds, so a record of what was hashed (each file's size, mtime and
hash) is kept: inside the model (`model_content.json`, written by the training stages, which own `final/`) or
else in the user's cache, keyed by the directory's path. A record is trusted only while every file's size and mtime
still match it; anything else (a new file, a rewrite, a copy that changed the mtimes) hashes the files again. A
copy with the same bytes gets the same identity.

Hub ids and API model names are not local directories: they keep their name as their identity. The bundled aliases
are too: their directory is built from a checksummed file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .models import BUNDLED, cache_root

RECORD = "model_content.json"
_SKIP = {RECORD, "READY"}
_CHUNK = 1 << 22


def model_content(name: str) -> str | None:
    """The content hash of a local model directory; None for anything else (a Hub id, an API model, an alias)."""
    if name in BUNDLED or not os.path.isdir(name):
        return None
    root = Path(name).resolve()
    stats = _stats(root)
    for record in (root / RECORD, _user_record(root)):
        content = _trusted(record, stats)
        if content:
            return content
    hashes = {rel: _sha256(root / rel) for rel in stats}
    content = _combine(hashes)
    _write(_user_record(root), stats, hashes, content)
    return content


def write_record(model_dir: Path) -> str:
    """Hash a model the tool just wrote and keep the record inside it (training stages call this on final/)."""
    stats = _stats(model_dir)
    hashes = {rel: _sha256(model_dir / rel) for rel in stats}
    content = _combine(hashes)
    _write(model_dir / RECORD, stats, hashes, content)
    return content


def _stats(root: Path) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name not in _SKIP:
            st = path.stat()
            out[path.relative_to(root).as_posix()] = [st.st_size, st.st_mtime_ns]
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _combine(hashes: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(sorted(hashes.items())).encode()).hexdigest()


def _user_record(root: Path) -> Path:
    return cache_root() / "model-content" / f"{hashlib.sha256(str(root).encode()).hexdigest()[:32]}.json"


def _trusted(record: Path, stats: dict[str, list[int]]) -> str | None:
    try:
        data = json.loads(record.read_text())
        files = data["files"]
        if {rel: f[:2] for rel, f in files.items()} == stats:
            return str(data["content"])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        pass  # no record, or one from another version of the files: hash again
    return None


def _write(record: Path, stats: dict[str, list[int]], hashes: dict[str, str], content: str) -> None:
    """Atomic, and best effort: a read-only cache costs a rehash next time, never a wrong answer."""
    files = {rel: [*stats[rel], hashes[rel]] for rel in stats}
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_name(f".{record.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"content": content, "files": files}, indent=1))
        os.replace(tmp, record)
    except OSError:
        pass
