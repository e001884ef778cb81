"""Instructions per priced row, counted by callgrind: the pricing kernel of (a) measured the same on any host.

Wall-clock and CPU rates on the shared 2-core machines move by ±25 % within minutes (docs/BENCHMARKS.md), more
than most kernel changes; an instruction count does not (±1 a row between runs). Ours: the expressions of
`benchmarks.edges.ours` (kbtc.edge.pricing.price on the benchmark's rows, in-memory engine) on `--rows` rows,
`--repeats` times, one Polars thread, minus a run that builds the same rows and prices nothing. Reference, same
run and method: the benchmark's per-row Python loop on `--loop-rows` rows. Both per row. Requires valgrind
(without it the script says so and exits 2).

Run: python -m benchmarks.pricing_instructions [--rows 300000] [--repeats 4] [--loop-rows 20000]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import bench_line

_TOTAL = re.compile(r"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def _child(kind: str, rows: int, repeats: int) -> None:
    from benchmarks.edges import OUTPUTS, pricing_rows, python_loop
    from kbtc.edge.params import EdgeParams
    from kbtc.edge.pricing import price

    params = EdgeParams()
    frame = pricing_rows(rows)
    for _ in range(repeats):
        if kind == "price":
            # The in-memory engine: the same kernels as `benchmarks.edges.ours`, without the streaming engine's
            # scheduler, whose polling makes the count move from run to run.
            price(frame.lazy(), params).select(OUTPUTS).collect(engine="in-memory")
        elif kind == "loop":
            python_loop(frame, params)


def _instructions(kind: str, rows: int, repeats: int, workdir: Path) -> int:
    out = workdir / f"{kind}.callgrind"
    # One thread each (spinning BLAS and Polars threads would count) and a fixed hash seed: the count repeats.
    env = {**os.environ, "POLARS_MAX_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
         "benchmarks.pricing_instructions", "--child", kind, "--rows", str(rows), "--repeats", str(repeats)],
        check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    match = _TOTAL.search(out.read_text())
    if match is None:
        raise RuntimeError(f"no instruction total in {out}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--loop-rows", type=int, default=20_000)
    parser.add_argument("--child", choices=("price", "loop", "baseline"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.rows, args.repeats)
        return
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: no instruction counts", file=sys.stderr)
        raise SystemExit(2)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        priced = _instructions("price", args.rows, args.repeats, workdir)
        baseline = _instructions("baseline", args.rows, args.repeats, workdir)
        looped = _instructions("loop", args.loop_rows, 1, workdir)
        loop_baseline = _instructions("baseline", args.loop_rows, 1, workdir)
    ours = (priced - baseline) / (args.rows * args.repeats)
    reference = (looped - loop_baseline) / args.loop_rows
    print(bench_line("pricing_instructions_per_row", ours, "instructions", reference, higher_is_better=False))


if __name__ == "__main__":
    main()
