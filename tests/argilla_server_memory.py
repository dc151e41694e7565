"""Start the real argilla-server 2.8 (its FastAPI app, SQLite database, request schemas, task distribution)
without Elasticsearch and Redis, neither of which can be installed here: an in-memory search engine that
lists a dataset's records in insertion order (no text search, no filters) is registered as "memory", and
the start-up ping of Redis is skipped (only background jobs use it: re-computing record statuses after a
dataset's settings change, hub import/export and webhooks; the first is replaced by a no-op below).
Run with the argilla venv's python:

    ARGILLA_DATABASE_URL=sqlite+aiosqlite:///DB python argilla_server_memory.py PORT

Not a test module: tests/test_review_live_argilla.py runs it in a subprocess."""

from __future__ import annotations

import sys
from typing import Any, ClassVar

import argilla_server._app as server_app
import argilla_server.contexts.datasets as datasets_context
import uvicorn
from argilla_server.search_engine import base
from argilla_server.settings import settings


@base.SearchEngine.register(engine_name="memory")
class MemorySearchEngine(base.SearchEngine):
    records: ClassVar[dict[Any, list[Any]]] = {}  # dataset id -> record ids, shared by every instance

    @classmethod
    async def new_instance(cls) -> MemorySearchEngine:
        return cls()

    async def close(self) -> None:
        pass

    async def ping(self) -> bool:
        return True

    async def info(self) -> dict[str, Any]:
        return {"engine": "memory"}

    async def create_index(self, dataset: Any) -> None:
        self.records.setdefault(dataset.id, [])

    async def delete_index(self, dataset: Any) -> None:
        self.records.pop(dataset.id, None)

    async def configure_metadata_property(self, dataset: Any, metadata_property: Any) -> None:
        pass

    async def index_records(self, dataset: Any, records: Any) -> None:
        ids = self.records.setdefault(dataset.id, [])
        ids += [r.id for r in records if r.id not in ids]

    async def partial_record_update(self, record: Any, **update: Any) -> None:
        pass

    async def delete_records(self, dataset: Any, records: Any) -> None:
        gone = {r.id for r in records}
        self.records[dataset.id] = [i for i in self.records.get(dataset.id, []) if i not in gone]

    async def update_record_response(self, response: Any) -> None:
        pass

    async def delete_record_response(self, response: Any) -> None:
        pass

    async def update_record_suggestion(self, suggestion: Any) -> None:
        pass

    async def delete_record_suggestion(self, suggestion: Any) -> None:
        pass

    async def get_dataset_progress(self, dataset: Any) -> dict[str, Any]:
        return {}

    async def get_dataset_user_progress(self, dataset: Any, user: Any) -> dict[str, Any]:
        return {}

    async def search(self, dataset: Any, query: Any = None, filter: Any = None, sort: Any = None,
                     offset: int = 0, limit: int = 100) -> base.SearchResponses:  # fmt: skip
        ids = self.records.get(dataset.id, [])
        items = [base.SearchResponseItem(record_id=i, score=1.0) for i in ids[offset : offset + limit]]
        return base.SearchResponses(items=items, total=len(ids))

    async def compute_metrics_for(self, metadata_property: Any) -> Any:
        raise NotImplementedError("metadata metrics need a real search engine")

    async def similarity_search(self, *args: Any, **kwargs: Any) -> base.SearchResponses:
        return base.SearchResponses(items=[], total=0)


if __name__ == "__main__":
    settings.search_engine = "memory"
    server_app.configure_redis = lambda: None
    # the one background job a dataset update enqueues: re-computing record statuses after the task
    # distribution changed. Skipped: the live tests set the overlap once, before any record exists.
    datasets_context.dataset_jobs.update_dataset_records_status_job.delay = lambda *a, **k: None
    uvicorn.run(server_app.create_server_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
