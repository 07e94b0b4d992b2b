"""A process tree's CPU time and memory, read from Linux's /proc.

One walk over /proc gives every process's parent, name and CPU seconds; a tree is a process and
its descendants. A child process run by `watch` has its tree's memory sampled while it runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Process:
    """One process as /proc/PID/stat shows it."""

    pid: int
    parent: int
    name: str  # the program's file name, or for Ray's actors "ray::Actor" (the method left off)
    cpu_s: float  # user and system time so far


def processes() -> dict[int, Process]:
    """Every process now, by pid."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            command = Path(entry.path, "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        words = command.decode(errors="replace").strip()
        name = Path(words.split(" ")[0] if words else stat.split("(")[1].split(")")[0]).name
        if name.startswith("ray::"):  # Ray's actors add the method they run: ray::Actor.method
            name = name.split(".")[0]
        cpu = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        found[int(entry.name)] = Process(int(entry.name), int(fields[1]), name, cpu)
    return found


def tree(root: int, table: dict[int, Process] | None = None) -> Iterator[Process]:
    """`root` and its descendants that are alive in `table` (by default, now)."""
    table = processes() if table is None else table
    children: dict[int, list[int]] = {}
    for process in table.values():
        children.setdefault(process.parent, []).append(process.pid)
    stack = [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            yield table[pid]
        stack.extend(children.get(pid, []))


def cpu_by_name(root: int) -> dict[str, float]:
    """CPU seconds used so far by `root` ("server") and its descendants, summed by process name
    (Ray's actors are named like `ray::ServeReplica:onnxdigits:classifier`)."""
    totals: dict[str, float] = {}
    for process in tree(root):
        name = "server" if process.pid == root else process.name
        totals[name] = totals.get(name, 0.0) + process.cpu_s
    return totals


def pss(pid: int) -> int:
    """A process's proportional set size in bytes (shared pages divided among their users); 0
    where it is gone or unreadable."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def peak_rss() -> int:
    """This process's peak RSS in bytes (VmHWM). Not ru_maxrss: on Linux that carries over
    from the forking parent, so a child of a large benchmark would report the parent's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True)
class Watched:
    """A child process that printed a JSON report, and its tree's memory."""

    report: dict[str, Any]  # the last line of its stdout
    wall: float  # seconds, its whole life
    peak_pss: int  # bytes: the largest PSS summed over it and its descendants


def watch(command: list[str], env: dict[str, str], every_s: float = 0.25) -> Watched:
    """Run `command`, sampling the PSS of its process tree every `every_s`.

    Raises:
        RuntimeError: it exited other than 0 (with the end of its stderr).
    """
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, sum(pss(p.pid) for p in tree(process.pid)))
            done.wait(every_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr.decode()[-3000:]}")
    report = json.loads(stdout.decode().strip().splitlines()[-1])
    return Watched(report, time.perf_counter() - start, peak)
