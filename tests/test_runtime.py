"""Process set-up: logs that never print the locals of a failing frame (settings, customers' phones)."""

from __future__ import annotations

import pytest
import structlog

from siyu import runtime


def test_a_logged_exception_does_not_print_local_variables(capsys: pytest.CaptureFixture[str]) -> None:
    runtime.configure_logging()
    try:

        def process(batch: list[str]) -> None:
            phone = batch[0]
            raise ValueError(f"cannot store {len(phone)} characters")

        try:
            process(["+86139" + "12345678"])
        except ValueError:
            structlog.get_logger("test").exception("ingest.batch_failed")
        out = capsys.readouterr()
        text = out.out + out.err
        assert "ingest.batch_failed" in text and "cannot store 14 characters" in text
        assert "8613912345678" not in text
    finally:
        structlog.reset_defaults()
