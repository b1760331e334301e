"""This process's memory on Linux, for the batch-size probe's CPU measurements.

:func:`rss_bytes` is the resident set size now; :class:`CPUPeakMemory` the peak over a block of
code (the kernel's high-water mark, reset through ``/proc/self/clear_refs``, or a sampling thread
where that is not allowed); :func:`release_cpu_memory` hands freed heap back to the OS
(``malloc_trim``) so that each measurement starts from what is in use.
"""

from __future__ import annotations

import ctypes
import gc
import os
import threading


def rss_bytes() -> int:
    """This process's resident set size now, in bytes (Linux: ``/proc/self/statm``)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _page_size()


def _page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")


class CPUPeakMemory:
    """Peak resident set size of this process over a block of code, in bytes.

    Linux keeps the high-water mark (``VmHWM``); writing 5 to ``/proc/self/clear_refs`` resets it
    to the current size, so each batch size gets its own peak. Where that is not allowed a thread
    samples the resident size every 2 ms instead (it can miss a very short peak).
    """

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.method = "VmHWM"

    @staticmethod
    def _reset_hwm() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")
            return True
        except OSError:
            return False

    @staticmethod
    def _hwm() -> int:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise OSError("no VmHWM in /proc/self/status")

    def __enter__(self) -> CPUPeakMemory:
        self.peak = rss_bytes()
        if not self._reset_hwm():
            self.method = "sampled RSS"
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, rss_bytes())
        else:
            self.peak = max(self.peak, self._hwm())


def release_cpu_memory() -> None:
    """Return freed heap memory to the OS, so the next batch size's peak starts from what is in use."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the measurement is only less tight
        pass
