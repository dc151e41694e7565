"""`labeler setup`'s steps without a network or a real build: finding and checking the sdist on the
index (and falling back to pip), the build-output parser and progress, the prebuilt shim, the order
of fallbacks in build_server, and the setup-time estimate. subprocess and urlopen are faked."""

from __future__ import annotations

import hashlib
import io
import json
import signal
import sys
import types
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labeler.errors import LocalServerError
from labeler.label import local, local_setup
from labeler.label.local_setup import (
    SDIST,
    Progress,
    download_verified,
    estimate,
    fetch_sdist,
    find_file,
    parse_build_progress,
    project_page,
    record_time,
    redact,
)

SHA = "a" * 64


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABELER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LABELER_LLAMA_SERVER", raising=False)
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    return tmp_path / "cache"


class Stream(io.StringIO):
    def __init__(self, tty: bool = False) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def quiet() -> Progress:
    return Progress(Stream(), every=0.0)


# --- build output and progress -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "want"),
    [
        (b"[12/206] Building CXX object ggml/src/CMakeFiles/ggml-base.dir/ggml.c.o\n", (12, 206)),
        (b"[206/206] Linking CXX executable bin/llama-server\n", (206, 206)),
        (b"[ 45%] Building CXX object tools/server/CMakeFiles/server.dir/server.cpp.o\n", (45, 100)),
        (b"[100%] Built target llama-server\n", (100, 100)),
        (b"-- The C compiler identification is GNU 12.2.0\n", None),
        (b"In file included from [12/206]\n", None),
        (b"[12/206]no space after\n", None),
    ],
)
def test_parse_build_progress(line: bytes, want: tuple[int, int] | None) -> None:
    assert parse_build_progress(line) == want


def test_progress_updates_in_place_on_a_terminal_and_sparingly_elsewhere() -> None:
    tty = Stream(tty=True)
    p = Progress(tty, every=1000.0)
    p.update("compile 1/3")
    p.update("compile 2/3")
    p.line("done")
    assert tty.getvalue() == "\r\x1b[Ksetup: compile 1/3\r\x1b[Ksetup: compile 2/3\nsetup: done\n"
    log = Stream()
    p = Progress(log, every=1000.0)
    p.update("compile 1/3")  # the first update is shown at once
    p.update("compile 2/3")  # within `every`: not shown
    p.update("compile 3/3", force=True)
    assert log.getvalue() == "setup: compile 1/3\nsetup: compile 3/3\n"
    off = Stream()
    Progress(off, enabled=False).line("nothing")
    assert off.getvalue() == ""


def test_stream_writes_the_whole_output_to_the_log_and_hands_over_each_line(tmp_path: Path) -> None:
    log = tmp_path / "log"
    seen: list[bytes] = []
    code = local_setup.stream(
        [sys.executable, "-c", "print('[1/2] a'); print('[2/2] b'); raise SystemExit(3)"], log=log, on_line=seen.append
    )
    assert code == 3
    assert seen == [b"[1/2] a\n", b"[2/2] b\n"]
    assert log.read_text().endswith("[1/2] a\n[2/2] b\n")


