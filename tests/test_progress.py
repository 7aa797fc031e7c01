"""Progress output: a bar on a terminal, plain log lines (no carriage returns or cursor codes) elsewhere."""

from __future__ import annotations

import io
import logging

from training.progress import LogProgress, progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_progress_is_one_log_line_per_tenth(caplog):
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger="training.progress"):
        bar = progress(97, "epoch 3", stream=stream)
        assert isinstance(bar, LogProgress)
        for step in range(97):
            bar.set_postfix(loss=f"{4 - step / 100:.3f}")
            bar.update(1)
        bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10
    assert lines[0] == "epoch 3: 10/97 loss=3.910" and lines[-1] == "epoch 3: 97/97 loss=3.040"
    assert stream.getvalue() == ""  # nothing drawn
    assert not any("\r" in line or "\x1b" in line for line in lines)


def test_a_terminal_gets_a_bar_and_a_disabled_one_writes_nothing(caplog):
    terminal = _Terminal()
    bar = progress(4, "test center", stream=terminal)
    bar.update(4)
    bar.close()
    assert "test center" in terminal.getvalue() and "\r" in terminal.getvalue()
    quiet = io.StringIO()
    with caplog.at_level(logging.INFO, logger="training.progress"):
        off = progress(4, "rank 1", enabled=False, stream=quiet)
        off.update(4)
        off.close()
    assert quiet.getvalue() == "" and not caplog.records
