"""The one redaction function: every writer of an artifact (config dump, command line, manifest, card, eval
result, logs, error text) passes what it writes through `redact`.

What counts as a secret:
- a value whose key names a credential (`Authorization`, `X-Api-Key`, `hf_token`, `password`...), at any depth of
  a dict, and a `key=value` pair whose key does (command lines, dotted `--set` keys);
- the password (or a lone user name, which is often a token) in a URL's userinfo, `https://u:PW@host`;
- a URL query parameter named like a credential (`?api_key=`, `&token=`, `&sig=`, `&X-Amz-Signature=`);
- a `Bearer ...` / `Basic ...` credential in free text;
- the value of any environment variable named like a credential (OPENAI_API_KEY, HF_TOKEN...), and every value
  registered with `register` (header values from a config): masked wherever it appears, even inside other text.

Hand-written: no maintained library masks secrets in structured configs and free text at once; the logging
filters on PyPI only mask patterns of known vendors' keys.
"""

from __future__ import annotations

import os
import re
from typing import Any

MASK = "***"
_SECRET_WORDS = {"key", "apikey", "token", "secret", "password", "passwd", "pwd", "authorization", "auth",
                 "bearer", "cookie", "signature", "sig", "credential", "credentials", "session", "jwt"}
_NOT_SECRET_SUFFIX = ("_env",)  # api_key_env names a variable; its value is not the key
_MIN_SECRET_LEN = 8  # shorter registered values would mask ordinary text (real keys are longer)
_registered: set[str] = set()
# `api_key.yaml: no such config file` names a file, not a key: an error about it must keep the words after it
_FILE_NAME = re.compile(r"\.(ya?ml|json|jsonl|ndjson|parquet|csv|txt|md|toml|py|png|log|html)$")

_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^\s/@:?#]*)(?::(?P<pw>[^\s/@?#]*))?@")
_QUERY_PARAM = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&#\s;]+)=(?P<value>[^&#\s;\"']*)")
_AUTH_SCHEME = re.compile(r"\b(?P<scheme>Bearer|Basic|Token)\s+(?P<cred>[A-Za-z0-9._~+/=-]{4,})", re.I)
# NAME=value anywhere; NAME: value only when NAME is quoted or compound (`"token": "x"`, `X-Api-Key: x`), so
# that prose such as "the key: 42" in a card's example stays as the model wrote it.
_ASSIGNMENT = re.compile(r"(?P<q0>[\"']?)(?P<name>[A-Za-z0-9_.-]+)(?P<q1>[\"']?)(?P<sep>\s*[=:]\s*)"
                         r"(?P<quote>[\"']?)(?P<value>[^\s\"',}&]+)")


def is_secret_name(name: str) -> bool:
    """`X-Api-Key`, `hf_token`, `teacher.headers.Authorization`: yes; `max_tokens`, `api_key_env`: no."""
    lowered = str(name).lower()
    if lowered.endswith(_NOT_SECRET_SUFFIX) or _FILE_NAME.search(lowered):
        return False
    words = [w for w in re.split(r"[^a-z0-9]+", lowered) if w]
    if not words:
        return False
    joined = "".join(words)
    return any(w in _SECRET_WORDS for w in words[-2:]) or joined.endswith(("apikey", "accesstoken", "secretkey"))


def register(value: str | None) -> None:
    """Masks this exact value wherever it appears from now on (header values, URL passwords of a config)."""
    if value and len(value) >= _MIN_SECRET_LEN:
        _registered.add(value)


_NOT_SECRET_ENV = {"PWD", "OLDPWD"}  # "pwd" names a password elsewhere; these are the shell's directories


def _env_secrets() -> set[str]:
    return {v for k, v in os.environ.items() if is_secret_name(k) and k not in _NOT_SECRET_ENV and v
            and len(v) >= _MIN_SECRET_LEN and v.upper() != "EMPTY" and not _is_path(v)}


def _is_path(value: str) -> bool:
    """An absolute path that exists (SSL_KEY_FILE=/etc/...): masking it would mangle every path beneath it."""
    return os.path.isabs(value) and os.path.exists(value)


def _mask_userinfo(m: re.Match) -> str:
    if m.group("pw") is not None:
        return f"{m.group('scheme')}{m.group('user')}:{MASK}@"
    return f"{m.group('scheme')}{MASK}@"


def _mask_param(m: re.Match) -> str:
    if is_secret_name(m.group("name")) and m.group("value") not in ("", MASK):
        return f"{m.group('lead')}{m.group('name')}={MASK}"
    return m.group(0)


def _mask_assignment(m: re.Match) -> str:
    name, colon = m.group("name"), ":" in m.group("sep")
    if colon and not m.group("q1") and not re.search(r"[-_.]", name):
        return m.group(0)
    if is_secret_name(name) and m.group("value") != MASK:
        return f"{m.group('q0')}{name}{m.group('q1')}{m.group('sep')}{m.group('quote')}{MASK}"
    return m.group(0)


def redact_text(text: str) -> str:
    """Free text (a URL, a command line, an error message, a rendered card) with every secret masked."""
    for value in sorted(_registered | _env_secrets(), key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    text = _URL_USERINFO.sub(_mask_userinfo, text)
    text = _QUERY_PARAM.sub(_mask_param, text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m.group('scheme')} {MASK}", text)
    return _ASSIGNMENT.sub(_mask_assignment, text)


def redact(obj: Any) -> Any:
    """A copy of `obj` (dicts, lists, strings, scalars) with every secret masked; other values unchanged."""
    if isinstance(obj, dict):
        return {k: (MASK if is_secret_name(k) and isinstance(v, str) and v else
                    {h: MASK for h in v} if _is_headers(k, v) else redact(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


def _is_headers(key: Any, value: Any) -> bool:
    """A config's `headers`: every value is treated as a secret (providers put keys under any header name)."""
    return str(key).lower() == "headers" and isinstance(value, dict)


def register_config(obj: Any) -> None:
    """Registers the secret values inside a config dump, so that free text quoting them is masked too: values
    named like secrets, every header value, and the value of every variable an `*api_key_env` field names
    (`MY_LLM` is not named like a secret, but holds one)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if is_secret_name(k) and isinstance(v, str):
                register(v)
            elif _is_headers(k, v):
                for value in v.values():
                    register(str(value))
            elif str(k).endswith("api_key_env") and isinstance(v, str):
                register(os.environ.get(v))
            else:
                register_config(v)
    elif isinstance(obj, list):
        for v in obj:
            register_config(v)
    elif isinstance(obj, str):
        m = _URL_USERINFO.search(obj)
        if m:
            register(m.group("pw") if m.group("pw") is not None else m.group("user"))
