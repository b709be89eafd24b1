"""Run a process under a TV box's limits on a desktop: a throwaway cgroup (v2 or v1).

::

    from device.cgroup import Cgroup, CgroupUnavailable

    try:
        cg = Cgroup.create("bench", memory_mb=96, cpu_quota=0.25, cpu=0)
    except CgroupUnavailable as why:
        print(f"unenforced: {why}")
    else:
        with cg:
            subprocess.run(cmd, preexec_fn=cg.enter_preexec)   # or cg.add(pid)
            print(cg.stats())   # oom_kills, throttled periods, peak usage

What a limit means
------------------
* **memory**: ``memory.max`` (v2) or ``memory.limit_in_bytes`` (v1), swap off for the group
  (``memory.swap.max`` / ``memory.memsw.limit_in_bytes``) -- a box has no swap. Over it the
  kernel reclaims page cache first, then OOM-kills a process of the group (SIGKILL).
* **cpu**: a CFS quota of ``cpu_quota`` of one core per 10 ms period (``cpu.max`` /
  ``cpu.cfs_quota_us``), and ``cpuset.cpus`` = one core where the cpuset controller is there
  (the measured process also pins itself with ``sched_setaffinity``). A quota of 1/4 core makes
  anything longer than a period take about 4x its CPU time in wall time -- the box's slower core,
  roughly; shorter bursts are not throttled.

Where
-----
Each controller is looked up separately: the unified (v2) hierarchy if it offers the controller,
else the v1 hierarchy mounted for it. The new group is made *inside the current process's own
group* of that hierarchy (a container may only write below its own), named
``tvrec-<name>-<pid>``; :meth:`Cgroup.remove` (or leaving the ``with``) deletes it.

:func:`memory_limit_mb` tells the running process the tightest memory limit it lives under (its
cgroup's, or ``TVREC_MEMORY_LIMIT_MB`` where the service manager states one); the engine's
low-memory path reads it (:mod:`device.engine`).

Only the standard library: this module ships to the box.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Cgroup", "CgroupUnavailable", "memory_limit_mb", "memory_headroom_mb"]

ROOT = Path("/sys/fs/cgroup")
#: CFS period of the quota, microseconds: short, so a quota slows work down evenly instead of
#: in 100 ms stalls (the kernel's default period).
CPU_PERIOD_US = 10_000
#: v1 and v2 spell "no limit" as a huge number or "max".
_UNLIMITED = 1 << 60


class CgroupUnavailable(Exception):
    """No writable cgroup hierarchy with the needed controllers (the message says why)."""


def _read(path: Path) -> str:
    with open(path, encoding="ascii") as fh:
        return fh.read().strip()


def _write(path: Path, value: str) -> None:
    with open(path, "w", encoding="ascii") as fh:
        fh.write(value)


def _mounts(mountinfo: str = "/proc/self/mountinfo") -> tuple[Path | None, dict[str, Path]]:
    """(the v2 mount point or None, {v1 controller: its mount point})."""
    v2, v1 = None, {}
    try:
        lines = Path(mountinfo).read_text().splitlines()
    except OSError:
        return None, {}
    for line in lines:
        left, _, right = line.partition(" - ")
        parts, rparts = left.split(), right.split()
        if len(parts) < 5 or len(rparts) < 3:
            continue
        mnt, fstype = Path(parts[4]), rparts[0]
        if fstype == "cgroup2" and v2 is None:
            v2 = mnt
        elif fstype == "cgroup":
            for opt in rparts[2].split(","):
                if opt in ("memory", "cpu", "cpuset", "cpuacct"):
                    v1.setdefault(opt, mnt)
    return v2, v1


def _own_paths(proc_cgroup: str = "/proc/self/cgroup") -> tuple[str | None, dict[str, str]]:
    """This process's group: (v2 path, {v1 controller: path}) from /proc/self/cgroup."""
    v2, v1 = None, {}
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None, {}
    for line in lines:
        hid, ctrls, path = line.split(":", 2)
        if hid == "0" and ctrls == "":
            v2 = path
        for c in ctrls.split(","):
            if c:
                v1[c] = path
    return v2, v1


def _v2_controllers(group: Path) -> set[str]:
    try:
        return set(_read(group / "cgroup.controllers").split())
    except OSError:
        return set()


