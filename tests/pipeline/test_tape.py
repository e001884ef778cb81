"""The tape: frames kept exactly, hourly rotation, and a crash-truncated file read up to its last flush."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kbtc.pipeline.tape import TapeWriter, read_tape, tape_files

HOUR_MS = 3_600_000
T0 = 1_764_000_000_000 - (1_764_000_000_000 % HOUR_MS)


def test_frames_round_trip_exactly_and_rotate_hourly(tmp_path: Path) -> None:
    frames = ['{"type":"ticker","price":"97000.01"}', "not json at all", '{"emoji":"₿"}']
    with TapeWriter(tmp_path, "coinbase", writer_id="w1") as tape:
        tape.write(frames[0], T0 + 1, "c1")
        tape.write(frames[1].encode(), T0 + 2, "c1")
        tape.write(frames[2], T0 + HOUR_MS + 3, "c2")
    files = tape_files(tmp_path, "coinbase")
    assert len(files) == 2
    records = list(read_tape(files))
    assert [r.raw for r in records] == frames
    assert [r.received_ts for r in records] == [T0 + 1, T0 + 2, T0 + HOUR_MS + 3]
    assert [r.connection_id for r in records] == ["c1", "c1", "c2"]


def test_reopening_a_file_appends_a_new_member(tmp_path: Path) -> None:
    for i in range(2):
        with TapeWriter(tmp_path, "kalshi", writer_id="same") as tape:
            tape.write(f"frame-{i}", T0 + i)
    assert [r.raw for r in read_tape(tape_files(tmp_path))] == ["frame-0", "frame-1"]


def test_truncated_file_yields_everything_before_the_damage(tmp_path: Path) -> None:
    tape = TapeWriter(tmp_path, "kalshi", writer_id="w", flush_interval_s=0.0)
    for i in range(100):
        tape.write(f"frame-{i}", T0 + i)
    path = tape.path
    assert path is not None
    size = path.stat().st_size
    tape.close()
    with path.open("r+b") as handle:
        handle.truncate(size - 7)  # cut into the final gzip trailer and data
    records = list(read_tape([path]))
    assert 0 < len(records) <= 100
    assert [r.raw for r in records] == [f"frame-{i}" for i in range(len(records))]


_WRITER = """
import sys, time
from pathlib import Path
from kbtc.pipeline.tape import TapeWriter
tape = TapeWriter(Path(sys.argv[1]), "coinbase", writer_id="crash", flush_interval_s=0.05)
i = 0
while True:
    tape.write(f"frame-{i}", int(time.time() * 1000))
    i += 1
    if i % 200 == 0:
        tape.flush()  # everything reported below is flushed: the test's lower bound is exact
        print(i, flush=True)
        time.sleep(0.01)
"""


def test_kill_9_loses_at_most_the_unflushed_tail(tmp_path: Path) -> None:
    with subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        reported = 0
        deadline = time.monotonic() + 30
        while reported < 2000 and time.monotonic() < deadline:
            reported = int(proc.stdout.readline())
        time.sleep(0.1)  # let it write (and time-flush) some more before the kill
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    records = list(read_tape(tape_files(tmp_path)))
    assert len(records) >= reported
    assert [r.raw for r in records] == [f"frame-{i}" for i in range(len(records))]
