"""`python -m bench.run`: every measure (P1-P8) in turn, then the table on stdout and docs/performance.md.

Bounded: each measure caps its own duration, the whole default run takes about ten minutes on
two cores, and every process a measure starts is stopped before the next one begins. A measure
that fails is reported as an error row and the others still run; the exit status is 1 then.
"""

from __future__ import annotations

import argparse
import compileall
import importlib
import json
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench.common import ROOT, Context, Row, load_average
from bench.report import run_record, table, write_document
from bench.wrk_load import wrk_path

LAST_RUN = ROOT / "bench" / "results" / "last.json"  # git-ignored; what --rewrite reads
MEASURES = {
    "P1": "bench.p1_intake",
    "P2": "bench.p2_end_to_end",
    "P3": "bench.p3_mapping",
    "P4": "bench.p4_memory",
    "P5": "bench.p5_kill_switch",
    "P6": "bench.p6_startup",
    "P7": "bench.p7_drain",
    "P8": "bench.p8_reconcile",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default=",".join(MEASURES), help="comma-separated measures, e.g. P1,P3")
    parser.add_argument("--runs", type=int, default=3, help="rounds per measure (medians are reported; at least 3 for the record)")
    parser.add_argument("--quick", action="store_true", help="shorter runs and fewer deliveries: a smoke test, not a result")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy pass")
    parser.add_argument("--output", default=str(ROOT / "docs" / "performance.md"), help="where to write the report ('-' for nowhere)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (databases, logs, wrk scripts)")
    parser.add_argument("--rewrite", action="store_true",
                        help="measure nothing: write the report again from the last run's record and the current notes")
    args = parser.parse_args(argv)
    if args.rewrite:
        write_document(Path(args.output), json.loads(LAST_RUN.read_text()))
        print(f"wrote {args.output} from {LAST_RUN}")
        return 0

    wanted = [m.strip().upper() for m in args.only.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in MEASURES]
    if unknown:
        parser.error(f"unknown measure(s) {unknown}; choose from {', '.join(MEASURES)}")
    if "P1" in wanted:
        wrk_path()  # fail now, not after minutes of other measures

    # Measure byte-compiled code, as an installed service runs it: with PYTHONDONTWRITEBYTECODE set
    # (it is in some shells and CI images) every start would compile src/ again, ~0.5 s of P6.
    for path in sys.path:
        if (Path(path) / "tsrevel" / "__init__.py").is_file():
            compileall.compile_dir(path, quiet=1, workers=0)
            break
    workdir = Path(tempfile.mkdtemp(prefix="tsrevel-bench-"))
    ctx = Context(workdir=workdir, quick=args.quick, runs=max(1, args.runs))
    started, t0, load_before = datetime.now(UTC), time.monotonic(), load_average()
    rows: list[Row] = []
    failed = False
    try:
        for measure in wanted:
            print(f"== {measure} ({MEASURES[measure]}), load average {load_average()}", flush=True)
            m0 = time.monotonic()
            try:
                rows += importlib.import_module(MEASURES[measure]).run(ctx)
            except Exception as exc:  # one broken measure must not hide the others' results
                traceback.print_exc()
                rows.append(Row(measure, "error", f"{type(exc).__name__}: {exc}"[:120], met=False))
                failed = True
            print(f"   {measure} took {time.monotonic() - m0:.0f}s", flush=True)
        profiles = {}
        if not args.no_profile:
            print("== py-spy profile pass (not measured)", flush=True)
            from bench import profile_pass

            try:
                profiles = profile_pass.run(ctx)
            except Exception:
                traceback.print_exc()
        elapsed = time.monotonic() - t0
        print()
        print(table(rows))
        print(f"\n{elapsed:.0f}s in all; load average {load_before} before, {load_average()} after")
        record = run_record(
            rows=rows, notes=ctx.notes, profiles=profiles, started=started, elapsed_s=elapsed,
            command=" ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])]),
            load_before=load_before, load_after=load_average(),
        )
        LAST_RUN.parent.mkdir(exist_ok=True)
        LAST_RUN.write_text(json.dumps(record, indent=1))
        if args.output != "-":
            write_document(Path(args.output), record)
            print(f"wrote {args.output}")
    finally:
        if args.keep:
            print(f"scratch kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
