"""Runs from start to end: create or reopen the run directory, ingest the corpus, start the backends
(including the embedded local server when a member's base_url is "local"), label, summarise."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
import platform
import shutil
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from labeler import __version__
from labeler.confidence.run import combine_run
from labeler.config import LOCAL, Endpoint, TaskConfig
from labeler.errors import RateLimitedTooLong, RunStoreError
from labeler.inputs import read_rows, warn_on_stderr
from labeler.label.backends import Backend, OpenAIBackend
from labeler.label.multi_elements import multi_builder
from labeler.label.profiles import profile_for
from labeler.label.progress import Progress
from labeler.label.prompts import RequestBuilder
from labeler.label.runner import RunSummary, label_pending
from labeler.runlock import RunLock
from labeler.store import Cache, RunStore
from labeler.tasktypes.gold import canonical_rows
from labeler.tasktypes.registry import for_task


def new_run_id(task: TaskConfig) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{task.name}"


def cache_path(run_dir: Path) -> Path:
    env = os.environ.get("LABELER_CACHE")
    return Path(env) if env else run_dir.resolve().parent / "cache.sqlite"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def template_hashes(task: TaskConfig) -> dict[str, str]:
    return {m.name: RequestBuilder.for_member(task, m).template.hash for m in task.members}


def build_manifest(task: TaskConfig, input_path: Path, run_id: str) -> dict[str, Any]:
    members = []
    for m in task.members:
        builder = RequestBuilder.for_member(task, m)
        params = builder.build("…").params()
        params.pop("grammar", None)
        entry = {
            "name": m.name,
            "endpoint": {k: v for k, v in asdict(m.endpoint).items() if k != "api_key_env"},
            "profile": profile_for(m.endpoint).name,
            "template": str(builder.template.path),
            "template_hash": builder.template.hash,
            "params": params,
        }
        multi = multi_builder(task, m, builder)
        if multi is not None:  # K items a request: the template that renders them
            entry.update(multi_template=str(multi.template.path), multi_template_hash=multi.template.hash)
        members.append(entry)
    return {
        "run_id": run_id,
        "task": task.name,
        "config_path": str(task.path),
        "config": task.raw,
        "labels": list(task.label_names),
        "input": {"path": str(input_path), "sha256": _file_sha256(input_path)},
        "members": members,
        "labeler_version": __version__,
        "python": platform.python_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


@contextlib.asynccontextmanager
async def open_backends(task: TaskConfig) -> AsyncIterator[dict[str, Backend]]:
    """One backend per member; the embedded server is started once per local model, and stopped. A member
    with several endpoints gets an EndpointPool over one backend per replica."""
    from labeler.label.endpoints import EndpointPool
    from labeler.label.local import LocalServer

    async with contextlib.AsyncExitStack() as stack:
        local_urls: dict[str, str] = {}
        backends: dict[str, Backend] = {}
        for m in task.members:
            ep = m.endpoint
            if ep.endpoints:

                def replica(r: Endpoint) -> Backend:
                    return OpenAIBackend(base_url=r.base_url, api_key=r.api_key(), timeout=r.timeout)

                pool = EndpointPool.from_endpoint(ep, replica)
                stack.push_async_callback(pool.aclose)
                backends[m.name] = pool
                continue
            base_url = ep.base_url
            if base_url == LOCAL:
                if ep.model not in local_urls:
                    local_urls[ep.model] = await stack.enter_async_context(LocalServer(ep.model))
                base_url = local_urls[ep.model]
            backend = OpenAIBackend(base_url=base_url, api_key=ep.api_key(), timeout=ep.timeout)
            stack.push_async_callback(backend.aclose)
            backends[m.name] = backend
        yield backends


def summarize(store: RunStore, seconds: float) -> RunSummary:
    t = store.totals()
    return RunSummary(
        counts=store.status_counts(),
        input_tokens=int(t["input_tokens"]),
        output_tokens=int(t["output_tokens"]),
        cost=float(t["cost"]),
        cached=int(t["cached"]),
        seconds=seconds,
        dropped=int(t["dropped"]),
    )


async def _label(
    task: TaskConfig, store: RunStore, *, limit: int | None, retry_failed: bool, show_progress: bool
) -> RunSummary:
    cache = Cache(cache_path(store.run_dir))
    start = time.monotonic()
    try:
        async with open_backends(task) as backends, _graceful_stop() as stop:
            online = True
            if task.batch.enabled:  # the Batch API first; what it leaves goes one item a request, with retries
                online = await _batches(task, store, cache, stop=stop, limit=limit, show_progress=show_progress)
                retry_failed = True
            pending = sum(store.count_pending(m.name, retry_failed=retry_failed) for m in task.members)
            total = pending if limit is None else min(pending, limit * len(task.members))
            progress = Progress(total) if show_progress and online and pending else None
            try:
                if online and not stop.is_set():
                    await label_pending(
                        task,
                        store,
                        cache,
                        backends,
                        limit=limit,
                        retry_failed=retry_failed,
                        progress=progress,
                        stop=stop,
                        single=task.batch.enabled,
                    )
            finally:
                if progress is not None:
                    progress.finish()
        combine_run(store, task)  # per-item agreement across members (and the label, with several)
    finally:
        cache.close()
    if stop.is_set():
        raise KeyboardInterrupt  # the CLI says how to resume and exits 130
    return summarize(store, time.monotonic() - start)


async def _batches(
    task: TaskConfig, store: RunStore, cache: Cache, *, stop: asyncio.Event, limit: int | None, show_progress: bool
) -> bool:
    """Plan, submit, poll and ingest the run's batches (labeler.label.batch_api); True once none is running."""
    from labeler.label.batch_api import BatchRun

    batches = BatchRun(task, store, cache, show_progress=show_progress)
    try:
        return await batches.run(stop=stop, limit=limit)
    finally:
        await batches.aclose()


