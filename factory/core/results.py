"""The base of every stage's typed result: what `run` returns, what the run directory writes and reads back."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import FactoryError
from .jsonfiles import read_json

R = TypeVar("R", bound="StageResult")


class StageResult(BaseModel):
    """A stage's result. `SUMMARY` names the fields a pipeline keeps in its state file, `describe` turns that
    summary into one line of the pipeline's table (a skipped stage has its summary, not its result). Fields left
    None are not written."""

    model_config = ConfigDict(extra="forbid")
    SUMMARY: ClassVar[tuple[str, ...]] = ()

    def summary(self) -> dict[str, Any]:
        return self.model_dump(mode="json", include=set(self.SUMMARY) or None)

    @classmethod
    def describe(cls, summary: dict[str, Any]) -> str:
        return ", ".join(f"{k} {v}" for k, v in summary.items())

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def read(cls: type[R], path: Path, what: str) -> R:
        """The result a stage wrote to `path`; a damaged or foreign file is one line naming it."""
        if not Path(path).exists():
            raise FactoryError(f"{path}: no {what} (has the stage run?)")
        try:
            return cls.model_validate(read_json(path, what))
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "(top level)"
            raise FactoryError(f"{path}: the {what}'s field {field!r}: {err['msg']}") from None
