"""What every measure shares: loopback ports, child processes that are always stopped, RSS, medians, rows."""

from __future__ import annotations

import math
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
SIGNING_SECRET = "bench-signing-secret"
ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
REVEL_KEY, REVEL_SECRET = "bench-revel-key", "bench-revel-secret"
MAPPING_FILE = ROOT / "examples" / "mapping.toml"


# ---- results -----------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the results table: a measure, its median value, the target and whether it is met."""

    measure: str
    name: str
    value: str
    target: str = ""
    met: bool | None = None  # None: informational, no target
    runs: Sequence[float] = ()
    note: str = ""

    @property
    def verdict(self) -> str:
        return {True: "met", False: "**missed**", None: "-"}[self.met]


@dataclass
class Context:
    """What the orchestrator hands each measure: where to put scratch files, how hard to try, notes back."""

    workdir: Path
    quick: bool = False
    runs: int = 3
    notes: dict[str, list[str]] = field(default_factory=dict)

    def note(self, measure: str, text: str) -> None:
        self.notes.setdefault(measure, []).append(text)
        print(f"    [{measure}] {text}", flush=True)

    def scratch(self, name: str) -> Path:
        """A fresh directory under the run's scratch area (databases, logs); removed with it."""
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir))


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by nearest rank; values need not be sorted."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


def fmt_runs(values: Sequence[float], digits: int = 1) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


# ---- ports and processes -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_http(url: str, *, timeout_s: float, proc: subprocess.Popen[bytes] | None = None, interval_s: float = 0.01) -> float:
    """Poll url until it answers 200; returns time.monotonic() of that answer. Fails fast if proc dies."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
            try:
                if client.get(url).status_code == 200:
                    return time.monotonic()
            except httpx.TransportError:
                pass
            time.sleep(interval_s)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s}s")


@dataclass
class Child:
    """A child process of ours with its log file; stop() is idempotent and always reaps it."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid)

    def cpu_s(self) -> float:
        return cpu_s(self.proc.pid)

    def stop(self, timeout_s: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def spawn(name: str, argv: list[str], *, env: dict[str, str], log_path: Path, url: str = "") -> Child:
    log_file = open(log_path, "wb")  # noqa: SIM115 - the child owns it; closed with our copy below
    try:
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
    finally:
        log_file.close()
    return Child(name=name, proc=proc, log_path=log_path, url=url)


@contextmanager
def running(child: Child, *, ready_path: str | None = None, timeout_s: float = 30.0) -> Iterator[Child]:
    """Yield a started child once ready_path answers 200; stop it however the block ends."""
    try:
        if ready_path is not None:
            try:
                wait_http(child.url + ready_path, timeout_s=timeout_s, proc=child.proc)
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"{child.name} did not become ready: {exc}\n{child.log_tail()}") from None
        yield child
    finally:
        child.stop()


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MiB, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used: robust to other load on the machine."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    """The 1-minute load average: other work on this machine skews every wall-clock number."""
    return f"{os.getloadavg()[0]:.1f}"


# ---- the services under test -------------------------------------------------------------------


def base_env() -> dict[str, str]:
    """Our environment without any tsrevel setting a developer may have exported."""
    prefixes = ("TSREVEL_", "REVEL_", "SENDGRID_", "TRIPLESEAT_", "EMAIL_", "DRY_RUN", "ENABLE_CONNECTOR", "ALLOWED_LOCATIONS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def service_env(db_dir: Path, *, dry_run: bool, revel_url: str | None = None, **extra: str) -> dict[str, str]:
    """A production-like service environment: signed webhooks, SQLite in db_dir, JSON logs."""
    env = base_env()
    env.update(
        ENABLE_CONNECTOR="true",
        DRY_RUN="true" if dry_run else "false",
        TSREVEL_DATABASE_URL=f"sqlite:///{db_dir / 'tsrevel.db'}",
        TSREVEL_MAPPING_FILE=str(MAPPING_FILE),
        TSREVEL_ADMIN_TOKEN=ADMIN_TOKEN,
        TRIPLESEAT_SIGNING_SECRET=SIGNING_SECRET,
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
    )
    if revel_url is not None:
        env.update(REVEL_BASE_URL=revel_url, REVEL_API_KEY=REVEL_KEY, REVEL_API_SECRET=REVEL_SECRET)
    env.update(extra)
    return env


def start_service(
    ctx_dir: Path, env: dict[str, str], *, name: str = "tsrevel", module: str | None = None, args: Sequence[str] = ()
) -> Child:
    """`python -m tsrevel serve` (or a bench module serving the same app the same way, with args) on a free port."""
    port = free_port()
    argv = [sys.executable, "-m", module or "tsrevel", *([] if module else ["serve"]), "--host", HOST, "--port", str(port), *args]
    return spawn(name, argv, env=env, log_path=ctx_dir / f"{name}-{port}.log", url=f"http://{HOST}:{port}")


def start_module(ctx_dir: Path, module: str, *, name: str, env: dict[str, str] | None = None, args: Sequence[str] = ()) -> Child:
    """A bench helper server (`python -m bench.<module> --port N`) on a free port."""
    port = free_port()
    argv = [sys.executable, "-m", module, "--host", HOST, "--port", str(port), *args]
    return spawn(name, argv, env=env or base_env(), log_path=ctx_dir / f"{name}-{port}.log", url=f"http://{HOST}:{port}")


def admin(url: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, url + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10, **kwargs)


def db_counts(db_dir: Path) -> dict[str, int]:
    """Deliveries by state, read straight from a stopped (or running: WAL) service's SQLite file."""
    conn = sqlite3.connect(db_dir / "tsrevel.db")
    try:
        return {state: n for state, n in conn.execute("SELECT state, COUNT(*) FROM deliveries GROUP BY state")}
    finally:
        conn.close()


def db_value(db_dir: Path, query: str, params: Sequence[Any] = ()) -> Any:
    """The first column of the first row of a query on a service's SQLite file (read while it runs: WAL)."""
    conn = sqlite3.connect(db_dir / "tsrevel.db")
    try:
        row = conn.execute(query, params).fetchone()
        return row[0] if row else None
    finally:
        conn.close()


def poll(condition: Callable[[], Any], *, timeout_s: float, interval_s: float = 0.05) -> Any:
    """Call condition until it returns something truthy; returns it, or the last value at the deadline."""
    deadline = time.monotonic() + timeout_s
    value = condition()
    while not value and time.monotonic() < deadline:
        time.sleep(interval_s)
        value = condition()
    return value
