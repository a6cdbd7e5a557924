"""LiveCodeBench's code-generation set (the one R1 reports) as code Prompts our sandbox scores.

A row carries its public tests as JSON and its private tests compressed (base64 of zlib of a pickled JSON string).
The pickle is read by an unpickler that refuses every class: test cases are data, and a pickle that names a
function (the way a pickle runs code) is an error, not a call. Two kinds of test: `stdin` (a program reads stdin,
its stdout is compared line by line) and `functional` (LeetCode style: `Solution().<func_name>(*args)`, each
argument a JSON line, compared with the expected JSON value), which becomes an assert harness run after the
answer's code. A contest date outside the window drops the problem: one published before a model's training
cut-off may be in its training data.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import zlib
from typing import Any

from ..core.errors import FactoryError
from ..storage.records import Prompt

MAX_TESTS_BYTES = 256 * 1024 * 1024  # a decompressed test set larger than this is refused, not expanded
# The preamble LiveCodeBench's grader (`lcb_runner/evaluation/testing_util.py`, `import_string`) puts before every
# solution, stdin and functional alike, so that answers using `gcd`, `comb`, `inf`, `deepcopy`, `List` or
# `defaultdict` unqualified run here as they do there. Same modules, same order, same recursion limit.
_STAR = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random", "statistics",
         "itertools", "functools", "operator", "io", "sys", "json", "builtins", "typing")
_PLAIN = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random", "statistics",
          "itertools", "functools", "operator", "io", "sys", "json")
IMPORTS = "\n".join([*(f"from {m} import *" for m in _STAR), *(f"import {m}" for m in _PLAIN),
                     "sys.setrecursionlimit(50000)"])
STDIN_NOTE = ("Read the inputs from stdin, solve the problem and write the answer to stdout (do not directly test "
              "on the sample inputs).")
STARTER_NOTE = "Use the following starter code, completing the method:"


class _DataOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing {module}.{name}: the test cases must be plain data")


def _cases(raw: Any, where: str, column: str) -> list[dict[str, Any]]:
    """Public or private test cases: a JSON list, or the compressed pickle of one."""
    where = f"{where}: {column}"
    if raw in (None, ""):
        return []
    if isinstance(raw, list):
        return raw
    text = str(raw).strip()
    if not text.startswith(("[", "{")):  # JSON as it is; else the compressed form
        try:
            packed = zlib.decompressobj().decompress(base64.b64decode(text), MAX_TESTS_BYTES)
            text = _DataOnly(io.BytesIO(packed)).load()
        except (ValueError, zlib.error, pickle.UnpicklingError, EOFError) as e:
            raise FactoryError(f"{where} cannot be read: neither a JSON list nor LiveCodeBench's compressed "
                               f"form ({e})") from None
    try:
        cases = json.loads(text) if isinstance(text, str) else text
    except ValueError as e:
        raise FactoryError(f"{where}: not JSON ({e})") from None
    if not isinstance(cases, list) or not all(isinstance(c, dict) and "input" in c and "output" in c
                                              for c in cases):
        raise FactoryError(f"{where}: should be a list of {{input, output, testtype}}")
    return cases


def _harness(func_name: str, cases: list[dict[str, Any]]) -> str:
    """Assert-style tests for a functional problem, run after the answer's code in one sandboxed process."""
    pairs = [[c["input"], c["output"]] for c in cases]
    return (f"import json as _json\n_CASES = _json.loads({json.dumps(json.dumps(pairs))})\n"
            "for _i, (_args, _want) in enumerate(_CASES):\n"
            "    _got = Solution()." + func_name + "(*[_json.loads(_a) for _a in _args.split('\\n') if _a.strip()])\n"
            "    _got = list(_got) if isinstance(_got, tuple) else _got  # LiveCodeBench: a tuple is the list\n"
            "    assert _got == _json.loads(_want), f'case {_i}: got {_got!r}'\n")


def _metadata(raw: Any, where: str) -> dict[str, Any]:
    """A row's metadata: a JSON object (as text in the release files) or nothing."""
    if raw in (None, ""):
        return {}
    try:
        meta = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as e:
        raise FactoryError(f"{where}: metadata is not JSON ({e})") from None
    if not isinstance(meta, dict):
        raise FactoryError(f"{where}: metadata should be a JSON object, got {type(meta).__name__}")
    return meta


def lcb_prompt(name: str, row: dict[str, Any], i: int, date_from: str, date_to: str) -> Prompt | None:
    where = f"{name}: row {i}"
    try:
        content, date = row["question_content"], str(row["contest_date"])[:10]
    except KeyError as e:
        raise FactoryError(f"{where} lacks column {e}") from None
    if not isinstance(content, str) or not content.strip():
        raise FactoryError(f"{where}: question_content is empty or not text")
    if not date_from <= date <= date_to:
        return None
    cases = (_cases(row.get("public_test_cases"), where, "public_test_cases")
             + _cases(row.get("private_test_cases"), where, "private_test_cases"))
    if not cases:
        raise FactoryError(f"{where}: no test cases")
    meta = _metadata(row.get("metadata"), where)
    starter = (row.get("starter_code") or "").strip()
    functional = cases[0].get("testtype") == "functional"
    if functional:
        func = (meta or {}).get("func_name")
        if not func:
            raise FactoryError(f"{where}: a functional problem without metadata.func_name")
        tests = _harness(func, cases)
        problem = f"{content.strip()}\n\n{STARTER_NOTE}\n```python\n{starter}\n```"
    else:
        tests = json.dumps({"inputs": [c["input"] for c in cases], "outputs": [c["output"] for c in cases]})
        problem = f"{content.strip()}\n\n{STDIN_NOTE}"
    info = {k: row.get(k) for k in ("question_id", "question_title", "platform", "contest_id", "difficulty")}
    return Prompt(source=name, task="code", problem=problem, tests=tests,
                  metadata=json.dumps({**info, "contest_date": date, "tests": len(cases), "imports": IMPORTS}))
