"""Per business: who hears about its calls (moked.notify.rules), and a test send.

Admins and the business's owners manage the rules; other members see them read-only
(secrets masked). Another business's page is a 404, as everywhere in the CRM.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from crm_ui.access import business_or_404, login_required, managed_business_or_404, manages, me
from crm_ui.db import app_settings, db
from crm_ui.feedback import form_error, refuse
from crm_ui.forms import ActionForm, NotificationRuleForm
from crm_ui.i18n import gettext as _
from crm_ui.present import CHANNEL_NAMES
from moked.db.models import Business, NotificationRule
from moked.notify import alerts, quiet_hours, rules
from moked.notify.channels import DeliveryFailed, Envelope
from moked.statuses import Channel, NotifyWhen

bp = Blueprint("notifications", __name__)

WHEN_LABELS = {
    NotifyWhen.MESSAGE: "A message was left",
    NotifyWhen.MISSED: "Missed calls (no message)",
    NotifyWhen.ALL: "Every call",
}

# moked.notify.rules' reasons, worded for staff; anything else is shown as it is.
_RULE_ERRORS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(r"^a \w+ rule needs a recipient$"), lambda m: _("Enter a recipient.")),
    (re.compile(r"^not an email address"), lambda m: _("That is not a valid e-mail address.")),
    (re.compile(r"^not a phone number"), lambda m: _("That is not a valid phone number.")),
    (
        re.compile(r"^webhook URL refused: (.*)$"),
        lambda m: _("The webhook URL was refused: {reason}", reason=m.group(1)),
    ),
    (
        re.compile(r"^a webhook rule needs --secret"),
        lambda m: _("A webhook needs a signing secret (whsec_…): enter one or generate one."),
    ),
    (
        re.compile(r"^webhook secret refused: (.*)$"),
        lambda m: _("The webhook secret was refused: {reason}", reason=m.group(1)),
    ),
    (
        re.compile(r"^only webhook rules take a secret$"),
        lambda m: _("Only a webhook takes a secret."),
    ),
    (re.compile(r"^quiet hours must look like"), lambda m: _("Quiet hours look like 22:00-07:00.")),
    (
        re.compile(r"^quiet hours must start and end at different times$"),
        lambda m: _("Quiet hours must start and end at different times."),
    ),
    (
        re.compile(r"^a business has at most (\d+) rules$"),
        lambda m: _("A business has at most {n} notification rules.", n=m.group(1)),
    ),
    (
        re.compile(r" already notifies (.+) by (\w+)$"),
        lambda m: _(
            "{target} is already notified by {channel}.", target=m.group(1), channel=m.group(2)
        ),
    ),
]


def rule_error(message: str) -> str:
    """A RuleError's message in the user's language when it is one of ours."""
    for pattern, word in _RULE_ERRORS:
        match = pattern.search(message)
        if match:
            return word(match)
    return message


def _manageable(business_id: int) -> Business:
    return managed_business_or_404(business_id, me())  # 404 outside, 403 for a member


def _back(business: Business) -> WerkzeugResponse:
    return redirect(url_for("notifications.index", business_id=business.id))


def _render(business: Business, form: NotificationRuleForm, **extra: object) -> str:
    return render_template(
        "notifications.html",
        business=business,
        rules=rules.rules_of(db(), business.id),
        form=form,
        action_form=ActionForm(),
        can_manage=manages(me(), business.id),
        channel_labels=CHANNEL_NAMES,
        when_labels=WHEN_LABELS,
        describe_quiet=quiet_hours.describe,
        masked_secret=rules.masked_secret,
        **{"new_secret": None, **extra},
    )


@bp.get("/businesses/<int:business_id>/notifications")
@login_required
def index(business_id: int) -> str:
    business = business_or_404(business_id, me())
    return _render(business, NotificationRuleForm())


@bp.post("/businesses/<int:business_id>/notifications")
@login_required
def add(business_id: int) -> WerkzeugResponse | tuple[str, int]:
    business = _manageable(business_id)
    form = NotificationRuleForm()
    if not form.validate_on_submit():
        form_error("rule-form", _("Choose a channel and enter a recipient."))
        return _render(business, form), 400
    channel = Channel(form.channel.data)
    secret = (form.secret.data or "").strip() or None
    generated = None
    if channel is Channel.WEBHOOK and secret is None and form.generate_secret.data:
        from moked.notify.channels.webhook import new_secret

        generated = secret = new_secret()
    hold = {"yes": True, "no": False}.get(form.hold.data or "")
    new = rules.NewRule(
        channel=channel,
        target=form.recipient.data or "",
        when=NotifyWhen(form.when.data),
        secret=secret,
        quiet_hours=(form.quiet_hours.data or "").strip() or None,
        hold_in_quiet_hours=hold,
        attach_audio=bool(form.attach_audio.data),
    )
    session = db()
    try:
        rule = rules.add(session, app_settings(), business, new)
        session.commit()
    except rules.RuleError as exc:
        session.rollback()
        form_error("rule-form", rule_error(str(exc)))
        return _render(business, form), 400
    flash(_("Notification rule added: {target}.", target=rule.target), "success")
    if generated is not None:
        # Shown once, in this response only: the receiver needs it to check signatures.
        return _render(business, NotificationRuleForm(formdata=None), new_secret=generated), 201
    return _back(business)


def _rule_or_404(business: Business, rule_id: int) -> NotificationRule:
    rule = rules.find(db(), business.id, rule_id)
    if rule is None:
        abort(404)
    return rule


@bp.post("/businesses/<int:business_id>/notifications/<int:rule_id>/delete")
@login_required
def remove(business_id: int, rule_id: int) -> WerkzeugResponse:
    business = _manageable(business_id)
    ActionForm()
    rule = _rule_or_404(business, rule_id)
    target = rule.target
    rules.remove(db(), business.id, rule.id)
    db().commit()
    flash(_("Notification rule removed: {target}.", target=target), "info")
    return _back(business)


@bp.post("/businesses/<int:business_id>/notifications/<int:rule_id>/test")
@login_required
def test(business_id: int, rule_id: int) -> WerkzeugResponse:
    """Send a made-up alert through the rule now (quiet hours ignored, nothing stored),
    as `moked notify test` does."""
    from moked.notify.dispatch import sender

    business = _manageable(business_id)
    rule = _rule_or_404(business, rule_id)
    settings = app_settings()
    now = dt.datetime.now(dt.UTC)
    envelope = Envelope(
        channel=rule.channel,
        recipient=rule.target,
        alerts=(alerts.sample(settings, business, now),),
        message_id=f"msg_test_{uuid.uuid4().hex}",
        attempt=1,
        sent_at=now,
        secret=rule.secret,
        attach_audio=False,
        sender=business.numbers[0].e164 if business.numbers else None,
    )
    try:
        sender(rule.channel)(settings, envelope)
    except DeliveryFailed as exc:
        reason = exc.reason
    except Exception as exc:  # an unexpected answer: say so rather than a 500
        current_app.logger.exception("test notification for rule %s", rule.id)
        reason = type(exc).__name__
    else:
        flash(_("A test alert was sent to {target}.", target=rule.target), "success")
        return _back(business)
    message = _("The test to {target} failed: {reason}", target=rule.target, reason=reason)
    page = url_for("notifications.index", business_id=business.id)
    return refuse(f"test-{rule.id}", message, page)
