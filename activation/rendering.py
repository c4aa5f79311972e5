"""Render a send-list row into the message leadflow hands to n8n.

Templates live in `activation/templates/<template>.{subject,text,html,chat}.j2` (`chat` is the short text for
WhatsApp inside the 24 h window and for the chatbot) and render with strict undefined:
a template that names a field the send list lacks raises `RenderError`, and that one message is quarantined
instead of going out half-filled.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError, select_autoescape
from sendgrid.helpers.mail import Asm, CustomArg, GroupId, Mail

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

_environment = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    undefined=StrictUndefined,
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
    keep_trailing_newline=False,
)

MESSAGE_FIELDS = ("idempotency_key", "lead_id", "product_id", "workflow", "step", "channel", "template")
WHATSAPP_TEMPLATE_LANGUAGE = "en"  # language of the approved WhatsApp templates named like our templates


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
    *,
    from_email: str,
    to_email: str,
    to_name: str | None,
    subject: str,
    text: str,
    html: str,
    key: str,
    unsubscribe_group_id: int | None = None,
) -> dict[str, Any]:
    """A SendGrid v3 /mail/send body built with the sendgrid library's helpers.

    The idempotency key travels in `custom_args`, so SendGrid's event webhook echoes it on every event; the
    unsubscribe group (`asm`) gives the recipient a one-click group unsubscribe that SendGrid enforces.
    """
    mail = Mail(
        from_email=from_email,
        to_emails=[(to_email, to_name)] if to_name else to_email,
        subject=subject,
        plain_text_content=text,
        html_content=html,
    )
    mail.custom_arg = CustomArg("idempotency_key", key)
    if unsubscribe_group_id is not None:
        mail.asm = Asm(GroupId(unsubscribe_group_id))
    return mail.get()


def _split(value: Any) -> list[str]:
    """`a|b|c` columns of the send list (failover lists) as a list; empty parts dropped."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value if v not in (None, "")]
    return [part for part in str(value).split("|") if part]


def _whatsapp_number(recipient: str) -> str:
    """The Cloud API's `to`: the E.164 number without the leading '+'."""
    return recipient.lstrip("+")


def _route(
    channel: str,
    recipient: str,
    message_type: str,
    template: str,
    context: dict[str, Any],
    row: dict[str, Any],
    from_email: str,
    unsubscribe_group_id: int | None,
    environment: Environment | None,
) -> dict[str, Any]:
    route: dict[str, Any] = {"channel": channel, "recipient": recipient, "message_type": message_type}
    key = str(row["idempotency_key"])
    if channel == "email":
        subject = render_template(f"{template}.subject.j2", context, environment)
        text = render_template(f"{template}.text.j2", context, environment)
        html = render_template(f"{template}.html.j2", context, environment)
        route["sendgrid"] = sendgrid_mail_body(
            from_email=from_email,
            to_email=recipient,
            to_name=row.get("first_name") or None,
            subject=subject,
            text=text,
            html=html,
            key=key,
            unsubscribe_group_id=unsubscribe_group_id,
        )
    elif channel == "whatsapp":
        body: dict[str, Any] = {"messaging_product": "whatsapp", "to": _whatsapp_number(recipient)}
        if message_type == "whatsapp_text":
            # free-form text: only inside the 24 h customer-service window (the send list decides)
            body.update(
                type="text", text={"body": render_template(f"{template}.chat.j2", context, environment)}
            )
        else:
            # outside the window Meta accepts only pre-approved templates, named like our template
            body.update(
                type="template",
                template={
                    "name": template,
                    "language": {"code": WHATSAPP_TEMPLATE_LANGUAGE},
                    "components": [
                        {
                            "type": "body",
                            "parameters": [
                                {"type": "text", "text": str(row.get("first_name") or "there")},
                                {
                                    "type": "text",
                                    "text": str(row.get("product_name") or row.get("product_id")),
                                },
                            ],
                        }
                    ],
                },
            )
        route["whatsapp"] = body
    elif channel == "chatbot":
        route["chatbot"] = {
            "user_id": recipient,
            "text": render_template(f"{template}.chat.j2", context, environment),
            "idempotency_key": key,
        }
    else:
        raise RenderError(f"send-list row {key} names unknown channel {channel!r}")
    return route


def render_message(
    row: dict[str, Any],
    *,
    from_email: str,
    unsubscribe_group_id: int | None = None,
    environment: Environment | None = None,
) -> dict[str, Any]:
    """Turn one send-list row into the message payload for n8n (see ARCHITECTURE.md, the n8n contract).

    Args:
        row: one send-list row (columns of the send-list model).
        from_email: sender address for email.
        unsubscribe_group_id: SendGrid unsubscribe group for nurture email (None = no group).
        environment: a Jinja2 environment (tests pass one with their own templates).

    Returns:
        A JSON-ready dict: routing fields, rendered content, and `routes` — the preferred channel first, then
        the failover channels the send list allows, each with its provider payload.

    Raises:
        RenderError: a template is missing or references a field the row does not have.
    """
    template = row.get("template")
    if not template:
        raise RenderError(f"send-list row {row.get('idempotency_key')} names no template")
    context = _context(row)
    message: dict[str, Any] = {field: row.get(field) for field in MESSAGE_FIELDS}
    message["recipient"] = row.get("recipient")
    channels = [str(row.get("channel"))] + _split(row.get("fallback_channels"))
    recipients = [str(row.get("recipient"))] + _split(row.get("fallback_recipients"))
    primary_type = row.get("message_type") or (
        "email" if row.get("channel") == "email" else str(row.get("channel"))
    )
    message_types = [str(primary_type)] + _split(row.get("fallback_message_types"))
    if not len(channels) == len(recipients) == len(message_types):
        raise RenderError(
            f"send-list row {row.get('idempotency_key')}: fallback_channels, fallback_recipients and "
            "fallback_message_types are not aligned"
        )
    message["routes"] = [
        _route(
            channel,
            recipient,
            message_type,
            template,
            context,
            row,
            from_email,
            unsubscribe_group_id,
            environment,
        )
        for channel, recipient, message_type in zip(channels, recipients, message_types, strict=True)
    ]
    primary = message["routes"][0]
    if "sendgrid" in primary:
        message["sendgrid"] = primary["sendgrid"]
        message["content"] = {
            "subject": primary["sendgrid"]["subject"],
            "text": primary["sendgrid"]["content"][0]["value"],
            "html": primary["sendgrid"]["content"][1]["value"],
        }
    else:
        message["content"] = {"text": render_template(f"{template}.chat.j2", context, environment)}
    message["message_type"] = primary_type
    message["fallback_channels"] = channels[1:]
    return message
