"""A local model is identified by its content (issue 22, item 1): same bytes, same identity, wherever they lie;
new weights at the same path, a new identity."""

import json
import os
import shutil

from factory.config.teacher import TeacherConfig
from factory.generation.plan import model_key
from factory.storage.model_content import RECORD, model_content, write_record


def _model(path, weights=b"\x00" * 64):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text('{"model_type": "llama"}')
    (path / "model.safetensors").write_bytes(weights)
    return path


def test_new_weights_at_the_same_path_change_the_identity_and_a_copy_keeps_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORY_CACHE", str(tmp_path / "cache"))
    model = _model(tmp_path / "m")
    first = model_content(str(model))
    assert first and model_content(str(model)) == first
    assert list((tmp_path / "cache" / "model-content").glob("*.json")), "the hashes are remembered"
    shutil.copytree(model, tmp_path / "copy")  # new mtimes, same bytes
    assert model_content(str(tmp_path / "copy")) == first
    (model / "model.safetensors").write_bytes(b"\x01" * 64)  # retrained in place: same size, new bytes
    assert model_content(str(model)) not in (None, first)
    (model / "tokenizer.json").write_text("{}")  # a new file counts too
    assert model_content(str(model)) not in (None, first)


def test_a_stale_record_is_never_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORY_CACHE", str(tmp_path / "cache"))
    model = _model(tmp_path / "final")
    written = write_record(model)
    record = json.loads((model / RECORD).read_text())
    assert record["content"] == written and set(record["files"]) == {"config.json", "model.safetensors"}
    assert model_content(str(model)) == written
    assert not (tmp_path / "cache").exists(), "a training stage's own record is read, not redone"
    (model / "model.safetensors").write_bytes(b"\x02" * 64)
    os.utime(model / "model.safetensors", ns=(1, 1))
    assert model_content(str(model)) != written


def test_a_samples_identity_is_the_name_the_content_of_a_directory_and_the_endpoint_of_a_server(tmp_path):
    assert model_content("Qwen/Qwen2.5-7B-Instruct") is None and model_content("smollm2-135m") is None
    assert model_key(TeacherConfig(engine="openai", model="gpt-4o-mini", cache_identity="model")) == {"model": "gpt-4o-mini"}
    assert model_key(TeacherConfig(engine="openai", model="gpt-4o-mini"))["endpoint"] == "api.openai.com/v1"
    assert set(model_key(TeacherConfig(engine="vllm", model=str(_model(tmp_path / "m"))))) == {"model", "model_content"}
