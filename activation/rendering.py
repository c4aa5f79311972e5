"""Render a send-list row into the message leadflow hands to n8n.

Templates live in `activation/templates/<template>.{subject,text,html}.j2` and render with strict undefined:
a template that names a field the send list lacks raises `RenderError`, and that one message is quarantined
instead of going out half-filled.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError, select_autoescape
from sendgrid.helpers.mail import CustomArg, Mail

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

_environment = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    undefined=StrictUndefined,
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
    keep_trailing_newline=False,
)

MESSAGE_FIELDS = ("idempotency_key", "lead_id", "product_id", "workflow", "step", "channel", "template")


class RenderError(ValueError):
    """A message could not be rendered; the message names the template and the cause."""


def _context(row: dict[str, Any]) -> dict[str, Any]:
    context = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
    context.setdefault("cta_url", f"https://example.com/{row.get('product_id', '')}/walkthrough")
    return context


def render_template(name: str, context: dict[str, Any], environment: Environment | None = None) -> str:
    env = environment or _environment
    try:
        return env.get_template(name).render(**context).strip()
    except TemplateError as error:
        raise RenderError(f"template {name}: {type(error).__name__}: {error}") from error


def sendgrid_mail_body(
    *, from_email: str, to_email: str, to_name: str | None, subject: str, text: str, html: str, key: str
) -> dict[str, Any]:
    """A SendGrid v3 /mail/send body built with the sendgrid library's helpers."""
    mail = Mail(
        from_email=from_email,
        to_emails=[(to_email, to_name)] if to_name else to_email,
        subject=subject,
        plain_text_content=text,
        html_content=html,
    )
    mail.custom_arg = CustomArg("idempotency_key", key)
    return mail.get()


def render_message(
    row: dict[str, Any], *, from_email: str, environment: Environment | None = None
) -> dict[str, Any]:
    """Turn one send-list row into the message payload for n8n.

    Args:
        row: one send-list row (columns of the send-list model).
        from_email: sender address for email.
        environment: a Jinja2 environment (tests pass one with their own templates).

    Returns:
        A JSON-ready dict: routing fields, rendered content and, for email, the SendGrid v3 body.

    Raises:
        RenderError: a template is missing or references a field the row does not have.
    """
    template = row.get("template")
    if not template:
        raise RenderError(f"send-list row {row.get('idempotency_key')} names no template")
    context = _context(row)
    subject = render_template(f"{template}.subject.j2", context, environment)
    text = render_template(f"{template}.text.j2", context, environment)
    message: dict[str, Any] = {field: row.get(field) for field in MESSAGE_FIELDS}
    message["recipient"] = row.get("recipient")
    message["content"] = {"subject": subject, "text": text}
    if row.get("channel") == "email":
        html = render_template(f"{template}.html.j2", context, environment)
        message["content"]["html"] = html
        message["sendgrid"] = sendgrid_mail_body(
            from_email=from_email,
            to_email=str(row.get("recipient")),
            to_name=row.get("first_name") or None,
            subject=subject,
            text=text,
            html=html,
            key=str(row["idempotency_key"]),
        )
    route: dict[str, Any] = {"channel": row.get("channel"), "recipient": row.get("recipient")}
    if "sendgrid" in message:
        route["sendgrid"] = message["sendgrid"]
    message["routes"] = [route]
    message["fallback_channels"] = list(row.get("fallback_channels") or [])
    return message