def test_failure_is_one_line_with_the_last_error_the_log_and_the_fix(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("ok\nfoo.cpp:1: error: first\nFAILED: foo.o\nninja: build stopped\n")
    msg = str(local_setup.failure("compiling llama-server", 1, log, "apt-get install g++"))
    assert "\n" not in msg
    assert msg == f"compiling llama-server failed (exit 1): FAILED: foo.o; full log: {log}; fix: apt-get install g++"


# --- the index: where the sdist is and its sha256 ------------------------------------------------
def test_project_page_normalises_the_name_and_honours_pip_index_url(monkeypatch: pytest.MonkeyPatch) -> None:
    assert project_page("llama_cpp.Python") == "https://pypi.org/simple/llama-cpp-python/"
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/pypi/simple/")
    assert project_page("llama-cpp-python") == "https://mirror.example/pypi/simple/llama-cpp-python/"


def test_redact_hides_credentials() -> None:
    assert redact("https://u:secret@mirror.example:8443/simple/x/") == "https://mirror.example:8443/simple/x/"
    assert redact("https://pypi.org/simple/x/") == "https://pypi.org/simple/x/"


def test_find_file_in_pep691_json() -> None:
    body = json.dumps(
        {
            "files": [
                {"filename": "old.tar.gz", "url": "../../x/old.tar.gz", "hashes": {"sha256": "b" * 64}},
                {"filename": SDIST, "url": "../../packages/ab/" + SDIST + "#sha256=zz", "hashes": {"sha256": SHA}},
            ]
        }
    ).encode()
    page = "https://mirror.example/simple/llama-cpp-python/"
    assert find_file(body, "application/vnd.pypi.simple.v1+json", page, SDIST) == (
        f"https://mirror.example/packages/ab/{SDIST}",
        SHA,
    )


def test_find_file_in_pep503_html() -> None:
    body = (
        b"<html><body>"
        b'<a href="https://files.example/p/old.tar.gz#sha256=' + b"c" * 64 + b'">old.tar.gz</a><br/>'
        b'<a href="/p/'
        + SDIST.encode()
        + b"?a=1&amp;b=2#sha256="
        + SHA.encode()
        + b'" data-requires-python="&gt;=3">'
        + SDIST.encode()
        + b"</a></body></html>"
    )
    url, sha = find_file(body, "text/html", "https://pypi.example/simple/llama-cpp-python/", SDIST)
    assert (url, sha) == (f"https://pypi.example/p/{SDIST}?a=1&b=2", SHA)


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"files": [{"filename": "other.tar.gz", "url": "x", "hashes": {"sha256": SHA}}]}),
        json.dumps({"files": [{"filename": SDIST, "url": "x", "hashes": {}}]}),
        json.dumps({"files": [{"filename": SDIST, "url": "x", "hashes": {"sha256": "not-hex"}}]}),
    ],
)
def test_find_file_refuses_a_missing_file_or_sha256(body: str) -> None:
    with pytest.raises(LocalServerError):
        find_file(body.encode(), "application/json", "https://pypi.org/simple/x/", SDIST)


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, headers: dict[str, str] | None = None, url: str = "") -> None:
        super().__init__(data)
        self.headers = headers or {"Content-Length": str(len(data))}
        self.url = url

    def geturl(self) -> str:
        return self.url

    def __enter__(self) -> FakeResponse:
        return self


def fake_urlopen(routes: dict[str, Callable[[], FakeResponse]]) -> Callable[..., FakeResponse]:
    def urlopen(req: Any, timeout: float = 0) -> FakeResponse:
        url = req if isinstance(req, str) else req.full_url
        return routes[url]()

    return urlopen


def test_download_verified_checks_the_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"x" * (3 << 20)
    good = hashlib.sha256(data).hexdigest()
    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen({"u": lambda: FakeResponse(data)}))
    seen: list[tuple[int, int]] = []
    out = download_verified("u", good, tmp_path / "f.tar.gz", on_bytes=lambda d, t: seen.append((d, t)))
    assert out.read_bytes() == data
    assert seen[-1] == (len(data), len(data)) and len(seen) == 3
    with pytest.raises(LocalServerError, match="sha256"):
        download_verified("u", SHA, tmp_path / "g.tar.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.tar.gz"]  # no partial or unchecked file


def _index_json(sha: str) -> FakeResponse:
    files = [{"filename": SDIST, "url": f"https://files.example/{SDIST}", "hashes": {"sha256": sha}}]
    body = json.dumps({"files": files})
    return FakeResponse(body.encode(), {"Content-Type": "application/vnd.pypi.simple.v1+json"}, url=project_page("x"))


def test_fetch_sdist_from_the_index_without_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"sdist bytes"
    routes = {
        project_page("llama-cpp-python"): lambda: _index_json(hashlib.sha256(data).hexdigest()),
        f"https://files.example/{SDIST}": lambda: FakeResponse(data),
    }
    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen(routes))
    monkeypatch.setattr(local_setup, "stream", lambda *a, **k: pytest.fail("pip must not run"))
    assert fetch_sdist(tmp_path, log=tmp_path / "log", progress=quiet()).read_bytes() == data


@pytest.mark.parametrize("broken", ["unreachable", "bad sha256"])
def test_fetch_sdist_falls_back_to_pip_for_one_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    def unreachable() -> FakeResponse:
        raise urllib.error.URLError("no route")

    routes = {
        project_page("llama-cpp-python"): unreachable if broken == "unreachable" else lambda: _index_json(SHA),
        f"https://files.example/{SDIST}": lambda: FakeResponse(b"tampered"),
    }
    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen(routes))
    calls: list[list[str]] = []

    def pip(cmd: list[str], **_: Any) -> int:
        calls.append(cmd)
        (tmp_path / SDIST).write_bytes(b"from pip")
        return 0

    monkeypatch.setattr(local_setup, "stream", pip)
    assert fetch_sdist(tmp_path, log=tmp_path / "log", progress=quiet()).read_bytes() == b"from pip"
    (cmd,) = calls
    assert cmd[cmd.index("--no-binary") + 1] == "llama-cpp-python"  # not :all: (that builds the build deps)
    assert ":all:" not in cmd and "--no-deps" in cmd


