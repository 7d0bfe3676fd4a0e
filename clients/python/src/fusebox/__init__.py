"""Fusebox client SDK for Python: guards that share their circuit breakers
with the whole fleet through fuseboxd (see clients/python/README.md)."""
from .breaker import BreakerStateChange, BreakerStatus
from .classify import Classification, or_else, standard
from .client import AsyncFusebox, Fusebox
from .config import FuseboxConfig, parse_endpoints
from .errors import (BulkheadFullError, CircuitOpenError, FuseboxConfigurationError, FuseboxError, GuardError,
                     GuardTimeoutError, RateLimitedError)
from .guard import FallbackContext, Guard, StaticResponse
from .metrics import Metrics, PrometheusMetrics
from .state import GuardEvent

__all__ = [
    "AsyncFusebox", "BreakerStateChange", "BreakerStatus", "BulkheadFullError", "CircuitOpenError", "Classification",
    "FallbackContext", "Fusebox", "FuseboxConfig", "FuseboxConfigurationError", "FuseboxError", "Guard", "GuardError",
    "GuardEvent", "GuardTimeoutError", "Metrics", "PrometheusMetrics", "RateLimitedError", "StaticResponse", "or_else",
    "parse_endpoints", "standard",
]
__version__ = "0.1.0"
