"""A gallery writer killed with SIGKILL mid-run, shared by the gallery's crash tests."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from model_store.gallery import Gallery

REPO_ROOT = Path(__file__).resolve().parents[2]

# adds 16-d items one at a time and removes every third one's predecessor, printing each change
# once it returned (it is on disk then); argv: the folder, and optionally the compaction's records
KILLED_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from PIL import Image
    from model_store.gallery import Compaction, Gallery, make_thumbnail
    compaction = Compaction(records=int(sys.argv[2]), fraction=0) if len(sys.argv) > 2 else None
    gallery = Gallery.open(sys.argv[1], 16, compaction=compaction)
    thumb = make_thumbnail(Image.new("RGB", (8, 8)))
    rng = np.random.default_rng(0)
    while True:
        (item,) = gallery.add(rng.normal(size=(1, 16)), ["x"], [None], [thumb])
        print("add", item.id, flush=True)  # printed only once it is on disk
        if item.id % 3 == 2:
            gallery.remove(item.id - 1)
            print("del", item.id - 1, flush=True)
    """
)


def kill_writer_midway(directory: Path, adds: int, *writer_args: str) -> tuple[Gallery, set[int]]:
    """Run KILLED_WRITER on ``directory`` until ``adds`` adds were acknowledged, SIGKILL it, reload
    the gallery and check that it holds every acknowledged change and at most the one in flight.
    Returns the reloaded gallery and the ids it holds."""
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(directory), *writer_args],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert writer.stdout is not None
    added, removed = [], set()
    deadline = time.monotonic() + 60
    while len(added) < adds and time.monotonic() < deadline:
        kind, item_id = writer.stdout.readline().split()
        (added.append if kind == "add" else removed.add)(int(item_id))
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    assert len(added) == adds, "the writer did not get going"
    last = added[-1]
    # the one change that may have been in flight when it was killed
    maybe_added = {last + 1}
    maybe_removed = {last - 1} if last % 3 == 2 and last - 1 not in removed else set()
    reloaded = Gallery.load(directory)
    present = {item.id for item in reloaded.items()}
    assert set(added) - removed - maybe_removed <= present
    assert present <= (set(added) - removed) | maybe_added
    assert reloaded.next_id in (last + 1, last + 2)
    return reloaded, present
