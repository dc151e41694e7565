"""The steps of `labeler setup` for the embedded server, each small and testable without a network.

- `prebuilt`: pip installs the `xllamacpp` wheel (llama.cpp's own C++ server, compiled without
  -march=native, so it runs on CPUs with and without AVX-512/AMX) and writes a `llama-server` shim
  that takes llama-server's flags and serves them with it (`serve_prebuilt`).
- `source`: the llama-cpp-python sdist, found on the package index (PIP_INDEX_URL, else PyPI) and
  checked against the sha256 the index gives, or, if that fails, `pip download --no-binary` of that
  one package; then cmake + ninja/make, with `[n/N]` / `[ p%]` lines shown as they stream.

Progress goes to stderr: one line per stage, the counter updated in place on a terminal and every
few seconds otherwise. Every command's full output goes to the setup log; a failure is one line
that names the log and the fix. How long each kind of setup took is kept in build-times.json.
"""

from __future__ import annotations

import argparse
import hashlib
import html.parser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from labeler.errors import LocalServerError
from labeler.label.tokens import cache_dir

LLAMA_CPP_PROJECT, LLAMA_CPP_VERSION = "llama-cpp-python", "0.3.36"
LLAMA_CPP_PYTHON = f"{LLAMA_CPP_PROJECT}=={LLAMA_CPP_VERSION}"
SDIST = f"llama_cpp_python-{LLAMA_CPP_VERSION}.tar.gz"
XLLAMACPP = "xllamacpp==2026.10.11549"  # a ~33 MB manylinux wheel; CPU builds without -march=native
PYPI_SIMPLE = "https://pypi.org/simple"
BUILD_TOOLS_FIX = "apt-get install cmake ninja-build build-essential, then rerun `labeler setup`"
# measured on a 2-core machine (NOTES.md): the fallbacks when build-times.json has no record yet
DEFAULT_SECONDS = {"prebuilt": 30.0, "source": 240.0}
DEFAULT_JOBS = 2


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# --- progress ------------------------------------------------------------------------------------
class Progress:
    """`setup: ...` lines on stderr. `update` rewrites the current line on a terminal; elsewhere it
    prints at most every `every` seconds (and always when `force`)."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True, every: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.every = every
        self._last = 0.0
        self._open = False

    def line(self, msg: str) -> None:
        if self.enabled:
            self.end()
            print(f"setup: {msg}", file=self.stream, flush=True)

    def update(self, msg: str, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            self.stream.write(f"\r\033[Ksetup: {msg}")
            self.stream.flush()
            self._open = True
        elif force or now - self._last >= self.every:
            print(f"setup: {msg}", file=self.stream, flush=True)
        self._last = now

    def end(self) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


_NINJA = re.compile(rb"^\[(\d+)/(\d+)\] ")
_MAKE = re.compile(rb"^\[\s*(\d+)%\] ")


def parse_build_progress(line: bytes) -> tuple[int, int] | None:
    """(done, total) from one line of build output: ninja's `[12/206] ...`, make's `[ 45%] ...` as (45, 100)."""
    if m := _NINJA.match(line):
        return int(m[1]), int(m[2])
    if m := _MAKE.match(line):
        return int(m[1]), 100
    return None


def stream(
    cmd: list[str], *, log: Path, on_line: Callable[[bytes], None] | None = None, cwd: Path | None = None
) -> int:
    """Run `cmd`, appending all its output to `log` as it comes and handing each line to `on_line`."""
    with open(log, "ab") as out:
        out.write(f"\n$ {shlex.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        assert proc.stdout is not None
        for raw in proc.stdout:
            out.write(raw)
            if on_line is not None:
                on_line(raw)
        return proc.wait()


def failure(step: str, code: int, log: Path, fix: str) -> LocalServerError:
    """One line: what failed, the last error line of the log, where the full log is, and the fix."""
    hint = ""
    try:
        tail = log.read_bytes()[-20000:].decode("utf-8", "replace").splitlines()
        errors = [s.strip() for s in tail if re.search(r"\berror\b|^E: |FAILED", s, re.IGNORECASE)]
        hint = f": {errors[-1][:160]}" if errors else ""
    except OSError:
        pass
    return LocalServerError(f"{step} failed (exit {code}){hint}; full log: {log}; fix: {fix}")


# --- the sources: index + sha256, else pip ----------------------------------------------------------
def redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        parts = parts._replace(netloc=host if parts.port is None else f"{host}:{parts.port}")
    return urllib.parse.urlunsplit(parts)


def project_page(project: str, index_url: str | None = None) -> str:
    """The simple-index page of `project` on PIP_INDEX_URL (else PyPI), name normalised as in PEP 503."""
    base = (index_url or os.environ.get("PIP_INDEX_URL") or PYPI_SIMPLE).rstrip("/")
    return f"{base}/{re.sub(r'[-_.]+', '-', project).lower()}/"


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []  # (href, text)
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self.links.append((self._href, data.strip()))
            self._href = None


def find_file(body: bytes, content_type: str, page_url: str, filename: str) -> tuple[str, str]:
    """(download URL, sha256) of `filename` on a simple-index page: PEP 691 JSON or PEP 503 HTML."""
    if "json" in content_type:
        for f in json.loads(body).get("files", []):
            if f.get("filename") == filename:
                sha = (f.get("hashes") or {}).get("sha256", "")
                return _checked(urllib.parse.urljoin(page_url, urllib.parse.urldefrag(f["url"])[0]), sha, filename)
    else:
        parser = _Links()
        parser.feed(body.decode("utf-8", "replace"))
        for href, text in parser.links:
            url, frag = urllib.parse.urldefrag(urllib.parse.urljoin(page_url, href))
            if text == filename or url.rsplit("/", 1)[-1] == filename:
                sha = urllib.parse.parse_qs(frag).get("sha256", [""])[0]
                return _checked(url, sha, filename)
    raise LocalServerError(f"{filename} is not listed on {redact(page_url)}")


def _checked(url: str, sha: str, filename: str) -> tuple[str, str]:
    if not re.fullmatch(r"[0-9a-f]{64}", sha or ""):
        raise LocalServerError(f"the index gives no sha256 for {filename}")
    return url, sha


def download_verified(
    url: str, sha256: str, dest: Path, *, on_bytes: Callable[[int, int], None] | None = None, timeout: float = 60.0
) -> Path:
    """Stream `url` to `dest`, hashing as it goes; `dest` exists afterwards only if the sha256 matched."""
    part = dest.with_name(dest.name + ".part")
    digest, done = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0)
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
                done += len(chunk)
                if on_bytes is not None:
                    on_bytes(done, total)
        if digest.hexdigest() != sha256:
            raise LocalServerError(f"{dest.name}: sha256 {digest.hexdigest()} is not the index's {sha256}")
        part.replace(dest)
        return dest
    finally:
        part.unlink(missing_ok=True)


def fetch_sdist(work: Path, *, log: Path, progress: Progress) -> Path:
    """The llama-cpp-python sdist in `work`: from the index with its sha256 checked, else via pip."""
    page = project_page(LLAMA_CPP_PROJECT)
    t0 = time.monotonic()
    try:
        req = urllib.request.Request(page, headers={"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            url, sha = find_file(resp.read(), resp.headers.get("Content-Type", ""), resp.geturl(), SDIST)

        def shown(done: int, total: int) -> None:
            progress.update(f"download {SDIST}: {done / 1e6:.0f}/{total / 1e6:.0f} MB", force=done == total)

        path = download_verified(url, sha, work / SDIST, on_bytes=shown)
        progress.line(f"download done in {time.monotonic() - t0:.0f} s (sha256 checked)")
        return path
    except (OSError, ValueError, LocalServerError) as exc:  # URLError is an OSError
        progress.line(f"index download failed ({exc}); asking pip for {LLAMA_CPP_PYTHON} instead")
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"\nindex download from {redact(page)} failed: {exc}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", LLAMA_CPP_PROJECT]
    code = stream([*cmd, LLAMA_CPP_PYTHON, "-d", str(work)], log=log)
    found = sorted(work.glob("llama_cpp_python-*.tar.gz"))
    if code != 0 or not found:
        raise failure(f"downloading {LLAMA_CPP_PYTHON}", code, log, "check that PyPI (or PIP_INDEX_URL) is reachable")
    progress.line(f"download done in {time.monotonic() - t0:.0f} s (pip)")
    return found[0]


# --- building from source ------------------------------------------------------------------------
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=OFF",  # the native build uses AMX where the CPU has it and crashes on the first completion
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_CURL=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
)


def compile_server(src: Path, build: Path, *, jobs: int, log: Path, progress: Progress) -> Path:
    """Configure and compile llama-server from llama.cpp sources; the path of the binary."""
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    progress.line("configure (cmake)")
    code = stream(["cmake", "-S", str(src), "-B", str(build), *gen, *CMAKE_FLAGS], log=log)
    if code != 0:
        raise failure("configuring llama.cpp (cmake)", code, log, BUILD_TOOLS_FIX)
    progress.line(f"compile llama-server with {jobs} jobs (expected: {_minutes(estimate('source', jobs))})")
    t0 = time.monotonic()

    def shown(raw: bytes) -> None:
        got = parse_build_progress(raw)
        if got:
            done, total = got
            what = f"{done}%" if total == 100 and not gen else f"{done}/{total}"
            progress.update(f"compile {what} ({time.monotonic() - t0:.0f} s)", force=done == total)

    code = stream(["cmake", "--build", str(build), "--target", "llama-server", "-j", str(jobs)], log=log, on_line=shown)
    progress.end()
    binary = build / "bin" / "llama-server"
    if code != 0 or not binary.exists():
        raise failure("compiling llama-server", code, log, BUILD_TOOLS_FIX)
    return binary


# --- the prebuilt server -------------------------------------------------------------------------
def prebuilt_shim() -> Path:
    return cache_dir() / "bin" / "prebuilt" / "llama-server"


def shim_usable(path: Path) -> bool:
    """The shim exists and the interpreter it names (the venv that ran setup) still does."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return False
    named = [s.removeprefix("# python: ") for s in lines if s.startswith("# python: ")]
    return bool(named) and Path(named[0]).exists()


