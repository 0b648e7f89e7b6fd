"""Process helpers read from /proc, and the pid files that tell our processes from others'."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path


def _reap(pid: int) -> None:
    """Collect a zombie if ``pid`` is our own child (pytest fixtures spawn in-process)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    return data[data.rindex(")") + 2 :].split()


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    _reap(pid)
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else None  # field 22: starttime


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_tree(pid: int, sig: int) -> None:
    """Signal the process group led by ``pid`` (we start every process in its own session)."""
    with contextlib.suppress(ProcessLookupError):
        try:
            is_leader = os.getpgid(pid) == pid
        except ProcessLookupError:
            is_leader = group_alive(pid)
        if is_leader:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def log_since(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


class PidFiles:
    """``<run>/<name>.pid`` plus a meta file with the start time, so a reused pid is not taken for ours."""

    def __init__(self, run_dir: Path, state_marker: tuple[str, str]):
        self.run_dir = run_dir
        self.marker = state_marker  # (variable, value) in the environment of every process we spawn

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def _meta_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.meta.json"

    def _meta(self, name: str) -> dict:
        try:
            return json.loads(self._meta_file(name).read_text())
        except (OSError, ValueError):
            return {}

    def read(self, name: str) -> int | None:
        try:
            return int(self.pid_file(name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def write(self, name: str, pid: int, cmd: list[str] | None = None) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.pid_file(name).write_text(f"{pid}\n")
        meta = {"pid": pid, "starttime": start_time(pid), "cmd": cmd, "started_at": time.time()}
        self._meta_file(name).write_text(json.dumps(meta) + "\n")

    def clear(self, name: str) -> None:
        for path in (self.pid_file(name), self._meta_file(name)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def owned(self, name: str, tokens: tuple[str, ...]) -> int | None:
        """The recorded pid if it is alive and provably one of ours: same start time, or our
        environment marker plus one of ``tokens`` in its command line."""
        pid = self.read(name)
        if pid is None or not pid_alive(pid):
            return None
        meta = self._meta(name)
        if meta.get("pid") == pid and meta.get("starttime") and meta["starttime"] == start_time(pid):
            return pid
        key, value = self.marker
        if environ(pid).get(key) == value and any(t in cmdline(pid) for t in tokens):
            return pid
        return None

    def orphaned_group(self, name: str, pid: int) -> bool:
        """True if ``pid`` is a leader we spawned (per our meta file) that died, leaving its group.

        A process group id stays reserved while any member lives, so a live group whose id is our
        dead leader's pid can only consist of that leader's descendants (e.g. executor workers).
        """
        return self._meta(name).get("pid") == pid and not pid_alive(pid) and group_alive(pid)
