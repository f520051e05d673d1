"""Logging: every line carries the running task's id; `kb serve` writes one JSON object a line by default."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from pythonjsonlogger.json import JsonFormatter

from bot.tasks import TaskIdFilter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [task %(task_id)s]: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(task_id)s %(message)s"
# Client libraries that log every HTTP request at INFO (weaviate-client's REST calls: a dozen lines per answer);
# they speak only at WARNING unless the operator asks for DEBUG.
CHATTY_LOGGERS = ("httpx", "httpcore")


def formatter(kind: str) -> logging.Formatter:
    if kind == "json":
        return JsonFormatter(JSON_FIELDS, rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                             timestamp=False)
    return logging.Formatter(TEXT_FORMAT)


def configure(kind: str, *, path: Path | None = None, level: str | None = None) -> None:
    """Replace the root handlers with one (stderr, or a file) in the given format, task ids included."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    handler: logging.Handler
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(kind))
    handler.addFilter(TaskIdFilter())
    root.addHandler(handler)
    if level:
        root.setLevel(level.upper())
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if root.level == logging.DEBUG else logging.WARNING)