def test_fetch_sdist_names_the_log_and_the_fix_when_pip_fails_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(*_: Any, **__: Any) -> FakeResponse:
        raise urllib.error.URLError("no route")

    monkeypatch.setattr("urllib.request.urlopen", unreachable)
    monkeypatch.setattr(local_setup, "stream", lambda *a, **k: 1)
    with pytest.raises(LocalServerError, match=r"full log: .*log; fix: check that PyPI"):
        fetch_sdist(tmp_path, log=tmp_path / "log", progress=quiet())


# --- compiling -----------------------------------------------------------------------------------
def fake_build(lines: list[bytes], code: int = 0, make_binary: bool = True) -> Callable[..., int]:
    def run(cmd: list[str], *, log: Path, on_line: Callable[[bytes], None] | None = None, **_: Any) -> int:
        with open(log, "ab") as out:
            out.write(b"".join(lines))
        if "--build" in cmd:
            for raw in lines:
                if on_line:
                    on_line(raw)
            if make_binary:
                (Path(cmd[cmd.index("--build") + 1]) / "bin").mkdir(parents=True, exist_ok=True)
                (Path(cmd[cmd.index("--build") + 1]) / "bin" / "llama-server").write_bytes(b"elf")
        return code

    return run


def test_compile_server_shows_n_of_n(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_setup.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(local_setup, "stream", fake_build([b"[1/3] cc a\n", b"[2/3] cc b\n", b"[3/3] link\n"]))
    out = Stream()
    binary = local_setup.compile_server(
        tmp_path / "src", tmp_path / "build", jobs=2, log=tmp_path / "log", progress=Progress(out, every=1000.0)
    )
    assert binary == tmp_path / "build" / "bin" / "llama-server"
    shown = out.getvalue().splitlines()
    assert shown[0] == "setup: configure (cmake)"
    assert shown[1].startswith("setup: compile llama-server with 2 jobs (expected: about ")
    assert [s.split(" (")[0] for s in shown[2:]] == ["setup: compile 1/3", "setup: compile 3/3"]


def test_compile_server_failure_names_the_log_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_setup, "stream", fake_build([b"[1/3] cc a\n", b"a.c:1: error: boom\n"], code=1))
    with pytest.raises(LocalServerError) as err:
        local_setup.compile_server(tmp_path, tmp_path / "b", jobs=2, log=tmp_path / "log", progress=quiet())
    assert "error: boom" in str(err.value) and str(tmp_path / "log") in str(err.value)
    assert "apt-get install cmake" in str(err.value)


# --- how long setup takes here -------------------------------------------------------------------
def test_estimate_uses_the_time_measured_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_setup, "cores", lambda: 4)
    seconds, source = estimate("source")
    assert seconds == pytest.approx(120.0) and "2-core" in source  # 240 s on 2 cores, scaled to 4
    record_time("source", 300.0, jobs=2)
    record_time("prebuilt", 12.0, jobs=4)
    assert estimate("source", 4)[0] == pytest.approx(150.0)
    assert estimate("source", 2)[0] == pytest.approx(300.0)
    seconds, source = estimate("prebuilt")
    assert seconds == pytest.approx(12.0) and "measured here" in source
    assert local_setup.expected_setup(done=True).startswith("nothing to do")
    assert "12 s" in local_setup.expected_setup(done=False)


def test_a_damaged_times_file_is_no_record(_cache: Path) -> None:
    _cache.mkdir(parents=True)
    (_cache / "build-times.json").write_text("{not json")
    assert local_setup.recorded_times() == []
    record_time("source", 1.0, jobs=1)
    assert [r["kind"] for r in local_setup.recorded_times()] == ["source"]


# --- the prebuilt server and the order of fallbacks ----------------------------------------------
def test_the_shim_runs_as_llama_server_in_this_interpreter(tmp_path: Path) -> None:
    shim = local_setup.write_shim(tmp_path / "bin" / "llama-server")
    text = shim.read_text()
    assert text.startswith("#!/bin/bash\n") and f"# python: {sys.executable}\n" in text
    assert 'exec -a "$0" ' in text and "serve_prebuilt" in text
    assert shim.stat().st_mode & 0o111
    assert local_setup.shim_usable(shim)
    gone = local_setup.write_shim(tmp_path / "other", python=str(tmp_path / "deleted-venv" / "python"))
    assert not local_setup.shim_usable(gone)
    assert not local_setup.shim_usable(tmp_path / "missing")


def test_server_binary_order(_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local.shutil, "which", lambda _: None)
    assert local.server_binary() is None
    shim = local_setup.write_shim(local_setup.prebuilt_shim())
    assert local.server_binary() == shim
    built = _cache / "bin" / "llama-server"
    built.write_bytes(b"elf")
    assert local.server_binary() == built  # a build, where there is one, is what runs
    monkeypatch.setenv("LABELER_LLAMA_SERVER", str(tmp_path / "nothing"))
    assert local.server_binary() is None


