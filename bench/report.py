"""The machine description, the results table (terminal and Markdown), and docs/performance.md."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import ROOT, Row, fmt_runs
from bench.profile_pass import BORING, INTERESTING
from bench.profiling import Profile

NOTES = Path(__file__).with_name("performance_notes.md")


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "(not available)"
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr).strip() else "(no output)"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "(unknown)"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "(unknown)"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> list[tuple[str, str]]:
    commit = _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True, check=False).stdout.strip()
    return [
        ("CPUs (nproc)", str(os.cpu_count())),
        ("CPU model", _cpu_model()),
        ("memory", _memory()),
        ("kernel", platform.release()),
        ("Python", sys.version.split()[0]),
        ("SQLite", sqlite3.sqlite_version),
        ("litestar / uvicorn / h11 / httpx",
         " / ".join(_version(p) for p in ("litestar", "uvicorn", "h11", "httpx"))),
        ("uvloop / httptools (uvicorn's fast paths)", f"{_version('uvloop')} / {_version('httptools')}"),
        ("wrk", _first_line([shutil.which("wrk") or "wrk", "--version"]) if shutil.which("wrk") else "not installed"),
        ("py-spy", _version("py-spy")),
        ("tsrevel commit", f"{commit}{' + uncommitted changes' if dirty else ''}"),
    ]


def table(rows: list[Row]) -> str:
    """A plain-text table for the terminal."""
    widths = [max(len(r.measure) for r in rows), max(len(r.name) for r in rows), max(len(r.value) for r in rows),
              max(len(r.target) for r in rows), 10]
    lines = []
    for r in rows:
        cells = (r.measure, r.name, r.value, r.target, r.verdict.replace("*", ""))
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    out = ["| | measure | median | target | | runs |", "|---|---|---|---|---|---|"]
    for r in rows:
        runs = fmt_runs(r.runs, 3 if r.runs and max(abs(x) for x in r.runs) < 10 else 0) if r.runs else ""
        extra = f" ({r.note})" if r.note else ""
        out.append(f"| {r.measure} | {r.name}{extra} | {r.value} | {r.target} | {r.verdict} | {runs} |")
    return "\n".join(out)


def profile_section(profiles: dict[str, Profile | None]) -> str:
    if not profiles:
        return "_No profile this run (py-spy missing or --no-profile)._\n"
    out = []
    for title, prof in profiles.items():
        if prof is None or not prof.samples:
            out.append(f"**{title}**: no samples.\n")
            continue
        out.append(f"**{title}**: {prof.samples} py-spy samples of the thread holding the GIL (`py-spy record --gil`); "
                   "share of samples with the frame on the stack (inclusive) and at the top (self):\n")
        out.append("| inclusive | self | frame |\n|---|---|---|")
        for frame, inclusive, self_share in prof.top(30, only=INTERESTING, skip=BORING):
            out.append(f"| {inclusive * 100:.1f} % | {self_share * 100:.1f} % | `{frame}` |")
        out.append("")
    return "\n".join(out) + "\n"


def _methods() -> list[str]:
    """Each measure module's docstring, as the method behind its rows."""
    out = []
    for module in ("p1_intake", "p2_end_to_end", "p3_mapping", "p4_memory", "p5_kill_switch", "p5_replicas", "p6_startup", "p7_drain",
                   "p8_reconcile"):
        doc = (importlib.import_module(f"bench.{module}").__doc__ or "").strip()
        title, _, body = doc.partition("\n\n")
        out += [f"**{title}**", "", " ".join(body.split()) if body else "", ""]
    return out


def run_record(
    *, rows: list[Row], notes: dict[str, list[str]], profiles: dict[str, Profile | None], command: str,
    started: datetime, elapsed_s: float, load_before: str, load_after: str,
) -> dict[str, Any]:
    """Everything docs/performance.md shows of a run, as JSON-ready data (kept in bench/results/last.json)."""
    return {
        "rows": [dataclasses.asdict(r) for r in rows],
        "notes": notes,
        "profile_markdown": profile_section(profiles),
        "command": command,
        "started": started.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
        "elapsed_s": elapsed_s,
        "load_before": load_before,
        "load_after": load_after,
        "machine": machine(),
    }


def write_document(path: Path, record: dict[str, Any]) -> None:
    """docs/performance.md from a run record and the hand-written notes (bench/performance_notes.md)."""
    rows = [Row(**{**r, "runs": tuple(r["runs"])}) for r in record["rows"]]
    notes: dict[str, list[str]] = record["notes"]
    parts = [
        "# Performance",
        "",
        "_This page is written by `make bench` (bench/run.py); the analysis under \"Profile notes and changes\" "
        "comes from bench/performance_notes.md. Edit that file, not this one._",
        "",
        "## Machine and run",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in record["machine"]),
        f"| run | {record['started']} UTC, {record['elapsed_s']:.0f} s in all |",
        f"| 1-minute load average before / after | {record['load_before']} / {record['load_after']} "
        "(2 cores: above 2 means other work shared them) |",
        "",
        "Commands:",
        "",
        "```sh",
        "make bench                      # installs wrk and the bench extra if missing, then:",
        record["command"],
        "python -m bench.run --rewrite   # this page again from the last run (bench/results/last.json) and the notes",
        "python -m bench.run --quick     # a smaller, faster pass (not for the record)",
        "python -m bench.run --only P2,P5 --runs 5",
        "TSREVEL_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test python -m bench.run --only P5"
        "   # P5's replica rows: a PostgreSQL server (a scratch schema per round)",
        "```",
        "",
        "## Results",
        "",
        "Medians of the runs listed (each run a fresh process and database); every server on 127.0.0.1.",
        "",
        markdown_table(rows),
        "",
        "## How each measure is taken",
        "",
        *_methods(),
        "## What each run saw",
        "",
    ]
    for measure in sorted(notes):
        parts.append(f"**{measure}**")
        parts.append("")
        parts.extend(f"- {line}" for line in notes[measure])
        parts.append("")
    parts += ["## Profile of this run", "", record["profile_markdown"]]
    if NOTES.exists():
        parts += ["## Profile notes and changes", "", NOTES.read_text().strip(), ""]
    path.write_text("\n".join(parts))
