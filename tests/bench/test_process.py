"""The /proc walker: a process tree's CPU time and memory, on real child processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from onnxdigits.bench import process

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads Linux's /proc")

# A child whose child spends CPU and then waits, so that only a walk of the tree counts it.
SPIN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
SPIN += "time.sleep(30)\n"
PARENT = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {SPIN!r}])\n"


def test_the_cpu_of_a_tree_counts_its_descendants() -> None:
    child = subprocess.Popen([sys.executable, "-c", PARENT])
    tree: list[process.Process] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            tree = list(process.tree(child.pid))
            if len(tree) == 2 and tree[1].cpu_s >= 0.25:
                break
            time.sleep(0.1)
        assert [p.pid for p in tree][:1] == [child.pid] and len(tree) == 2, tree
        spent = process.cpu_by_name(child.pid)
        assert "server" in spent  # the root is named so
        others = {name: cpu for name, cpu in spent.items() if name != "server"}
        assert list(others) == [tree[1].name] and others[tree[1].name] >= 0.25, spent
    finally:
        for p in tree[1:]:
            os.kill(p.pid, 9)
        child.kill()
        child.wait()


def test_this_process_is_in_its_parent_s_tree() -> None:
    assert os.getpid() in {p.pid for p in process.tree(os.getppid())}
    assert os.getppid() not in {p.pid for p in process.tree(os.getpid())}


def test_watch_reports_the_child_and_the_memory_of_its_tree() -> None:
    script = "import json, numpy\nx = numpy.ones(2**24)\nimport time; time.sleep(0.6)\n"
    script += "print('noise'); print(json.dumps({'rows': 3}))\n"
    watched = process.watch([sys.executable, "-c", script], dict(os.environ), every_s=0.05)
    assert watched.report == {"rows": 3}
    assert watched.peak_pss > 2**27  # the 128 MiB array, touched
    assert watched.wall >= 0.6


def test_a_failing_child_raises_with_its_stderr() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        process.watch([sys.executable, "-c", "raise SystemExit('boom')"], dict(os.environ))


def test_peak_rss_is_this_process_s() -> None:
    assert process.peak_rss() > 10 * 2**20
