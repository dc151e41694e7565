"""The run store: the only place that speaks SQL. See labeler.store.run for the tables."""

from labeler.store.cache import Cache
from labeler.store.run import RunStore

__all__ = ["Cache", "RunStore"]
