"""Process-wide tuning applied when a siyu process starts: the server (`siyu serve`) and the worker."""

from __future__ import annotations

import gc
import sys

from siyu.config import Settings

_tuned = False


def tune(settings: Settings) -> None:
    """Collect young garbage every `gc_threshold` allocations (Python's default is 700) and freeze what
    start-up made (modules, settings, compiled SQL) out of the collector's sight.

    A batch of a thousand customers or events allocates tens of thousands of short-lived objects; with the
    default thresholds the collector ran hundreds of times per batch, walking every young object again
    (bench/journeys.py, one worker: planning 27-54 % faster). Reference cycles are still collected, later.
    """
    global _tuned
    if _tuned or settings.gc_threshold <= 0:
        return
    _tuned = True
    gc.collect()  # what start-up left over is garbage, not to be frozen with the rest
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(settings.gc_threshold, older, oldest)


def configure_logging() -> None:
    """structlog's console output, with tracebacks that never print local variables.

    structlog's default renders exceptions with Rich and every frame's locals: the settings (the database
    URL with its password, the secret key) and the customers' phones in the batch being processed.
    """
    import structlog

    tty = sys.stdout.isatty()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.StackInfoRenderer(),
            structlog.dev.set_exc_info,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(
                colors=tty,  # a log file or journald gets no escape codes
                exception_formatter=structlog.dev.RichTracebackFormatter(
                    show_locals=False, color_system="truecolor" if tty else None
                ),
            ),
        ],
        cache_logger_on_first_use=False,  # tests swap sys.stdout; a cached logger would keep a closed one
    )
