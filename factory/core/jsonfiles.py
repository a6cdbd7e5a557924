"""The JSON artifacts the tool writes (manifests, stats, results, state): written atomically through the redaction
function, read back with one error that names the file, where and what (never a traceback)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from .errors import FactoryError
from .redact import redact


def write_json_atomic(path: Path, obj: Any) -> None:
    """Every JSON artifact (manifests, stats, eval results) is written here, through the redaction function."""
    obj = redact(obj)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path, what: str = "file") -> Any:
    """A JSON artifact the tool wrote (manifest, stats, results); a damaged one is one error naming the file,
    where and what, never a traceback."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise FactoryError(f"{path}:{e.lineno}:{e.colno}: the {what} is not valid JSON ({e.msg}): it was damaged "
                           "after it was written; rerun the step that writes it") from None
    except UnicodeDecodeError:
        raise FactoryError(f"{path}: the {what} is not UTF-8 text: rerun the step that writes it") from None
    except OSError as e:
        raise FactoryError(f"{path}: cannot read the {what} ({e.strerror or type(e).__name__})") from None


def read_json_object(path: Path, what: str, needs: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
    """read_json, and the fields a reader uses checked by type."""
    obj = read_json(path, what)
    if not isinstance(obj, dict):
        raise FactoryError(f"{path}: the {what} should be a JSON object, not {type(obj).__name__}")
    for key, kind in needs.items():
        if not isinstance(obj.get(key), kind):
            raise FactoryError(f"{path}: the {what}'s field {key!r} is {type(obj.get(key)).__name__}, not "
                               f"{kind.__name__ if isinstance(kind, type) else ' or '.join(k.__name__ for k in kind)}")
    return obj