@dataclass
class Cgroup:
    """A cgroup made for one measured run. Use :meth:`create`; ``with`` removes it after."""

    version: str  # "v2" or "v1"
    dirs: dict[str, Path]  # controller -> group directory ("memory", "cpu", optionally "cpuset")
    memory_mb: float
    cpu_quota: float
    cpu: int | None
    _base: dict[str, dict[str, int]] = field(default_factory=dict)

    # ------------------------------------------------------------------ making one

    @classmethod
    def create(cls, name: str, *, memory_mb: float, cpu_quota: float = 1.0,
               cpu: int | None = 0) -> Cgroup:
        """A new group with these limits; :class:`CgroupUnavailable` (one-line reason) if the
        machine gives none (not root, no cgroup file system, controllers missing)."""
        if not memory_mb > 0 or not 0 < cpu_quota:
            raise ValueError(f"memory_mb and cpu_quota must be > 0, got {memory_mb}, {cpu_quota}")
        if not ROOT.exists() and not _mounts()[0] and not _mounts()[1]:
            raise CgroupUnavailable("no cgroup file system on this machine")
        label = f"tvrec-{name}-{os.getpid()}"
        v2_mnt, v1_mnts = _mounts()
        v2_own, v1_own = _own_paths()
        errors = []
        if v2_mnt is not None and v2_own is not None:
            parent = v2_mnt / v2_own.lstrip("/")
            if {"memory", "cpu"} <= _v2_controllers(parent):
                try:
                    return cls._make_v2(parent / label, memory_mb, cpu_quota, cpu)
                except OSError as err:
                    errors.append(f"v2 {parent}: {err.strerror or err}")
            else:
                errors.append("v2: memory/cpu controllers not enabled")
        if "memory" in v1_mnts and "cpu" in v1_mnts:
            try:
                return cls._make_v1(v1_mnts, v1_own, label, memory_mb, cpu_quota, cpu)
            except OSError as err:
                errors.append(f"v1: {err.strerror or err}")
        else:
            errors.append("v1: memory/cpu controllers not mounted")
        why = "; ".join(errors)
        if os.geteuid() != 0:
            why = f"not root ({why})"
        raise CgroupUnavailable(why)

    @classmethod
    def _make_v2(cls, group: Path, memory_mb, cpu_quota, cpu) -> Cgroup:
        parent = group.parent
        # Children get controllers only if the parent delegates them; the parent must then hold
        # no processes itself ("no internal processes"), so this fails in a busy root: v1 next.
        sub = _read(parent / "cgroup.subtree_control").split()
        if "memory" not in sub or "cpu" not in sub:
            _write(parent / "cgroup.subtree_control", "+memory +cpu")
        group.mkdir()
        cg = cls("v2", {"memory": group, "cpu": group}, memory_mb, cpu_quota, cpu)
        try:
            _write(group / "memory.max", str(int(memory_mb * 2**20)))
            if (group / "memory.swap.max").exists():
                _write(group / "memory.swap.max", "0")
            _write(group / "cpu.max", f"{int(CPU_PERIOD_US * cpu_quota)} {CPU_PERIOD_US}")
            if cpu is not None and (group / "cpuset.cpus").exists():
                _write(group / "cpuset.cpus", str(cpu))
                cg.dirs["cpuset"] = group
        except OSError:
            cg.remove()
            raise
        return cg

    @classmethod
    def _make_v1(cls, mnts, own, label, memory_mb, cpu_quota, cpu) -> Cgroup:
        dirs: dict[str, Path] = {}
        wanted = ["memory", "cpu"] + (["cpuset"] if cpu is not None and "cpuset" in mnts else [])
        cg = cls("v1", dirs, memory_mb, cpu_quota, cpu)
        try:
            for c in wanted:
                d = mnts[c] / own.get(c, "/").lstrip("/") / label
                d.mkdir()
                dirs[c] = d
            m = dirs["memory"]
            _write(m / "memory.limit_in_bytes", str(int(memory_mb * 2**20)))
            if (m / "memory.memsw.limit_in_bytes").exists():  # after the memory limit (<= rule)
                _write(m / "memory.memsw.limit_in_bytes", str(int(memory_mb * 2**20)))
            _write(dirs["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(dirs["cpu"] / "cpu.cfs_quota_us", str(int(CPU_PERIOD_US * cpu_quota)))
            if "cpuset" in dirs:
                s = dirs["cpuset"]
                _write(s / "cpuset.mems", _read(s.parent / "cpuset.mems"))
                _write(s / "cpuset.cpus", str(cpu))
        except OSError:
            cg.remove()
            raise
        cg._base = {"cpu": cg._cpu_stat()}
        return cg

    # ------------------------------------------------------------------ using it

    def add(self, pid: int) -> None:
        """Move a process (and its future children) into the group."""
        for d in dict.fromkeys(self.dirs.values()):
            _write(d / "cgroup.procs", str(pid))

    def enter_preexec(self) -> None:
        """For ``subprocess.Popen(preexec_fn=...)``: the child joins before it execs, so every
        page it ever touches is charged to the group."""
        self.add(os.getpid())

    def describe(self) -> dict[str, Any]:
        """What the JSON reports as ``enforced``."""
        return {"cgroup": f"{self.version}:{self.dirs['memory']}",
                "memory_limit_mb": self.memory_mb, "cpu_quota": round(self.cpu_quota, 4),
                "cpu_period_us": CPU_PERIOD_US, "cpu": self.cpu}

    def _cpu_stat(self) -> dict[str, int]:
        try:
            text = _read(self.dirs["cpu"] / "cpu.stat")
        except OSError:
            return {}
        return {k: int(v) for k, v in (line.split() for line in text.splitlines())}

    def stats(self) -> dict[str, Any]:
        """What the limits did: OOM kills, throttled periods and time, peak memory charged."""
        m = self.dirs["memory"]
        out: dict[str, Any] = {}
        try:
            if self.version == "v2":
                events = dict(line.split() for line in _read(m / "memory.events").splitlines())
                out["oom_kills"] = int(events.get("oom_kill", 0))
                out["memory_limit_hits"] = int(events.get("max", 0))
                peak = m / "memory.peak"
                out["memory_peak_mb"] = (int(_read(peak)) / 2**20) if peak.exists() else None
            else:
                ctl = dict(line.split() for line in _read(m / "memory.oom_control").splitlines())
                out["oom_kills"] = int(ctl.get("oom_kill", 0))
                out["memory_limit_hits"] = int(_read(m / "memory.failcnt"))
                out["memory_peak_mb"] = int(_read(m / "memory.max_usage_in_bytes")) / 2**20
        except (OSError, ValueError):
            out.setdefault("oom_kills", None)
        cpu = self._cpu_stat()
        base = self._base.get("cpu", {})
        out["cpu_periods"] = cpu.get("nr_periods", 0) - base.get("nr_periods", 0)
        out["cpu_throttled_periods"] = cpu.get("nr_throttled", 0) - base.get("nr_throttled", 0)
        if "throttled_usec" in cpu:
            out["cpu_throttled_ms"] = cpu["throttled_usec"] / 1000.0
        else:
            out["cpu_throttled_ms"] = (cpu.get("throttled_time", 0)
                                       - base.get("throttled_time", 0)) / 1e6
        return out

    def remove(self) -> None:
        """Delete the group (its processes must have exited; leftovers move to the parent)."""
        for d in reversed(list(dict.fromkeys(self.dirs.values()))):
            try:
                for pid in _read(d / "cgroup.procs").split():
                    _write(d.parent / "cgroup.procs", pid)
            except OSError:
                pass
            try:
                d.rmdir()
            except OSError:
                pass

    def __enter__(self) -> Cgroup:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


# --------------------------------------------------------------------------- the running process


def memory_limit_mb() -> float | None:
    """The tightest memory limit this process runs under, in MB, or None.

    ``TVREC_MEMORY_LIMIT_MB`` (a service manager may state one) and every level of this
    process's memory cgroup, v2 (``memory.max``) or v1 (``memory.limit_in_bytes``), up to the
    mount point.
    """
    limits = []
    env = os.environ.get("TVREC_MEMORY_LIMIT_MB")
    if env:
        try:
            limits.append(float(env) * 2**20)
        except ValueError:
            pass
    v2_mnt, v1_mnts = _mounts()
    v2_own, v1_own = _own_paths()
    candidates = []
    if "memory" in v1_mnts:
        candidates.append((v1_mnts["memory"], v1_own.get("memory", "/"), "memory.limit_in_bytes"))
    if v2_mnt is not None and v2_own is not None:
        candidates.append((v2_mnt, v2_own, "memory.max"))
    for mnt, own, fname in candidates:
        d = mnt / own.lstrip("/")
        while True:
            try:
                text = _read(d / fname)
                if text != "max" and int(text) < _UNLIMITED:
                    limits.append(int(text))
            except (OSError, ValueError):
                pass
            if d == mnt or d == d.parent:
                break
            d = d.parent
    return min(limits) / 2**20 if limits else None


def memory_headroom_mb(limit: float | None = None) -> float | None:
    """MB this process may still grow by before its limit (None: no limit known): the limit
    (``limit``, else :func:`memory_limit_mb`) minus its resident set (``VmRSS``). The resident
    set, not the cgroup's usage: that counts page cache, which the kernel gives back before it
    kills anyone."""
    limit = memory_limit_mb() if limit is None else limit
    if limit is None:
        return None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return limit - int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None