async def cancel_run(run_dir: Path) -> list[str]:
    """`labeler cancel RUN_DIR`: cancel the run's batches still running (one line per part)."""
    from labeler.label.batch_api import BatchRun

    if not (run_dir / "manifest.json").exists():
        RunStore.open(run_dir)  # raises the one-line "not a run directory" error
    with RunLock(run_dir):
        store = RunStore.open(run_dir)
        cache = Cache(cache_path(run_dir))
        batches = BatchRun(store.task(), store, cache)
        try:
            return await batches.cancel()
        finally:
            await batches.aclose()
            cache.close()
            store.close()


@contextlib.asynccontextmanager
async def _graceful_stop() -> AsyncIterator[asyncio.Event]:
    """Ctrl-C or SIGTERM sets the event: the workers store the answers in flight and stop. A second
    Ctrl-C cancels at once (answers in flight are then lost, and asked again on resume)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main = asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set() and main is not None:
            main.cancel()
        stop.set()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
            pass
    try:
        yield stop
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def start_run(
    task: TaskConfig,
    *,
    input_path: Path | None = None,
    run_dir: Path | None = None,
    limit: int | None = None,
    show_progress: bool = True,
    strict: bool = True,
) -> tuple[Path, RunSummary]:
    input_path = input_path or task.input_path
    if input_path is None:
        raise RunStoreError("no input: set input.path in the config or pass --input FILE")
    run_id = new_run_id(task)
    run_dir = run_dir or Path("runs") / run_id
    rows = canonical_rows(for_task(task), read_rows(
        input_path,
        id_column=task.id_column,
        text_column=task.text_column,
        gold_column=task.gold_column,
        strict=strict,
        warn=warn_on_stderr,
    ))
    first = next(rows)  # reads and checks the header before anything is written
    manifest = build_manifest(task, input_path, run_dir.name)
    manifest["input"]["strict"] = strict  # a resume that has to ingest again reads the file the same way
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir):  # one labeling process per run directory
        try:
            store = RunStore.create(run_dir, manifest)
            try:
                store.ingest(itertools.chain([first], rows), members=[m.name for m in task.members])
            except BaseException:
                store.close()
                raise
        except Exception:  # bad input (or an unwritable folder): leave no half-made run behind
            _discard_run_dir(run_dir, created=created)
            raise
        nothing_labeled = False
        try:
            summary = await _label(task, store, limit=limit, retry_failed=False, show_progress=show_progress)
        except RateLimitedTooLong:  # the server answered, and asks to wait: the run stays, to be resumed
            raise
        except Exception:  # failed before its first item (e.g. the local model not installed): leave nothing
            nothing_labeled = not store.status_counts()
            raise
        finally:
            store.close()
            if nothing_labeled:
                _discard_run_dir(run_dir, created=created)
    return run_dir, summary


_RUN_FILES = ("manifest.json", "manifest.json.tmp", "run.sqlite", "run.sqlite-wal", "run.sqlite-shm", ".lock")


def _discard_run_dir(run_dir: Path, *, created: bool) -> None:
    """Undo what start_run made: the whole directory if it created it, else only its own files."""
    if created:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for name in _RUN_FILES:
        with contextlib.suppress(FileNotFoundError):
            (run_dir / name).unlink()


def load_run_task(store: RunStore) -> TaskConfig:
    """The task config a run was started with, checked against the manifest's template hashes."""
    manifest = store.manifest
    task = store.task()
    now = template_hashes(task)
    then = {m["name"]: m["template_hash"] for m in manifest["members"]}
    if now != then:
        raise RunStoreError(
            f"the templates changed since {store.run_dir.name} started ({then} → {now}); start a new run "
            "(answers already paid for come from the cache)"
        )
    return task


async def resume_run(
    run_dir: Path, *, limit: int | None = None, retry_failed: bool = True, show_progress: bool = True
) -> RunSummary:
    if not (run_dir / "manifest.json").exists():
        RunStore.open(run_dir)  # raises the one-line "not a run directory" error
    with RunLock(run_dir):  # one labeling process per run directory
        store = RunStore.open(run_dir)
        try:
            task = load_run_task(store)
            if store.get_meta("ingested") != "1":  # killed while ingesting: the transaction rolled back
                input_path = _unchanged_input(store)
                store.ingest(
                    canonical_rows(for_task(task), read_rows(
                        input_path,
                        id_column=task.id_column,
                        text_column=task.text_column,
                        gold_column=task.gold_column,
                        strict=bool(store.manifest["input"].get("strict", True)),
                        warn=warn_on_stderr,
                    )),
                    members=[m.name for m in task.members],
                )
            return await _label(task, store, limit=limit, retry_failed=retry_failed, show_progress=show_progress)
        finally:
            store.close()


def _unchanged_input(store: RunStore) -> Path:
    """The run's input file, checked against the sha256 the manifest recorded when the run started."""
    recorded = store.manifest["input"]
    path = Path(recorded["path"])
    if not path.is_file():
        raise RunStoreError(
            f"the input {path} of {store.run_dir.name} is gone and the run holds no corpus yet; restore the file "
            "(manifest.json names it) or start a new run"
        )
    if _file_sha256(path) != recorded.get("sha256"):
        raise RunStoreError(
            f"the input {path} changed since {store.run_dir.name} started (its sha256 differs from the manifest's); "
            "restore the original file or start a new run with `labeler run`"
        )
    return path
