"""Helpers shared by the tests: imported as ``support.<module>``, since pytest.ini puts ``tests/`` on
the import path (``pythonpath = . plugins tests``).

* ``ports``: free TCP ports on 127.0.0.1 for the servers a test starts;
* ``model``: the star schema computed independently, in Python, from the raw JSON;
* ``pipeline``: drive ``sparkify_etl`` against the test stack and read the warehouse back;
* ``alert_servers``: local Slack-webhook and SMTP servers (fixtures, registered in conftest.py);
* ``render``: the SQL the DAG's tasks send, rendered without a database;
* ``fake_redshift``: run a task against a stand-in Redshift connection and record what it sends;
* ``processes``: which addresses a set of processes listens on.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the repository root
