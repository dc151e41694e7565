"""The labeler exception tree.

    LabelerError                 anything a user can act on; the CLI prints str(err) on one line
    ├── ConfigError              a task config key is missing, unknown or has a bad value
    ├── InputError               the input file cannot be read as asked (columns, ids, encoding)
    ├── TemplateError            a prompt template fails to load or render
    ├── RunStoreError            a run directory is missing, damaged or from another task
    ├── LocalServerError         the embedded llama.cpp server cannot be built, found or started
    ├── CalibrationError         too few human labels to fit a calibrator, or a stored one is unreadable
    ├── RoutingError             a routing or budget setting is out of range, or nothing can be routed
    ├── ReviewError              a review tool's file or answer cannot be read or does not fit the run
    ├── StudyError               the cost/quality study cannot run on this input (too few human labels, ...)
    ├── TuneError                tuning cannot start: too few human labels, or a run without the answers it needs
    ├── AggregateError           the annotations cannot be aggregated by the chosen method (too little overlap)
    └── BackendError             a model server answered with an error
        ├── RetryableError       transient: 429, 5xx, timeout, dropped connection, garbled body
        ├── FatalError           will not get better by retrying: 400, 401, 403, 404, ...
        └── RateLimitedTooLong   rate limited for longer than retry.max_rate_limited_s: stop, resume later

Messages name the fix. Backend errors are translated from SDK errors in exactly one place
(`labeler.label.backends.translate_error`).
"""

from __future__ import annotations


class LabelerError(Exception):
    """Base class: an error the user can act on."""


class ConfigError(LabelerError):
    pass


class InputError(LabelerError):
    pass


class TemplateError(LabelerError):
    pass


class RunStoreError(LabelerError):
    pass


class LocalServerError(LabelerError):
    pass


class CalibrationError(LabelerError):
    pass


class RoutingError(LabelerError):
    pass


class ReviewError(LabelerError):
    pass


class StudyError(LabelerError):
    pass


class TuneError(LabelerError):
    """Tuning cannot start: too few human labels, or a run without the answers it needs."""


class AggregateError(LabelerError):
    """The chosen aggregation method cannot run on these annotations (e.g. CROWDLAB without overlap)."""


class BackendError(LabelerError):
    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.request_id = request_id


class RetryableError(BackendError):
    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, request_id=request_id)
        self.retry_after = retry_after

    @property
    def rate_limited(self) -> bool:
        """429, or 503 with a retry-after: the server asks us to slow down; nothing is broken."""
        return self.status == 429 or (self.status == 503 and self.retry_after is not None)


class FatalError(BackendError):
    pass


class RateLimitedTooLong(BackendError):
    """Not an item's failure: the run stops and its pending items stay pending for `labeler resume`."""


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The error to show from a task group: a LabelerError if there is one, else the first."""
    flat: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(reversed(exc.exceptions))
        else:
            flat.append(exc)
    for exc in flat:
        if isinstance(exc, LabelerError):
            return exc
    return flat[0]
