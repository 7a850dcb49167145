"""WTForms for every form; Flask-WTF adds the CSRF token to each."""

from __future__ import annotations

from flask_wtf import FlaskForm as _FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    EmailField,
    Field,
    HiddenField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from moked.statuses import Channel, MembershipRole, NotifyWhen


class FlaskForm(_FlaskForm):  # type: ignore[misc]
    """flask_wtf.FlaskForm (untyped upstream)."""


def no_control_characters(_form: object, field: Field) -> None:
    """Nobody types a NUL or an escape; Postgres refuses a NUL in text (a 500 otherwise)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in field.data or ""):
        raise ValidationError("control characters")


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254), no_control_characters])
    password = PasswordField(
        "Password", validators=[DataRequired(), Length(max=200), no_control_characters]
    )
    next = HiddenField()


class ActionForm(FlaskForm):
    """A form with nothing but its CSRF token (buttons that change state)."""


class TagForm(FlaskForm):
    name = StringField("Tag", validators=[DataRequired(), Length(min=1, max=64)])


class NoteForm(FlaskForm):
    body = TextAreaField("Note", validators=[DataRequired(), Length(min=1, max=5000)])


class AssignForm(FlaskForm):
    assignee = SelectField("Assignee", choices=[], validate_choice=True)


class BulkForm(FlaskForm):
    """The inbox's bulk bar: one operation on the checked calls (`call_sid`, read as a
    list by crm_ui.inbox.bulk)."""

    operation = SelectField("Operation", choices=["resolve", "assign", "tag"], validate_choice=True)
    assignee = StringField("Assign to", validators=[Optional(), Length(max=12)])
    tag = StringField("Tag", validators=[Optional(), Length(max=64), no_control_characters])


class GreetingUploadForm(FlaskForm):
    file = FileField("MP3 file", validators=[FileRequired()])
    activate = BooleanField("Make it active now", default=True)


class GreetingTextForm(FlaskForm):
    text = TextAreaField("Greeting text", validators=[Optional(), Length(max=1000)])


class NumberForm(FlaskForm):
    number = StringField("Phone number", validators=[DataRequired(), Length(max=32)])


class PasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired(), Length(max=200)])
    new = PasswordField("New password", validators=[DataRequired(), Length(max=200)])
    confirm = PasswordField("Repeat the new password", validators=[DataRequired(), Length(max=200)])


class TokenForm(FlaskForm):
    label = StringField("Label", validators=[Optional(), Length(max=200)])


_MEMBERSHIP_ROLES = [role.value for role in MembershipRole]


class MemberForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254), no_control_characters])
    role = SelectField("Role", choices=_MEMBERSHIP_ROLES, default=MembershipRole.MEMBER.value)


class MemberRoleForm(FlaskForm):
    """A member's role in one business (never the user's global role)."""

    role = SelectField("Role", choices=_MEMBERSHIP_ROLES, validators=[DataRequired()])


class NotificationRuleForm(FlaskForm):
    """A notification rule; moked.notify.rules.add does the real validation."""

    channel = SelectField(
        "Channel",
        choices=[channel.value for channel in Channel],
        validate_choice=True,
    )
    recipient = StringField(
        "Recipient", validators=[DataRequired(), Length(max=2048), no_control_characters]
    )
    secret = StringField("Secret", validators=[Optional(), Length(max=200), no_control_characters])
    generate_secret = BooleanField("Generate a secret")
    when = SelectField(
        "When",
        choices=[when.value for when in NotifyWhen],
        validate_choice=True,
    )
    quiet_hours = StringField(
        "Quiet hours", validators=[Optional(), Length(max=32), no_control_characters]
    )
    hold = SelectField(
        "Hold in quiet hours",
        choices=["", "yes", "no"],
        # "": the channel's default
        validate_choice=True,
    )
    attach_audio = BooleanField("Attach the MP3", default=True)