def write_shim(path: Path, python: str = sys.executable) -> Path:
    """A bash script that runs `serve_prebuilt` in `python`'s environment with argv[0] = its own path,
    so the process shows as llama-server (ps, /proc/PID/cmdline) like the built binary."""
    dirs = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    code = "import site, sys; " + "".join(f"site.addsitedir({d!r}); " for d in dirs)  # argv[0] is no venv python
    code += "from labeler.label.local_setup import serve_prebuilt; sys.exit(serve_prebuilt(sys.argv[1:]))"
    home = shlex.quote(f"{sys.base_prefix}:{sys.base_exec_prefix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        "#!/bin/bash\n# llama-server's flags, served by the xllamacpp wheel (written by `labeler setup`)\n"
        f"# python: {python}\nexport PYTHONHOME={home}\n"
        f'exec -a "$0" {shlex.quote(python)} -c {shlex.quote(code)} "$@"\n',
        encoding="utf-8",
    )
    tmp.chmod(0o755)
    tmp.replace(path)
    return path


def install_prebuilt(*, log: Path, progress: Progress) -> None:
    """pip install the xllamacpp wheel (never its sdist) and check it imports on this CPU."""
    progress.line(f"install the prebuilt llama.cpp server ({XLLAMACPP}, one ~33 MB wheel)")

    def shown(raw: bytes) -> None:
        if raw.lstrip().startswith((b"Downloading", b"Successfully installed")):
            progress.line(raw.decode("utf-8", "replace").strip())

    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--only-binary", "xllamacpp"]
    code = stream([*cmd, XLLAMACPP], log=log, on_line=shown)
    if code != 0:
        raise failure(f"pip install {XLLAMACPP}", code, log, "it has no wheel for this platform; building instead")
    code = stream([sys.executable, "-c", "import xllamacpp"], log=log)
    if code != 0:
        raise failure("import xllamacpp", code, log, "its wheel does not run on this CPU; building instead")


