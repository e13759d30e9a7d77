"""structlog setup: JSON lines for machines, a console renderer for people on a TTY."""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType
from typing import Any, Literal

import structlog

from keeper.redact import redact_text

LogFormat = Literal["auto", "json", "console"]


def configure_logging(fmt: LogFormat = "auto", level: str = "info") -> None:
    """Configure structlog once for the process.

    Tick context (tick id, block number) is bound with structlog.contextvars, so every line
    a tick writes carries it without being passed around.
    """
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        _redact_urls,
    ]
    _route_stdlib_logging(shared, renderer, level)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def _redact_urls(_logger: Any, _method: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    """Whatever a line carries (a library's exception text, an endpoint), URLs in it are
    scheme://host:port only: provider URLs hold API keys."""
    for key, value in event.items():
        if isinstance(value, str) and "://" in value:
            event[key] = redact_text(value)
    return event


def _route_stdlib_logging(
    shared: list[structlog.typing.Processor], renderer: structlog.typing.Processor, level: str
) -> None:
    """APScheduler, web3 and urllib3 log through the stdlib: render their lines with the same
    processors, so with JSON logs every line the process writes is JSON. Uncaught exceptions
    (main thread or any other) become one JSON line too instead of a bare traceback."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    handler.set_name("keeper")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "keeper"]:
        root.removeHandler(old)  # configured again (tests, a second command): replace, not add
    root.addHandler(handler)
    root.setLevel(logging.getLevelNamesMapping()[level.upper()])
    # The scheduler says "job executed successfully" every tick; its warnings are what matter.
    logging.getLogger("apscheduler").setLevel(max(root.level, logging.WARNING))
    logging.captureWarnings(True)
    crash = structlog.get_logger("keeper.crash")

    def on_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        crash.critical("uncaught_exception", exc_info=(kind, exc, tb))

    def on_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            crash.critical(
                "uncaught_exception",
                thread=args.thread.name if args.thread else None,
                exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
            )

    sys.excepthook = on_uncaught
    threading.excepthook = on_thread


# Bound by a fleet's chain worker around each vault's tick (keeper/fleet_daemon.py); a tick
# clears its own context (tick id, block) at its start and end, but these stay.
VAULT_CONTEXT = ("chain", "vault")


def clear_tick_context() -> None:
    """Forget the previous tick's context, keeping which chain and vault this thread ticks."""
    kept = {k: v for k, v in structlog.contextvars.get_contextvars().items() if k in VAULT_CONTEXT}
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**kept)


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
