"""The one redaction function, table-driven over the channels a secret reaches an artifact through."""

import pytest

from factory.config.loader import build, parse_overrides, public_dump
from factory.config.stages import GenerateConfig
from factory.core.redact import MASK, is_secret_name, redact, redact_text, register
from factory.storage.rundir import redacted_command


@pytest.mark.parametrize("name,secret", [
    ("Authorization", True), ("X-Api-Key", True), ("hf_token", True), ("HF_TOKEN", True), ("password", True),
    ("teacher.headers.X-Auth-Token", True), ("OPENAI_API_KEY", True), ("X-Amz-Signature", True), ("sig", True),
    ("max_tokens", False), ("api_key_env", False), ("tokens_per_minute", False), ("completion_tokens", False),
    ("tokenizer", False), ("headers", False), ("base_url", False), ("model", False),
])
def test_secret_names(name, secret):
    assert is_secret_name(name) is secret


@pytest.mark.parametrize("text,secret,kept", [
    ("http://alice:pw-SECRET-1@10.0.0.1:8000/v1", "pw-SECRET-1", "http://alice:***@10.0.0.1:8000/v1"),
    ("https://tok-SECRET-2@host/v1", "tok-SECRET-2", "https://***@host/v1"),
    ("https://host/v1?api_key=q-SECRET-3&x=1", "q-SECRET-3", "https://host/v1?api_key=***&x=1"),
    ("https://b/o?X-Amz-Signature=s-SECRET-4&X-Amz-Date=2026", "s-SECRET-4", "X-Amz-Date=2026"),
    ("curl -H 'Authorization: Bearer b-SECRET-5'", "b-SECRET-5", "Authorization: Bearer ***"),
    ("--set teacher.headers.X-Api-Key=d-SECRET-6", "d-SECRET-6", "teacher.headers.X-Api-Key=***"),
    ('{"X-Api-Key": "j-SECRET-7", "n": 4}', "j-SECRET-7", '"n": 4'),
    ("the key: 42 is the answer", None, "the key: 42 is the answer"),
    ("max_tokens=4096 top_p=0.95", None, "max_tokens=4096 top_p=0.95"),
])
def test_free_text(text, secret, kept):
    out = redact_text(text)
    assert kept in out
    if secret:
        assert secret not in out and MASK in out


def test_environment_and_registered_values_are_masked_anywhere(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "env-SECRET-value-8")
    register("reg-SECRET-value-9")
    out = redact_text("failed: env-SECRET-value-8 and reg-SECRET-value-9 in a message")
    assert "SECRET" not in out and out.count(MASK) == 2


def test_nested_structures():
    doc = {"teacher": {"headers": {"X-Api-Key": "h-SECRET", "Accept": "json"}, "base_url": "http://u:p-SECRET@h/v1",
                       "api_key_env": "OPENAI_API_KEY", "max_tokens": 5},
           "list": [{"token": "l-SECRET"}, "https://h/?token=t-SECRET"]}
    out = redact(doc)
    assert "SECRET" not in str(out)
    # every header value counts as a secret: providers put keys under headers of any name
    assert out["teacher"]["headers"] == {"X-Api-Key": "***", "Accept": "***"}
    assert out["teacher"]["api_key_env"] == "OPENAI_API_KEY"
    assert out["teacher"]["max_tokens"] == 5 and doc["teacher"]["headers"]["X-Api-Key"] == "h-SECRET", "a copy"


def test_config_dump_masks_every_channel():
    layers = [{"teacher": {"headers": {"X-Api-Key": "file-SECRET-1"}}},  # as from a --config file
              {"teacher": {"base_url": "http://alice:url-SECRET-2@h:1/v1?key=q-SECRET-3"}},
              parse_overrides(["teacher.headers.X-Other-Token=dotted-SECRET-4",
                               'teacher.extra_body={"user": "u", "session_token": "body-SECRET-5"}'])]
    dumped = str(public_dump(build(GenerateConfig, *layers)))
    assert "SECRET" not in dumped and "alice" in dumped and "'user': 'u'" in dumped


@pytest.mark.parametrize("argv", [
    ["--set", 'teacher.headers={"X-Api-Key": "dict-SECRET"}'],
    ["--set=teacher.headers={X-Api-Key: flow-SECRET}"],
    ["--set", "teacher.headers.X-Api-Key=dotted-SECRET"],
    ["--set", 'teacher.extra_body={"a": [{"token": "list-SECRET"}]}'],
    ["--base-url", "http://alice:url-SECRET@h:8000/v1"],
    ["--hf-token", "flag-SECRET"],
    ["--base-url", "https://h/v1?api_key=query-SECRET"],
])
def test_recorded_command_line(argv):
    out = redacted_command(["factory", "generate", *argv, "--n", "4"])
    assert "SECRET" not in out and out.endswith("--n 4") and MASK in out


def test_the_working_directory_and_path_valued_variables_are_not_secrets(tmp_path, monkeypatch):
    """PWD matched "pwd" (a password): the working directory became *** in every artifact (issue 22, item 8)."""
    from factory.core.redact import redact_text

    where = tmp_path / "projects" / "math-run"
    where.mkdir(parents=True)
    monkeypatch.setenv("PWD", str(where))
    monkeypatch.setenv("OLDPWD", str(tmp_path))
    monkeypatch.setenv("SSL_KEY_FILE", str(where))
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-1234567890abcdef")
    text = f"wrote {where}/traces with tok-1234567890abcdef"
    assert redact_text(text) == f"wrote {where}/traces with ***"