def exit_now(code: int) -> None:
    sys.stderr.flush()
    os._exit(code)


def serve_prebuilt(argv: list[str]) -> int:
    """llama-server's command line (the flags LocalServer passes), served by xllamacpp in this process
    until SIGTERM or SIGINT."""
    import signal

    ap = argparse.ArgumentParser(prog="llama-server (xllamacpp)")
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("-t", "--threads", type=int, default=-1)
    ap.add_argument("-c", "--ctx-size", type=int, default=0)
    ap.add_argument("-np", "--parallel", type=int, default=1)
    ap.add_argument("--alias")
    ap.add_argument("--chat-template-file")
    for flag in ("--offline", "--no-webui", "--swa-full", "--jinja"):
        ap.add_argument(flag, action="store_true")
    args = ap.parse_args(argv)
    import xllamacpp as xlc

    p: Any = xlc.CommonParams()
    p.model.path, p.hostnames, p.port = args.model, [args.host], args.port
    p.n_ctx, p.n_parallel, p.swa_full, p.offline = args.ctx_size, args.parallel, args.swa_full, args.offline
    p.ui = False
    p.cpuparams.n_threads = p.cpuparams_batch.n_threads = args.threads
    if args.alias:
        p.model_alias = {args.alias}
    if args.chat_template_file:
        p.use_jinja, p.chat_template = True, Path(args.chat_template_file).read_text(encoding="utf-8")
    stop = threading.Event()
    before = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server = xlc.Server(p)  # returns once the model is loaded and the HTTP server listens
        print(f"listening on {server.listening_address}", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
        # ~Server waits for the requests in flight, which can take long; a server has nothing to save
        exit_now(0)
        return 0
    except Exception as exc:
        print(f"llama-server (xllamacpp): {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


# --- how long setup takes here -------------------------------------------------------------------
def _times_file() -> Path:
    return cache_dir() / "build-times.json"


def record_time(kind: str, seconds: float, *, jobs: int) -> None:
    """Append one measured setup ({kind: prebuilt|source}) to build-times.json (the last 20 are kept)."""
    path = _times_file()
    runs = recorded_times()
    runs.append({"kind": kind, "seconds": round(seconds, 1), "jobs": jobs, "cores": cores(), "when": time.time()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"runs": runs[-20:]}, indent=1), encoding="utf-8")
    tmp.replace(path)


def recorded_times(kind: str | None = None) -> list[dict[str, Any]]:
    try:
        runs = json.loads(_times_file().read_text(encoding="utf-8")).get("runs", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [r for r in runs if isinstance(r, dict) and (kind is None or r.get("kind") == kind)]


def estimate(kind: str, jobs: int | None = None) -> tuple[float, str]:
    """(seconds, where the figure comes from) for one kind of setup on this machine: the last one
    measured here, scaled to `jobs` compile jobs for a source build; else the 2-core figure."""
    jobs = jobs or cores()
    runs = [r for r in recorded_times(kind) if isinstance(r.get("seconds"), int | float)]
    if runs:
        last = runs[-1]
        then = int(last.get("jobs") or DEFAULT_JOBS)
        scale = then / jobs if kind == "source" else 1.0
        when = time.strftime("%Y-%m-%d", time.localtime(float(last.get("when") or 0)))
        return float(last["seconds"]) * scale, f"measured here on {when} with {then} jobs"
    if kind != "source":
        return DEFAULT_SECONDS[kind], f"as on a {DEFAULT_JOBS}-core machine"
    return DEFAULT_SECONDS[kind] * DEFAULT_JOBS / jobs, f"from a {DEFAULT_JOBS}-core machine, scaled to {jobs} cores"


def _minutes(est: tuple[float, str]) -> str:
    seconds, source = est
    shown = f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
    return f"about {shown}, {source}"


def expected_setup(*, done: bool) -> str:
    if done:
        return "nothing to do: llama-server is installed"
    return f"prebuilt: {_minutes(estimate('prebuilt'))}; if it has to build from source: {_minutes(estimate('source'))}"
