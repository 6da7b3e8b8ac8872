"""How much memory this process may still use: the figure every up-front memory guard compares
against (EASE's Gram matrix, dense AutoRec rows, network parameters, synthetic data)."""
from __future__ import annotations

import os

__all__ = ["available_memory", "check_memory"]


def _read_int(path) -> int | None:
    """The first field of a one-line control file as an int; None for "max", absent or unreadable."""
    try:
        with open(path) as f:
            text = f.read().split()
    except OSError:
        return None
    if not text or text[0] == "max":
        return None
    try:
        return int(text[0])
    except ValueError:
        return None


def _cgroup_dirs(mount: str, controller: str | None, proc_cgroup: str = "/proc/self/cgroup"):
    """Folders of this process's cgroup (v2 unified when ``controller`` is None, else v1), from
    its own folder up to the mount: a parent's limit binds too."""
    try:
        with open(proc_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    rel = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if controller is None and parts[0] == "0" and parts[1] == "":
            rel = parts[2]
        elif controller is not None and controller in parts[1].split(","):
            rel = parts[2]
    if rel is None:
        return [mount]
    out, cur = [], rel.strip("/")
    while True:
        d = os.path.join(mount, cur) if cur else mount
        if os.path.isdir(d):
            out.append(d)
        if not cur:
            break
        cur = os.path.dirname(cur)
    return out or [mount]


def _cgroup_headroom(root: str = "/sys/fs/cgroup", proc_cgroup: str = "/proc/self/cgroup") -> int | None:
    """Bytes this process may still allocate under its cgroup's memory limit (v2 ``memory.max``
    minus ``memory.current``, v1 ``memory.limit_in_bytes`` minus ``memory.usage_in_bytes``), or
    None when no limit is set."""
    best = None
    for d in _cgroup_dirs(root, None, proc_cgroup):
        limit = _read_int(os.path.join(d, "memory.max"))
        if limit is not None:
            used = _read_int(os.path.join(d, "memory.current")) or 0
            room = max(limit - used, 0)
            best = room if best is None else min(best, room)
    for mount in (os.path.join(root, "memory"), os.path.join(root, "memory,cpuacct")):
        if not os.path.isdir(mount):
            continue
        for d in _cgroup_dirs(mount, "memory", proc_cgroup):
            limit = _read_int(os.path.join(d, "memory.limit_in_bytes"))
            if limit is not None and limit < 2 ** 60:  # v1 writes ~2**63 for "no limit"
                used = _read_int(os.path.join(d, "memory.usage_in_bytes")) or 0
                room = max(limit - used, 0)
                best = room if best is None else min(best, room)
    return best


def _rlimit_headroom() -> int | None:
    """Address space left under ``RLIMIT_AS`` (``ulimit -v``), or None when unlimited."""
    try:
        import resource
        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    vm = 0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    vm = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    return max(int(soft) - vm, 0)


def available_memory() -> int | None:
    """Bytes of memory this process can still use now, or None if unknown: the least of the
    machine's ``MemAvailable``, the container's cgroup limit (v2 ``memory.max`` / v1
    ``memory.limit_in_bytes``, minus what the group uses) and ``RLIMIT_AS`` minus the address space
    already mapped. The OOM killer of a container acts on the cgroup limit, not on /proc/meminfo."""
    found = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError):
        pass
    for probe in (_cgroup_headroom, _rlimit_headroom):
        v = probe()
        if v is not None:
            found.append(v)
    return min(found) if found else None


def check_memory(nbytes: int, what: str, fix: str) -> None:
    """Raise MemoryError (saying what, how much and ``fix``) when ``nbytes`` exceeds what this
    process can still use: better than being killed by the OOM killer half-way."""
    avail = available_memory()
    if avail is not None and nbytes > avail:
        raise MemoryError(f"{what} needs about {nbytes / 2**30:.2f} GiB but only {avail / 2**30:.2f} GiB is "
                          f"available to this process; {fix}")
