"""Structured logging: JSON lines to `LOG_PATH`, readable lines on the console, secrets redacted.

Use `get_logger(__name__).info("event_name", key=value, ...)`: the first argument is a stable event
name, keyword arguments become the record's `fields`. Every output — each string of a JSON line before it is
encoded, each console line — passes through `Redactor`, which replaces the configured secret values and any
PEM block with `[REDACTED]`, so a secret cannot reach a log even if a caller formats it into a message by
mistake. (Redacting the encoded JSON instead would miss a secret containing `"` or `\\`, which JSON escapes.)

JSON line shape: `{"ts": "...Z", "ts_ms": int, "level": "INFO", "logger": "kbtc.x", "event": "...",
"fields": {...}}` (+ `"exc"` with the traceback text when an exception is logged).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|$)", re.DOTALL)
REDACTED = "[REDACTED]"
_RESERVED_KWARGS = {"exc_info", "stack_info", "stacklevel", "extra"}
_HANDLER_MARK = "_kbtc_handler"


class Redactor:
    """Replaces registered secret strings and PEM blocks in text."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._longest_first: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def add(self, *secrets: str | None) -> None:
        """Register secret values (short values are ignored: they would redact ordinary text)."""
        with self._lock:
            for secret in secrets:
                if secret and len(secret) >= 6:
                    self._secrets.add(secret)
                    # PEM bodies may be logged line by line; register each long line too.
                    self._secrets.update(line for line in secret.splitlines() if len(line) >= 16)
            self._longest_first = tuple(sorted(self._secrets, key=len, reverse=True))

    def clear(self) -> None:
        """Forget every registered secret (tests)."""
        with self._lock:
            self._secrets.clear()
            self._longest_first = ()

    def __call__(self, text: str) -> str:
        text = _PEM_BLOCK.sub(REDACTED, text)
        for secret in self._longest_first:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


redactor = Redactor()


class EventLogger(logging.LoggerAdapter[logging.Logger]):
    """Logger whose keyword arguments become structured `fields`."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        fields = {key: kwargs.pop(key) for key in list(kwargs) if key not in _RESERVED_KWARGS}
        extra = dict(kwargs.get("extra") or {})
        extra["fields"] = {**extra.get("fields", {}), **fields}
        kwargs["extra"] = extra
        return msg, kwargs


def get_logger(name: str) -> EventLogger:
    """Return the structured logger for a module."""
    return EventLogger(logging.getLogger(name), {})


def _jsonable(value: Any) -> Any:
    """A JSON-encodable copy of `value` with every string in it (keys too) redacted."""
    if isinstance(value, str):
        return redactor(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {redactor(str(k)): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    return redactor(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, every string redacted before encoding."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, tz=UTC)
        payload: dict[str, Any] = {
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
            "ts_ms": int(record.created * 1000),
            "level": record.levelname,
            "logger": record.name,
            "event": redactor(record.getMessage()),
            "fields": _jsonable(getattr(record, "fields", {})),
        }
        if record.exc_info:
            payload["exc"] = redactor(self.formatException(record.exc_info))
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """`HH:MM:SS LEVEL logger event key=value ...`, redacted."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, tz=UTC).strftime("%H:%M:%S")
        # Redacted before formatting: `str()` of a container shows its strings escaped (`\\` for `\`).
        fields = _jsonable(getattr(record, "fields", {}) or {})
        tail = " ".join(f"{key}={value}" for key, value in fields.items())
        line = f"{ts} {record.levelname:<7} {record.name} {record.getMessage()}"
        if tail:
            line = f"{line} {tail}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return redactor(line)


def configure_logging(
    log_path: Path | None,
    level: str = "INFO",
    *,
    console: bool = True,
    secrets: Iterable[str | None] = (),
) -> None:
    """Install the JSONL file handler and the console handler on the `kbtc` logger (idempotent)."""
    redactor.add(*secrets)
    root = logging.getLogger("kbtc")
    root.setLevel(level)
    root.propagate = False
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(handler)
        handler.close()
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_path, encoding="utf-8")
        file_handler.setFormatter(JsonFormatter())
        setattr(file_handler, _HANDLER_MARK, True)
        root.addHandler(file_handler)
    if console:
        console_handler = logging.StreamHandler(sys.stderr)
        console_handler.setFormatter(ConsoleFormatter())
        setattr(console_handler, _HANDLER_MARK, True)
        root.addHandler(console_handler)
