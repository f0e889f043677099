"""Log output of ``edge serve``: control characters escaped, secrets redacted,
optionally one JSON object per line.

Log messages carry text from visitors (URLs, User-Agents, site names from
query strings). A raw ``\\r``/``\\n`` there would forge a log line, an ESC
sequence would rewrite the operator's terminal: every C0 and C1 control
character (and DEL, and the Unicode line separators) of a message and of its
arguments is written as a visible escape (``\\n``, ``\\x1b``, ``\\u2028``).
Tracebacks keep their line breaks, but each continuation line is indented, so
no line of one can pass for a log record of its own. A ``token=`` query
parameter (the admin page's) is replaced by ``token=[redacted]`` wherever it
appears.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

# C0 controls, DEL, C1 controls, and the line/paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_TOKEN = re.compile(r"((?:^|[?&;\s])token=)[^&;\s\"']*", re.IGNORECASE)
_BEARER = re.compile(r"(bearer\s+)[^\s\"']+", re.IGNORECASE)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape(text: str) -> str:
    """``text`` on one line, control characters written as escapes."""
    return _CONTROL.sub(_escape_one, text)


def redact(text: str) -> str:
    return _BEARER.sub(r"\1[redacted]", _TOKEN.sub(r"\1[redacted]", text))


def clean(text: str) -> str:
    return escape(redact(text))


def _clean_block(text: str) -> str:
    """A traceback under its record: line breaks kept, every line indented."""
    lines = _CONTROL_BUT_NEWLINE.sub(_escape_one, redact(text)).split("\n")
    return "\n".join("    " + line for line in lines)


def message_of(record: logging.LogRecord) -> str:
    """The record's message with its arguments, made safe. Formatting is
    done first, then escaping, so an argument cannot smuggle a ``%``-format
    either; a message that fails to format is shown with its raw parts."""
    try:
        text = record.getMessage()
    except (TypeError, ValueError):
        text = f"{record.msg!s} {record.args!r}"
    return clean(text)


class SafeFormatter(logging.Formatter):
    """The text format with every message escaped (see the module doc)."""

    def __init__(self, fmt: str | None = TEXT_FORMAT, datefmt: str | None = None) -> None:
        super().__init__(fmt, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        safe = logging.makeLogRecord(record.__dict__)
        safe.msg, safe.args = message_of(record), None
        safe.exc_info, safe.exc_text, safe.stack_info = None, None, None
        line = super().format(safe)
        extra = self._extra(record)
        return f"{line}\n{_clean_block(extra)}" if extra else line

    def _extra(self, record: logging.LogRecord) -> str:
        parts = []
        if record.exc_info:
            parts.append(self.formatException(record.exc_info))
        elif record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(self.formatStack(record.stack_info))
        return "\n".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (ISO 8601, UTC), ``level``, ``logger``,
    ``message``, ``pid``, and ``exc`` when an exception is attached. JSON
    escapes every control character itself; messages are escaped and redacted
    as in the text format all the same, so both formats carry the same text."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message_of(record),
            "pid": record.process,
        }
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = redact(record.exc_text)
        return json.dumps(entry, ensure_ascii=True)


def log_config(level: str = "info", *, json_lines: bool = False) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ``edge serve``, handed to uvicorn as
    ``log_config`` so that every worker process, and uvicorn's own loggers
    (``uvicorn.error``, ``uvicorn.access``), write through the same formatter."""
    formatter = "json" if json_lines else "text"
    handler = {
        "class": "logging.StreamHandler",
        "formatter": formatter,
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "text": {"()": "edge.runtime.logs.SafeFormatter"},
            "json": {"()": "edge.runtime.logs.JsonFormatter"},
        },
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {
            name: {"handlers": [], "level": level.upper(), "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


def install(level: str = "info", *, json_lines: bool = False) -> None:
    """Configure this process's logging as ``log_config`` describes."""
    import logging.config

    logging.config.dictConfig(log_config(level, json_lines=json_lines))
