"""The SDK's configuration."""
from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple, Union

from .errors import FuseboxConfigurationError
from .metrics import Metrics


def parse_endpoints(value: Union[str, Sequence[str]]) -> List[Tuple[str, int]]:
    """`HOST:PORT[,HOST:PORT…]` (IPv6 in brackets) or a list of `HOST:PORT` strings."""
    if not isinstance(value, (str, list, tuple)):
        raise FuseboxConfigurationError("endpoints", f"expected HOST:PORT[,HOST:PORT…] or a list of them, got {value!r}")
    items = [s.strip() for s in value.split(",")] if isinstance(value, str) else [str(s).strip() for s in value]
    if not items or items == [""]:
        raise FuseboxConfigurationError("endpoints", "none given; expected HOST:PORT[,HOST:PORT…]")
    out: List[Tuple[str, int]] = []
    for i, item in enumerate(items):
        if not item:
            raise FuseboxConfigurationError("endpoints", f"entry {i + 1} is empty")
        host, sep, port = item.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise FuseboxConfigurationError("endpoints", f"entry {i + 1} ({item!r}) is not HOST:PORT")
        if (host, int(port)) in out:
            raise FuseboxConfigurationError("endpoints", f"{item} is listed twice")
        out.append((host, int(port)))
    return out


@dataclass
class FuseboxConfig:
    """Where fuseboxd is, who this client is, and how the SDK behaves.

    `endpoints`: fuseboxd as `HOST:PORT`, or several (a string with commas or
    a list) in order of preference. `ca`, `cert`, `key`: PEM files of the CA
    that signed fuseboxd's certificate, and of this client's certificate
    (role `reporter`) and key. `client_id` (default HOSTNAME-PID) names this
    process in reports. `cache_dir` keeps the last registries fetched."""

    endpoints: Union[str, Sequence[str]]
    ca: str
    cert: str
    key: str
    client_id: Optional[str] = None
    cache_dir: str = ".fusebox/cache"
    registries: Sequence[str] = ("default",)
    server_name: Optional[str] = None
    startup_timeout: float = 5.0
    report_interval: float = 0.1
    report_batch_size: int = 1_000
    staleness_bound: float = 10.0
    permit_timeout: float = 1.0
    keepalive_interval: Optional[float] = 10.0
    keepalive_timeout: float = 5.0
    reconnect_backoff_base: float = 0.1
    reconnect_backoff_max: float = 10.0
    on_state_change: Optional[Callable] = None
    on_event: Optional[Callable] = None
    metrics: Optional[Metrics] = None
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("fusebox"))

    def checked(self) -> Tuple[List[Tuple[str, int]], bytes, bytes, bytes]:
        """The endpoints and the three PEM files' contents, or a FuseboxConfigurationError naming the field."""
        endpoints = parse_endpoints(self.endpoints)
        pems = []
        for name, path in (("ca", self.ca), ("cert", self.cert), ("key", self.key)):
            try:
                with open(path, "rb") as f:
                    pems.append(f.read())
            except OSError as e:
                raise FuseboxConfigurationError("tls", f"{name} file {path!r} cannot be read: {e.strerror or e}") from e
        if self.client_id is not None and not 1 <= len(self.client_id.encode()) <= 253:
            raise FuseboxConfigurationError("client_id", "must be 1-253 bytes")
        for name in ("report_interval", "staleness_bound", "permit_timeout", "startup_timeout", "keepalive_timeout",
                     "reconnect_backoff_base", "reconnect_backoff_max"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise FuseboxConfigurationError(name, f"must be a number of seconds above 0, got {value!r}")
        if self.keepalive_interval is not None and not (isinstance(self.keepalive_interval, (int, float)) and self.keepalive_interval > 0):
            raise FuseboxConfigurationError("keepalive_interval", f"must be None (off) or above 0, got {self.keepalive_interval!r}")
        if not isinstance(self.report_batch_size, int) or self.report_batch_size < 1:
            raise FuseboxConfigurationError("report_batch_size", f"must be a whole number of at least 1, got {self.report_batch_size!r}")
        if isinstance(self.registries, str) or not self.registries or not all(isinstance(r, str) and r for r in self.registries):
            raise FuseboxConfigurationError("registries", f"must be a list of registry names, got {self.registries!r}")
        if len(set(self.registries)) != len(self.registries):
            raise FuseboxConfigurationError("registries", f"a registry is listed twice: {list(self.registries)}")
        return endpoints, pems[0], pems[1], pems[2]

    def effective_client_id(self) -> str:
        return self.client_id or f"{socket.gethostname()}-{os.getpid()}"
