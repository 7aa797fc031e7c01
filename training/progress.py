"""Progress of long loops (training epochs, test-split evaluation): a tqdm bar on a terminal, and on
anything else (a log file, CI) one log line at each tenth of the way, without carriage returns or
cursor codes."""

from __future__ import annotations

import logging
import sys
from typing import Any

from tqdm import tqdm

log = logging.getLogger("training.progress")


class LogProgress:
    """The part of tqdm's interface the loops use (update, set_postfix, close), as log lines."""

    def __init__(self, total: int, desc: str, marks: int = 10):
        self.total, self.desc, self.done, self.postfix = total, desc, 0, ""
        self._next = 1
        self._marks = marks

    def update(self, n: int = 1) -> None:
        self.done += n
        while self.total and self._next <= self._marks and self.done * self._marks >= self._next * self.total:
            log.info("%s: %d/%d%s", self.desc, self.done, self.total, self.postfix)
            self._next += 1

    def set_postfix(self, **values: Any) -> None:
        self.postfix = " " + " ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        pass


def progress(total: int, desc: str, enabled: bool = True, stream: Any = None) -> tqdm | LogProgress:
    """A bar that disappears when done on a terminal, log lines elsewhere; nothing when not ``enabled``."""
    stream = stream or sys.stderr
    if enabled and hasattr(stream, "isatty") and stream.isatty():
        return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=stream)
    if enabled:
        return LogProgress(total, desc)
    return tqdm(total=total, disable=True)
