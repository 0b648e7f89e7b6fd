"""What a set of processes listens on, read from /proc: to check a server binds only where it should."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from scripts.stack import STATE_MARKER


def listening_addresses(*leaders: int, state_dir: Path | None = None) -> list[str]:
    """``host:port`` of every listening TCP socket held by the processes ``leaders``, their process
    groups, and (with ``state_dir``) any process carrying that stack's environment marker."""
    marker = f"{STATE_MARKER}={state_dir}".encode() if state_dir is not None else None
    inodes = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            pid = int(proc.name)
            ours = pid in leaders or os.getpgid(pid) in leaders
            if not ours and marker is not None:
                ours = marker in (proc / "environ").read_bytes().split(b"\0")
            if not ours:
                continue
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:  # the process exited meanwhile, or is not ours to read
            continue
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].rsplit(":", 1)
                if len(address) == 8:  # IPv4, little-endian hex
                    host = socket.inet_ntoa(bytes.fromhex(address)[::-1])
                else:
                    host = "[" + bytes.fromhex(address).hex() + "]"
                found.append(f"{host}:{int(port, 16)}")
    return sorted(found)
