"""Alerts for the Sparkify DAGs: failed tasks and runs that miss their deadline.

One notifier, :class:`SparkifyNotifier`, serves both:

* as a task ``on_failure_callback`` (in ``default_args``): it runs in the task's process, so
  the alert lands in the failed task's own log;
* as the callback of a ``DeadlineAlert`` (``AsyncCallback(SparkifyNotifier, ...)``): the
  scheduler notices the missed deadline and the triggerer awaits the notifier, so that alert
  lands in the triggerer's log (``.state/logs/triggerer.log`` on the local stack).

Every alert is logged. Slack and email are off until configured, and no secret lives in code.
Both are sent by the providers' notifiers, which read the connections:

* **Slack**: the Slack provider's ``SlackWebhookNotifier`` with the connection ``sparkify_slack``,
  whose password is the incoming-webhook URL (or whose host is ``hooks.slack.com/services`` and
  password the webhook token), e.g.
  ``AIRFLOW_CONN_SPARKIFY_SLACK='{"conn_type": "slackwebhook", "password": "https://hooks.slack.com/services/..."}'``
  or the same connection in a secrets backend.
* **Email**: the SMTP provider's ``SmtpNotifier`` to the recipients in the Variable
  ``sparkify_alert_emails`` (comma-separated, e.g.
  ``AIRFLOW_VAR_SPARKIFY_ALERT_EMAILS=data-oncall@example.com``), through the SMTP connection
  ``sparkify_smtp`` (host, port, login, password and ``from_email`` in its extra).

A channel that fails is logged and skipped: an alert never fails the task it reports on.
Missed deadlines of *backfill* runs are only logged by default (``alert_backfills=True`` sends
them too): a long backfill queues many runs at once, and they wait their turn by design.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseNotifier

from sparkify.alert_messages import describe_missed_deadline, describe_task_failure

SLACK_CONN_ID = "sparkify_slack"
SMTP_CONN_ID = "sparkify_smtp"
EMAILS_VARIABLE = "sparkify_alert_emails"
EVENTS = ("task_failed", "deadline_missed")

log = logging.getLogger("sparkify.alerts")


class SparkifyNotifier(BaseNotifier):
    """Log an alert and send it to the configured channels (Slack webhook, email).

    :param event: ``'task_failed'`` (a task callback) or ``'deadline_missed'`` (a Deadline
        Alert callback).
    :param deadline_description: for deadline alerts, a sentence saying what the deadline is.
    :param slack_conn_id: connection holding the Slack incoming-webhook URL.
    :param smtp_conn_id: SMTP connection for email alerts.
    :param emails_variable: Variable listing email recipients (comma-separated).
    :param alert_backfills: also send (not only log) missed deadlines of backfill runs.
    :param context: set by the triggerer when a Deadline Alert awaits the notifier.
    """

    def __init__(
        self,
        *,
        event: str = "task_failed",
        deadline_description: str = "",
        slack_conn_id: str = SLACK_CONN_ID,
        smtp_conn_id: str = SMTP_CONN_ID,
        emails_variable: str = EMAILS_VARIABLE,
        alert_backfills: bool = False,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(context=dict(context) if context else None)
        if event not in EVENTS:
            raise ValueError(f"event {event!r} must be one of {', '.join(EVENTS)}")
        self.event = event
        self.deadline_description = deadline_description
        self.slack_conn_id = slack_conn_id
        self.smtp_conn_id = smtp_conn_id
        self.emails_variable = emails_variable
        self.alert_backfills = alert_backfills

    # -- entry points -------------------------------------------------------------------------

    def notify(self, context: Mapping[str, Any]) -> None:
        """Task callback (runs in the task's process)."""
        self.deliver(self.compose(context), context=context)

    async def async_notify(self, context: Mapping[str, Any]) -> None:
        """Deadline Alert callback (runs in the triggerer)."""
        alert = self.compose(context)
        external = self.alert_backfills or alert.get("run_type") != "backfill"
        # Channel lookups and HTTP/SMTP calls block: keep them off the triggerer's event loop.
        await asyncio.to_thread(self.deliver, alert, external, context)

    # -- message ------------------------------------------------------------------------------

    def compose(self, context: Mapping[str, Any]) -> dict[str, str]:
        """The alert as ``{"title", "text", "url", ...}``, from a task or a deadline context."""
        if self.event == "deadline_missed":
            return describe_missed_deadline(context, self.deadline_description)
        return describe_task_failure(context)

    # -- delivery -----------------------------------------------------------------------------

    def deliver(self, alert: dict[str, str], external: bool = True, context: Mapping[str, Any] | None = None) -> list[str]:
        """Log the alert, then (if ``external``) send it to every configured channel.
        Returns the channels used."""
        self.log.error("ALERT %s: %s | %s", self.event, alert["title"], alert["text"].replace("\n", " | "))
        sent = ["log"]
        for channel, send in (("slack", self._send_slack), ("email", self._send_email)) if external else ():
            try:
                if send(alert, dict(context or {})):
                    sent.append(channel)
            except Exception as err:  # an alert must never fail the task it reports on
                self.log.warning("alert channel %s failed: %s: %s", channel, err.__class__.__name__, err)
        self.log.info("alert %s sent to: %s", self.event, ", ".join(sent))
        return sent

    # The providers' notifiers are called through notify(), not as callbacks: called, they
    # would render their fields as Jinja, and an error message may well contain "{{".

    def _send_slack(self, alert: dict[str, str], context: dict[str, Any]) -> bool:
        if _optional_connection(self.slack_conn_id) is None:
            return False
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        text = f"*{alert['title']}*\n{alert['text']}" + (f"\n<{alert['url']}|Open in Airflow>" if alert.get("url") else "")
        SlackWebhookNotifier(slack_webhook_conn_id=self.slack_conn_id, text=text, timeout=10).notify(context)
        return True

    def _send_email(self, alert: dict[str, str], context: dict[str, Any]) -> bool:
        recipients = _email_recipients(self.emails_variable)
        if not recipients:
            return False
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        body = "<p>" + html.escape(alert["text"]).replace("\n", "<br>") + "</p>"
        if alert.get("url"):
            body += f'<p><a href="{html.escape(alert["url"])}">Open in Airflow</a></p>'
        SmtpNotifier(to=recipients, subject=alert["title"], html_content=body, smtp_conn_id=self.smtp_conn_id).notify(context)
        return True


# -- channel configuration ----------------------------------------------------------------------


def _optional_connection(conn_id: str) -> Any:
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as err:  # not configured: AirflowNotFoundException, or a lookup error
        if "not defined" not in str(err) and "NotFound" not in err.__class__.__name__:
            log.debug("connection %s lookup failed: %s", conn_id, err)
        return None


def _email_recipients(variable: str) -> list[str]:
    from airflow.sdk import Variable

    try:
        value = Variable.get(variable, default=None)
    except Exception:
        return []
    return [address.strip() for address in str(value or "").replace(";", ",").split(",") if address.strip()]
