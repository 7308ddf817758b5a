"""Sample a running service with py-spy and summarise where its time goes (for docs/performance.md's profile notes).

`py-spy record --format raw` writes collapsed stacks ("frame;frame;frame count"); we add each
sample to every distinct frame on its stack (inclusive time) and to its leaf (self time), and
report the share of samples for the frames that matter.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


@dataclass(frozen=True)
class Profile:
    samples: int
    inclusive: Counter[str]
    self_time: Counter[str]
    path: Path

    def share(self, frame: str) -> float:
        return self.inclusive[frame] / self.samples if self.samples else 0.0

    def top(self, n: int = 25, *, only: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> list[tuple[str, float, float]]:
        """(frame, inclusive share, self share), biggest inclusive first; `only` keeps frames containing any of
        those strings, `skip` drops frames containing any of those."""
        rows = [
            (frame, count / self.samples, self.self_time[frame] / self.samples)
            for frame, count in self.inclusive.most_common()
            if (not only or any(s in frame for s in only)) and not any(s in frame for s in skip)
        ]
        return rows[:n]


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return found if Path(found).exists() else None


def start_recording(pid: int, out: Path, *, duration_s: float, rate: int = 250, extra: tuple[str, ...] = ()) -> subprocess.Popen[bytes] | None:
    """Begin sampling pid (all threads, idle frames excluded); None when py-spy is not installed."""
    exe = py_spy()
    if exe is None:
        return None
    argv = [exe, "record", "--pid", str(pid), "--duration", str(int(duration_s)), "--rate", str(rate),
            "--format", "raw", "--nonblocking", *extra, "--output", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def finish_recording(proc: subprocess.Popen[bytes] | None, out: Path, timeout_s: float = 60) -> Profile | None:
    if proc is None:
        return None
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return read_collapsed(out) if out.exists() else None


def read_collapsed(path: Path) -> Profile:
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        self_time[frames[-1]] += count
    return Profile(samples=total, inclusive=inclusive, self_time=self_time, path=path)


def _short(frame: str) -> str:
    """'func (path/to/module.py:12)' -> 'func (module.py)': lines merged, paths shortened."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match.group("file")
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{match.group('func')} ({file})"
