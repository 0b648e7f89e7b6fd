"""A fresh machine as a container gives it: logged in as root, the clone in a private home folder
(mode 0700, like /root), no system PostgreSQL and no ``postgres`` user.

A private mount namespace (``unshare -m``) hides this machine's PostgreSQL installation and
``postgres`` user from one shell, which installs, starts the stack, queries the warehouse and
stops it with the Makefile, from a copy of this checkout inside a 0700 folder. Nothing outside the
namespace sees the bind mounts, and they go away with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from support import REPO
from support.ports import free_port
from scripts.stack import SERVER_ACCOUNT, STATE_MARKER, StackConfig
from scripts.stack.pg_install import PgPlaces


pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the case under test, and unshare -m"),
]

FRESH_MACHINE = r"""
set -euo pipefail
# What a fresh machine lacks, hidden in this mount namespace only.
if [ -d /usr/lib/postgresql ]; then mount --bind "$HIDE/empty" /usr/lib/postgresql; fi
grep -v '^postgres:' /etc/passwd > "$HIDE/passwd"
grep -v '^postgres:' /etc/group > "$HIDE/group"
mount --bind "$HIDE/passwd" /etc/passwd
mount --bind "$HIDE/group" /etc/group
if getent passwd postgres || command -v initdb || compgen -G '/usr/lib/postgresql/*/bin/initdb'; then
    echo "the namespace still shows a system PostgreSQL" >&2; exit 3
fi
cd "$CHECKOUT"
make up
echo "server account: $(stat -c %U "/proc/$(cat .state/run/postgres.pid)")"
make sql Q="SELECT current_user, count(*) FROM pg_database WHERE datname IN ('sparkify', 'airflow') GROUP BY 1"
make down
"""


def copy_checkout(target: Path) -> None:
    """The working tree as a clone has it (tracked and new files; nothing git ignores)."""
    listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=REPO, check=True,
                            capture_output=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def our_processes(state_dir: Path) -> list[int]:
    marker = f"{STATE_MARKER}={state_dir}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) is not installed")
def test_make_up_and_down_as_root_in_a_private_home_without_system_postgres():
    home = Path(tempfile.mkdtemp(prefix="sparkify-fresh-home-"))  # 0700, like /root
    hide = Path(tempfile.mkdtemp(prefix="sparkify-fresh-hide-"))
    (hide / "empty").mkdir()
    checkout = home / "sparkify-pipelines"
    state = checkout / ".state"
    runtime = PgPlaces(StackConfig(state)).runtime
    try:
        assert home.stat().st_mode & 0o777 == 0o700
        copy_checkout(checkout)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARKIFY_", "AIRFLOW", "AWS_", "PYTHON"))}
        env.pop("VIRTUAL_ENV", None)
        ports = {"SPARKIFY_PG_PORT": free_port(), "SPARKIFY_S3_PORT": free_port(), "SPARKIFY_API_PORT": free_port()}
        env.update({key: str(port) for key, port in ports.items()}, HIDE=str(hide), CHECKOUT=str(checkout))
        result = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", FRESH_MACHINE],
                                env=env, capture_output=True, text=True, timeout=840)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-6000:]

        assert f"server account: {SERVER_ACCOUNT}\n" in result.stdout
        assert "sparkify|2\n" in result.stdout, output[-3000:]  # the warehouse answered, both databases exist
        # `make down` leaves no process and no directory outside the state dir behind.
        assert our_processes(state) == []
        assert not runtime.exists()
        assert sorted(path.name for path in (state / "run").glob("*.pid")) == []
        assert (state / "postgres" / "data" / "PG_VERSION").is_file()  # the warehouse is back home, kept
    finally:
        for pid in our_processes(state):  # only after a failure: nothing of this test outlives it
            os.kill(pid, 9)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(hide, ignore_errors=True)
        shutil.rmtree(runtime, ignore_errors=True)