@pytest.fixture
def setup_steps(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """build_server with every real step replaced; `steps['calls']` records what ran."""
    steps: dict[str, Any] = {"calls": [], "prebuilt_error": None, "smoke_error": None}
    monkeypatch.setattr(local, "server_binary", lambda: None)

    def install_prebuilt(**_: Any) -> None:
        steps["calls"].append("install_prebuilt")
        if steps["prebuilt_error"]:
            raise LocalServerError(steps["prebuilt_error"])

    def smoke(binary: Path) -> None:
        steps["calls"].append(f"smoke {binary.name}")
        if steps["smoke_error"]:
            raise LocalServerError(steps["smoke_error"])

    def from_source(**_: Any) -> Path:
        steps["calls"].append("build")
        return Path("/built/llama-server")

    monkeypatch.setattr(local_setup, "install_prebuilt", install_prebuilt)
    monkeypatch.setattr(local, "smoke_test", smoke)
    monkeypatch.setattr(local, "_build_from_source", from_source)
    yield steps


def test_build_server_prefers_the_checked_prebuilt_server(setup_steps: dict[str, Any]) -> None:
    path = local.build_server(echo=False)
    assert path == local_setup.prebuilt_shim() and local_setup.shim_usable(path)
    assert setup_steps["calls"] == ["install_prebuilt", "smoke llama-server.trial"]
    assert not path.with_name("llama-server.trial").exists()
    assert [r["kind"] for r in local_setup.recorded_times()] == ["prebuilt"]


@pytest.mark.parametrize("where", ["prebuilt_error", "smoke_error"])
def test_build_server_builds_when_the_prebuilt_server_fails(setup_steps: dict[str, Any], where: str) -> None:
    setup_steps[where] = "illegal instruction"
    assert local.build_server(echo=False) == Path("/built/llama-server")
    assert setup_steps["calls"][-1] == "build"
    shim = local_setup.prebuilt_shim()
    assert not shim.exists() and not shim.with_name("llama-server.trial").exists()


def test_build_server_from_source_when_asked(setup_steps: dict[str, Any]) -> None:
    assert local.build_server(echo=False, prebuilt=False) == Path("/built/llama-server")
    assert setup_steps["calls"] == ["build"]


def test_install_prebuilt_never_builds_the_wheel_and_checks_the_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    codes = iter([0, -4])  # pip ok; the import dies with SIGILL

    def run(cmd: list[str], **_: Any) -> int:
        calls.append(cmd)
        return next(codes)

    monkeypatch.setattr(local_setup, "stream", run)
    with pytest.raises(LocalServerError, match="does not run on this CPU"):
        local_setup.install_prebuilt(log=tmp_path / "log", progress=quiet())
    assert calls[0][calls[0].index("--only-binary") + 1] == "xllamacpp"
    assert calls[0][-1] == local_setup.XLLAMACPP
    assert calls[1] == [sys.executable, "-c", "import xllamacpp"]


def test_serve_prebuilt_maps_llama_server_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Any] = []

    class Params:
        def __init__(self) -> None:
            self.model = types.SimpleNamespace(path="")
            self.cpuparams = types.SimpleNamespace(n_threads=-1)
            self.cpuparams_batch = types.SimpleNamespace(n_threads=-1)

    class Server:
        listening_address = "http://127.0.0.1:5"

        def __init__(self, params: Params) -> None:
            made.append(params)
            signal.raise_signal(signal.SIGTERM)  # what LocalServer.stop() sends

    monkeypatch.setitem(sys.modules, "xllamacpp", types.SimpleNamespace(CommonParams=Params, Server=Server))
    exits: list[int] = []
    monkeypatch.setattr(local_setup, "exit_now", exits.append)  # the real one ends the process at once
    tpl = tmp_path / "t.jinja"
    tpl.write_text("{{ x }}")
    before = signal.getsignal(signal.SIGTERM)
    argv = ["-m", "w.gguf", "--host", "127.0.0.1", "--port", "5", "-t", "2", "-c", "8192", "-np", "2", "--offline"]
    argv += ["--no-webui", "--alias", "gemma3-270m", "--swa-full", "--jinja", "--chat-template-file", str(tpl)]
    assert local_setup.serve_prebuilt(argv) == 0
    assert exits == [0]
    (p,) = made
    assert (p.model.path, p.hostnames, p.port, p.n_ctx, p.n_parallel) == ("w.gguf", ["127.0.0.1"], 5, 8192, 2)
    assert (p.cpuparams.n_threads, p.cpuparams_batch.n_threads) == (2, 2)
    assert (p.swa_full, p.offline, p.ui, p.use_jinja, p.chat_template) == (True, True, False, True, "{{ x }}")
    assert p.model_alias == {"gemma3-270m"}
    assert signal.getsignal(signal.SIGTERM) == before
