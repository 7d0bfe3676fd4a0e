"""How a guard classifies the exceptions an operation raises: a retry class
(`networkError`, `timeout`, `rateLimited`, `serverError` or None), an error
code (matched against `retryableErrors`, `nonRetryableErrors` and the
breaker's `ignoredErrors`) and the server's pushback in milliseconds."""
from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import errno
import socket
import time
from dataclasses import dataclass
from typing import Callable, Optional

_NETWORK_ERRNOS = {
    errno.ECONNREFUSED: "ECONNREFUSED", errno.ECONNRESET: "ECONNRESET", errno.ECONNABORTED: "ECONNABORTED",
    errno.EPIPE: "EPIPE", errno.ENETUNREACH: "ENETUNREACH", errno.EHOSTUNREACH: "EHOSTUNREACH",
    errno.ENETDOWN: "ENETDOWN", errno.EHOSTDOWN: "EHOSTDOWN", errno.ENOTCONN: "ENOTCONN",
}
_GRPC_CLASS = {
    "UNAVAILABLE": "serverError", "INTERNAL": "serverError", "UNKNOWN": "serverError", "ABORTED": "serverError",
    "DEADLINE_EXCEEDED": "timeout", "RESOURCE_EXHAUSTED": "rateLimited",
}


@dataclass(frozen=True)
class Classification:
    condition: Optional[str]  # networkError, timeout, rateLimited, serverError, or None
    code: str
    pushback_ms: Optional[int] = None  # negative: do not retry


Classifier = Callable[[BaseException], Optional[Classification]]


def standard(error: BaseException) -> Classification:
    """The standard classifier (docs in clients/python/README.md)."""
    own = getattr(error, "fusebox_classification", None)
    if callable(own):
        c = own()
        if isinstance(c, Classification):
            return c
    from .errors import GuardTimeoutError
    if isinstance(error, GuardTimeoutError):
        return Classification("timeout", "timeout")
    if isinstance(error, (asyncio.CancelledError, concurrent.futures.CancelledError)):
        return Classification(None, "cancelled")
    if isinstance(error, (socket.timeout, TimeoutError, asyncio.TimeoutError)):
        return Classification("timeout", "net.ETIMEDOUT")
    if isinstance(error, socket.gaierror):
        return Classification("networkError", "net.dns")
    if isinstance(error, OSError) and error.errno in _NETWORK_ERRNOS:
        return Classification("networkError", "net." + _NETWORK_ERRNOS[error.errno])
    if isinstance(error, OSError) and error.errno == errno.ETIMEDOUT:
        return Classification("timeout", "net.ETIMEDOUT")
    if isinstance(error, ConnectionError):
        return Classification("networkError", "net.closed")
    grpc_code = _grpc_code(error)
    if grpc_code is not None:
        return Classification(_GRPC_CLASS.get(grpc_code), "grpc." + grpc_code, _grpc_pushback(error))
    status = _http_status(error)
    if status is not None:
        if status >= 500:
            condition = "serverError"
        elif status == 429:
            condition = "rateLimited"
        elif status == 408:
            condition = "timeout"
        else:
            condition = None
        return Classification(condition, f"http.{status}", _retry_after_ms(error))
    return Classification(None, type(error).__name__)


def _grpc_code(error: BaseException) -> Optional[str]:
    code = getattr(error, "code", None)
    if callable(code) and type(error).__module__.startswith("grpc"):
        try:
            c = code()
            return getattr(c, "name", None)
        except Exception:  # noqa: BLE001 - a broken error object is just unclassified
            return None
    return None


def _grpc_pushback(error: BaseException) -> Optional[int]:
    trailing = getattr(error, "trailing_metadata", None)
    if not callable(trailing):
        return None
    try:
        for key, value in trailing() or ():
            if key == "grpc-retry-pushback-ms":
                try:
                    return int(value)
                except ValueError:
                    return -1  # gRPC: a pushback that is not a number means "do not retry"
    except Exception:  # noqa: BLE001
        return None
    return None


def _http_status(error: BaseException) -> Optional[int]:
    for attr in ("status_code", "status", "code"):
        value = getattr(error, attr, None)
        if isinstance(value, int) and 100 <= value <= 599:
            return value
    response = getattr(error, "response", None)
    value = getattr(response, "status_code", None) or getattr(response, "status", None)
    if isinstance(value, int) and 100 <= value <= 599:
        return value
    return None


def _retry_after_ms(error: BaseException) -> Optional[int]:
    headers = getattr(error, "headers", None) or getattr(getattr(error, "response", None), "headers", None)
    if headers is None:
        return None
    try:
        value = headers.get("Retry-After")
    except Exception:  # noqa: BLE001
        return None
    if value is None:
        return None
    value = str(value).strip()
    if value.isdigit():
        return int(value) * 1000
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0, int((when.timestamp() - time.time()) * 1000))
    except (TypeError, ValueError):
        return None  # a Retry-After that is neither seconds nor an HTTP date is ignored


def or_else(first: Classifier, then: Callable[[BaseException], Classification] = standard) -> Callable[[BaseException], Classification]:
    """A classifier that asks `first`, and `then` (the standard one) for what `first` does not know."""
    def classify(error: BaseException) -> Classification:
        return first(error) or then(error)
    return classify
