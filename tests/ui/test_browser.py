"""The operator's experience, in a real browser: a full local stack (PostgreSQL, S3 endpoint,
api-server, scheduler, dag-processor, triggerer) in a temporary state dir on free ports, driven
through Airflow 3.3's UI with Playwright and the system chromium (headless).

The stack runs Airflow's simple auth manager with a real login (unlike ``make up``, where every
user is an admin): one admin user, ``operator``, whose password the test generates into the
temporary state dir. One journey, in order: the login form, the DAG list and graph, a run
triggered from the Trigger form with a start/end window, the run's success, the row counts in
``stage_events``' log, the Deadline Alert in the triggerer's log, the star-schema Assets and the
analytics report they schedule.
Screenshots go to ``$SPARKIFY_SCREENSHOTS`` (default: a temporary folder, so a test run leaves
the checkout clean). ``SPARKIFY_SCREENSHOTS=docs/screenshots`` refreshes the README's pictures.

Marked ``slow`` (about 2 minutes); it runs by default. Deselect with ``-m "not slow"`` or set
SPARKIFY_SKIP_AIRFLOW_TESTS=1. Needs chromium at /usr/bin/chromium (``.ci/run`` installs it).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import date
from pathlib import Path
from unittest import mock

import pytest

from scripts.sample_data import generate
from scripts.stack import LocalStack
from scripts.upload_data import upload_dir
from support.ports import free_ports

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
SCREENSHOTS = Path(os.environ.get("SPARKIFY_SCREENSHOTS") or tempfile.mkdtemp(prefix="sparkify-screenshots-"))
WINDOW = ("2018-11-01T00:00:00Z", "2018-11-02T00:00:00Z")
EVENTS_PER_DAY = 500
# A deadline short enough that the triggered run misses it: the Deadline Alert fires for real.
DEADLINE_MINUTES = "0.05"
UI_TIMEOUT_MS = 60_000
RUN_TIMEOUT_S = 240
UI_USER = "operator"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(os.environ.get("SPARKIFY_SKIP_AIRFLOW_TESTS") == "1", reason="SPARKIFY_SKIP_AIRFLOW_TESTS=1"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (.ci/run installs it)"),
]

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def with_login(passwords_file: Path) -> dict[str, str]:
    """Settings for the simple auth manager's login: ``UI_USER`` is the one user (an admin), with
    the password in ``passwords_file`` (the auth manager's JSON: user -> password)."""
    return {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{UI_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
    }


class Api:
    """The few REST calls the test checks with, as ``UI_USER`` once ``log_in`` succeeded."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.headers = {"Content-Type": "application/json"}

    def _request(self, method: str, url: str, body: dict | None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, method=method, data=data, headers=self.headers)
        with OPENER.open(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def log_in(self, username: str, password: str) -> None:
        token = self._request("POST", f"{self.base_url}/auth/token", {"username": username, "password": password})
        self.headers["Authorization"] = f"Bearer {token['access_token']}"

    def call(self, method: str, path: str, body: dict | None = None, **params) -> dict:
        query = ("?" + urllib.parse.urlencode(params, doseq=True)) if params else ""
        return self._request(method, f"{self.base_url}/api/v2{path}{query}", body)

    def runs(self, dag_id: str, **params) -> list[dict]:
        return self.call("GET", f"/dags/{dag_id}/dagRuns", limit=100, **params)["dag_runs"]

    def wait(self, what: str, condition, timeout: float = RUN_TIMEOUT_S, interval: float = 2):
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = condition()
            except urllib.error.URLError:
                result = None
            if result:
                return result
            assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
            time.sleep(interval)


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ui_stack():
    state = Path(tempfile.mkdtemp(prefix="sparkify-ui-", dir="/tmp"))
    pg_port, s3_port, api_port = free_ports(3)
    passwords_file = state / "ui-passwords.json"
    stack = LocalStack(state, pg_port=pg_port, s3_port=s3_port, api_port=api_port, bucket="sparkify-ui",
                       extra_env=with_login(passwords_file))
    stack.passwords_file = passwords_file
    # A fresh password per test run, readable by this user only; the api-server keeps the file as it is.
    fd = os.open(stack.passwords_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    stack.ui_password = secrets.token_urlsafe(24)
    with os.fdopen(fd, "w") as fh:
        json.dump({UI_USER: stack.ui_password}, fh)
    try:
        # The stack's processes copy os.environ when they start.
        with mock.patch.dict(os.environ, {"SPARKIFY_RUN_DEADLINE_MINUTES": DEADLINE_MINUTES}):
            stack.up()
        data_dir = state / "data"
        generate(data_dir, seed=21, songs=60, start_day=date(2018, 11, 1), days=1, events_per_day=EVENTS_PER_DAY,
                 users=20, match_share=0.7)
        upload_dir(data_dir, stack.bucket, s3_client(stack))
        stack.data_dir = data_dir
        yield stack
    finally:
        stack.down()
        shutil.rmtree(state, ignore_errors=True)


def s3_client(stack: LocalStack):
    return stack.service("s3").client()


@pytest.fixture(scope="module")
def api(ui_stack) -> Api:
    api = Api(ui_stack.api_url)
    api.log_in(UI_USER, ui_stack.ui_password)
    api.wait("sparkify_etl and sparkify_analytics to be parsed", lambda: all(
        _exists(api, f"/dags/{dag_id}") for dag_id in ("sparkify_etl", "sparkify_analytics")
    ), timeout=120)
    assert api.call("GET", "/importErrors")["import_errors"] == []
    return api


def _exists(api: Api, path: str) -> bool:
    try:
        api.call("GET", path)
        return True
    except urllib.error.HTTPError:
        return False


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US", timezone_id="UTC")
        page = context.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        try:
            yield page
        finally:
            context.close()
            browser.close()


@pytest.fixture(scope="module")
def journey() -> dict:
    """What one step of the journey hands the next (the tests run in file order)."""
    return {}


def open_ui(page, url: str) -> None:
    """Open a UI page in the session ``test_log_in`` started: no second login page."""
    page.goto(url, wait_until="domcontentloaded")


def submit_login(page, username: str, password: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def shot(page, name: str, **kwargs) -> None:
    page.wait_for_timeout(500)  # let charts and transitions settle
    page.screenshot(path=str(SCREENSHOTS / name), **kwargs)


# -- the journey ----------------------------------------------------------------------------------


def test_log_in(ui_stack, api, page):
    # Without a session, neither the REST API nor the UI lets anyone in.
    with pytest.raises(urllib.error.HTTPError) as refused:
        Api(ui_stack.api_url).call("GET", "/dags")
    assert refused.value.code == 401
    page.goto(f"{ui_stack.api_url}/dags", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Sign into Airflow").wait_for()
    assert urllib.parse.urlsplit(page.url).path == "/auth/login", page.url

    submit_login(page, UI_USER, "not-" + ui_stack.ui_password)
    page.get_by_text("Invalid credentials").wait_for()
    assert urllib.parse.urlsplit(page.url).path == "/auth/login", page.url

    submit_login(page, UI_USER, ui_stack.ui_password)
    page.wait_for_url(lambda url: urllib.parse.urlsplit(url).path == "/dags")
    page.get_by_role("link", name="sparkify_etl", exact=True).wait_for()
    assert page.get_by_role("heading", name="Sign into Airflow").count() == 0


def test_dag_list_and_graph(ui_stack, api, page):
    open_ui(page, f"{ui_stack.api_url}/dags")
    etl_link = page.get_by_role("link", name="sparkify_etl", exact=True)
    etl_link.wait_for()
    page.get_by_role("link", name="sparkify_analytics", exact=True).wait_for()
    page.get_by_text(re.compile(r"\d of 5 assets updated")).first.wait_for()
    shot(page, "dag_list.png")

    etl_link.click()
    page.get_by_role("button", name=re.compile("Show Graph")).click()
    for task_id in ("stage_events", "load_songplays_fact", "load_dimensions", "quality_checks"):
        page.get_by_text(task_id, exact=True).last.wait_for()
    page.get_by_role("button", name=re.compile(r"\d+ deadline")).wait_for()  # the Deadline Alert is listed
    shot(page, "dag_graph.png")


def test_trigger_a_window_from_the_form(ui_stack, api, page, journey):
    # The operator unpauses the DAG first (like `make demo`), and lets the scheduled run that
    # unpausing starts finish: two first runs at once would race to create the tables.
    api.call("PATCH", "/dags/sparkify_etl", {"is_paused": False})
    with contextlib.suppress(AssertionError):
        api.wait("the scheduled run unpausing creates", lambda: api.runs("sparkify_etl", run_type="scheduled"), timeout=30)
    api.wait("the scheduled run to finish", lambda: all(
        run["state"] in ("success", "failed") for run in api.runs("sparkify_etl", run_type="scheduled")
    ))

    open_ui(page, f"{ui_stack.api_url}/dags/sparkify_etl")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Run Parameters").wait_for()
    start, end = dialog.locator("#element_start"), dialog.locator("#element_end")
    start.fill(WINDOW[0])
    end.fill(WINDOW[1])
    dialog.get_by_text("Manual runs: end of the window").scroll_into_view_if_needed()
    shot(page, "trigger_form.png")

    trigger = dialog.get_by_role("button", name="Trigger", exact=True)
    trigger.click()
    with contextlib.suppress(Exception):
        dialog.wait_for(state="hidden", timeout=15_000)
    if dialog.is_visible():
        page.keyboard.press("Escape")

    runs = api.wait("the triggered run", lambda: [
        run for run in api.runs("sparkify_etl", run_type="manual")
        if run["conf"].get("start") == WINDOW[0] and run["conf"].get("end") == WINDOW[1]
    ], timeout=60)
    assert len(runs) == 1, runs
    journey["run_id"] = runs[0]["dag_run_id"]


def test_the_run_succeeds(ui_stack, api, page, journey):
    run_id = journey["run_id"]
    run = api.wait("the run to finish", lambda: (r := api.call("GET", f"/dags/sparkify_etl/dagRuns/{run_id}"))
                   and r["state"] in ("success", "failed") and r)
    failed = [ti["task_id"] for ti in api.call("GET", f"/dags/sparkify_etl/dagRuns/{run_id}/taskInstances")
              ["task_instances"] if ti["state"] != "success"]
    assert run["state"] == "success", f"failed tasks: {failed}; logs in {ui_stack.airflow_home / 'logs'}"

    open_ui(page, f"{ui_stack.api_url}/dags/sparkify_etl/runs/{urllib.parse.quote(run_id, safe='')}")
    page.get_by_role("heading", name=re.compile(re.escape(run_id))).wait_for()
    page.get_by_text("Success", exact=True).first.wait_for()
    page.get_by_text("Deadline", exact=True).first.wait_for()
    shot(page, "dag_run.png")


def test_stage_events_log_shows_the_row_counts(ui_stack, page, journey):
    day_file = ui_stack.data_dir / "log_data" / "2018" / "11" / "2018-11-01-events.json"
    lines = sum(1 for line in day_file.read_bytes().splitlines() if line.strip())

    page.get_by_role("link", name="stage_events", exact=True).first.click()
    page.get_by_role("tab", name="Logs").or_(page.get_by_role("link", name="Logs")).or_(
        page.get_by_text("Logs", exact=True)).first.wait_for()
    total = page.get_by_text(re.compile(r"staging_events: staged [\d,]+ rows from \d+ objects"))
    total.first.wait_for()
    text = total.first.inner_text()
    staged = int(re.search(r"staged ([\d,]+) rows", text).group(1).replace(",", ""))
    assert staged == lines, text
    assert re.search(r"\b0 rejected\b", text), text
    page.get_by_text(re.compile(r"staging_events: 1 objects listed, 1 new or changed")).first.wait_for()

    # Wrap long lines so the counts are on screen, not scrolled off to the right.
    with contextlib.suppress(Exception):
        page.get_by_role("button", name="Log Settings").click()
        page.get_by_role("menuitem", name=re.compile("^Wrap")).click(timeout=5_000)
    shot(page, "task_log.png")


def test_the_deadline_alert_fired(ui_stack, journey):
    """The run took longer than the test stack's deadline: the scheduler noticed, and the
    triggerer ran sparkify.alerts.SparkifyNotifier, which logs the alert."""
    run_id = journey["run_id"]
    log = ui_stack.logs_dir / "triggerer.log"
    pattern = f"ALERT deadline_missed: [Sparkify] sparkify_etl run {run_id} missed its deadline"
    deadline = time.monotonic() + 90
    while pattern not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"no deadline alert for {run_id} in {log}"
        time.sleep(2)


def test_assets_schedule_the_analytics_report(ui_stack, api, page, journey):
    # The run's load tasks updated the five star-schema Assets, which queue sparkify_analytics.
    def report_after_run():
        runs = api.runs("sparkify_analytics", order_by="-run_after")
        if not runs or any(run["state"] in ("queued", "running") for run in runs):
            return None
        try:
            pending = api.call("GET", "/dags/sparkify_analytics/assets/queuedEvents")["total_entries"]
        except urllib.error.HTTPError:
            pending = 0
        return None if pending == 5 else runs

    runs = api.wait("the analytics report run", report_after_run)
    # Every report run succeeded, including the one after the empty scheduled hour.
    assert [run["state"] for run in runs] == ["success"] * len(runs), runs
    assert runs[0]["run_type"] == "asset_triggered", runs[0]

    open_ui(page, f"{ui_stack.api_url}/assets")
    for table in ("songplays", "users", "songs", "artists", "time"):
        page.get_by_text(f"sparkify.{table}", exact=True).first.wait_for()
    shot(page, "assets.png")

    s3 = s3_client(ui_stack)
    latest = json.loads(s3.get_object(Bucket=ui_stack.bucket, Key="reports/latest.json")["Body"].read())
    assert latest["run_id"] == runs[0]["dag_run_id"]
    url = s3.generate_presigned_url("get_object", Params={"Bucket": ui_stack.bucket, "Key": latest["index_key"]},
                                    ExpiresIn=600)
    page.goto(url, wait_until="load")
    page.get_by_role("heading", name="Sparkify analytics").wait_for()
    page.get_by_role("heading", name="Top songs").wait_for()
    assert page.locator('img[src^="data:image/png;base64,"]').evaluate("img => img.naturalWidth") > 800
    assert page.get_by_role("cell", name="2018-11-01").count() == 1  # active users per day: the one day loaded
    shot(page, "analytics_report.png", full_page=True, clip={"x": 0, "y": 0, "width": 1440, "height": 1500})
