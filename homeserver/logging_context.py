"""Logging set-up, and the request id carried into every log line.

The request id lives in a context variable: the HTTP layer sets it when a request
arrives, coroutines started for that request inherit it, and the storage thread pool
copies the context into its threads.
"""

from __future__ import annotations

import contextvars
import logging
import logging.config
from pathlib import Path
from typing import Any

import yaml

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "current_request_id", default="sentinel"
)

DEFAULT_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(request)s - %(message)s"

# Synapse log configs name Synapse's own classes; map them to ours so an admin's file works.
_SYNAPSE_CLASS_SUBSTITUTES = {
    "synapse.logging.context.LoggingContextFilter": "homeserver.logging_context.RequestIdFilter",
    "synapse.logging.handlers.PeriodicallyFlushingMemoryHandler": "logging.handlers.MemoryHandler",
}


class RequestIdFilter(logging.Filter):
    """Adds ``record.request``: the id of the request being handled, or "sentinel"."""

    def __init__(self, name: str = "", request: str | None = None) -> None:
        # ``request`` is accepted because Synapse's configs pass it to their filter.
        super().__init__(name)

    def filter(self, record: logging.LogRecord) -> bool:
        record.request = current_request_id.get()
        return True


class LogConfigError(Exception):
    pass


def setup_logging(log_config: Path | None, level: int = logging.INFO) -> None:
    if log_config is None:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(DEFAULT_FORMAT))
        handler.addFilter(RequestIdFilter())
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(level)
        logging.getLogger("twisted").setLevel(logging.WARNING)
    else:
        try:
            data = yaml.safe_load(log_config.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a mapping")
            logging.config.dictConfig(_substitute_synapse_classes(data))
        except (OSError, ValueError, TypeError, AttributeError, ImportError, yaml.YAMLError) as e:
            raise LogConfigError(
                f"config key 'log_config' has value '{log_config}': expected a readable Python "
                f"logging dictConfig YAML file ({e})"
            ) from None
        _ensure_request_attribute()
    _route_twisted_logs()


def _substitute_synapse_classes(data: Any) -> Any:
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if key in ("()", "class") and value in _SYNAPSE_CLASS_SUBSTITUTES:
                value = _SYNAPSE_CLASS_SUBSTITUTES[value]
            elif key == "period" and data.get("class") in _SYNAPSE_CLASS_SUBSTITUTES:
                continue  # MemoryHandler has no periodic flush
            out[key] = _substitute_synapse_classes(value)
        return out
    if isinstance(data, list):
        return [_substitute_synapse_classes(v) for v in data]
    return data


def _ensure_request_attribute() -> None:
    # A format string naming %(request)s must not fail on handlers the admin left unfiltered.
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())


_twisted_routed = False


def _route_twisted_logs() -> None:
    global _twisted_routed
    if _twisted_routed:
        return
    from twisted.logger import STDLibLogObserver, globalLogBeginner

    observer: Any = STDLibLogObserver(name="twisted")  # provides ILogObserver (zope)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False, discardBuffer=True)
    _twisted_routed = True
