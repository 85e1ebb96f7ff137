"""Peak resident memory of a child process, measured from the child's own address space.

``wait4``'s ``ru_maxrss`` is no good for this: on Linux, exec folds the pre-exec address space's
high-water mark into the child's, and a child started by ``subprocess`` (vfork) ran in the
parent's address space until exec, so it reports at least the parent's peak (a test runner's
hundreds of MB). ``VmHWM`` in ``/proc/<pid>/status`` is the high-water mark of the child's own
address space after exec; it only grows, so sampling it until the child exits gives its peak
(to within the last sampling interval, when the child is only printing its result).
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

INTERVAL = 0.01


def _hwm_bytes(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # kB
    return None  # a zombie has no address space left


class PeakSampler:
    """Samples a running process's VmHWM in a thread until :meth:`finish`; ``peak`` in bytes."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            hwm = _hwm_bytes(self.pid)
            if hwm is not None:
                self.peak = max(self.peak, hwm)
            self._stop.wait(INTERVAL)

    def finish(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_with_peak_rss(command: list[str], **kwargs: Any) -> tuple[int, str, str, int]:
    """Run ``command`` to its end; (exit code, stdout, stderr, peak RSS in bytes)."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )
    output: dict[str, str] = {}

    def collect() -> None:
        output["out"], output["err"] = process.communicate()

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    peak = 0
    while process.poll() is None:
        peak = max(peak, _hwm_bytes(process.pid) or 0)
        time.sleep(INTERVAL)
    reader.join()
    return process.returncode, output.get("out", ""), output.get("err", ""), peak
