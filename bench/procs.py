"""Processes the benchmark starts: free ports, process trees, PSS, and killing what we started."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: split after the last ')'
        fields = stat.rsplit(b")", 1)[1].split()
        children[int(fields[1])].append(int(entry))
    return children


def children(pid: int) -> list[int]:
    return list(_children_map().get(pid, []))


def tree(root: int) -> list[int]:
    """`root` and all its descendants (live ones)."""
    children = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if os.path.exists(f"/proc/{pid}"):
            out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def pss_kb(pid: int) -> int:
    """Proportional set size of one process (kB), from /proc/PID/smaps_rollup."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_pss_mb(roots: Iterable[int]) -> tuple[float, dict[int, float]]:
    """Sum of PSS over every process of the trees (MB), and per process."""
    per: dict[int, float] = {}
    for root in roots:
        for pid in tree(root):
            per[pid] = pss_kb(pid) / 1024.0
    return sum(per.values()), per


_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(roots: Iterable[int]) -> float:
    """User + system CPU time used so far by every live process of the trees (s)."""
    total = 0
    for root in roots:
        for pid in tree(root):
            try:
                with open(f"/proc/{pid}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / _TICK


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def kill_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process group we created (start_new_session=True), then SIGKILL it."""
    pgid = proc.pid  # a session leader's pgid is its pid
    members = tree(proc.pid)
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc.poll() is not None and not any(os.path.exists(f"/proc/{p}") and _in_group(p, pgid)
                                               for p in members):
            break
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid in members:  # anything that left the group (setsid) but is still ours
        if _in_group(pid, pgid):
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


def _in_group(pid: int, pgid: int) -> bool:
    try:
        return os.getpgid(pid) == pgid
    except ProcessLookupError:
        return False
