"""Render a send-list row into the message leadflow hands to n8n.

Templates live in `activation/templates/<template>.{subject,text,html,chat}.j2` (`chat` is the short text for
WhatsApp inside the 24 h window and for the chatbot) and render with strict undefined:
a template that names a field the send list lacks raises `RenderError`, and that one message is quarantined
instead of going out half-filled.

Rendering is on the hot path of delivery (every message renders every failover route), so: templates are
compiled once per process (no auto-reload: a changed template file takes a restart), a message renders each
template once however many routes use it, and the SendGrid body is built as the plain dict the sendgrid
helper would produce (a unit test holds the two equal).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, TemplateError, select_autoescape
from sendgrid.helpers.mail.exceptions import ApiKeyIncludedException

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

_environment = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    undefined=StrictUndefined,
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
    keep_trailing_newline=False,
    auto_reload=False,  # templates ship with the code: no stat of the file on every render
)

MESSAGE_FIELDS = ("idempotency_key", "lead_id", "product_id", "workflow", "step", "channel", "template")
WHATSAPP_TEMPLATE_LANGUAGE = "en"  # language of the approved WhatsApp templates named like our templates


class RenderError(ValueError):
    """A message could not be rendered; the message names the template and the cause."""


def _context(row: dict[str, Any]) -> dict[str, Any]:
    context = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
    context.setdefault("cta_url", f"https://example.com/{row.get('product_id', '')}/walkthrough")
    return context


class _Renderer:
    """Renders the templates of one message: the context is built once and each template rendered once, however
    many routes use it (a message's email, WhatsApp and chatbot routes share the chat text)."""

    __slots__ = ("context", "env", "parent", "parent_globals", "row", "texts")

    def __init__(self, env: Environment, row: dict[str, Any] | None, context: dict[str, Any] | None = None):
        self.env = env
        self.row = row
        self.context = context
        self.parent: dict[str, Any] | None = None  # globals and context: the variables every template sees
        self.parent_globals: dict[str, Any] | None = None
        self.texts: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        text = self.texts.get(name)
        if text is None:
            if self.context is None:
                self.context = _context(self.row or {})
            try:
                text = self._render(name).strip()
            except TemplateError as error:
                raise RenderError(f"template {name}: {type(error).__name__}: {error}") from error
            self.texts[name] = text
        return text

    def _render(self, name: str) -> str:
        """`Template.render(**context)` without its per-call cost: Jinja merges the template's globals (a
        ChainMap) into a fresh dict on every render; here the merged variables are built once per message and
        globals (flattened once per template), and the context is created as `Template.new_context` would."""
        env = self.env
        if env.auto_reload or env.is_async:  # exactly Jinja's own path
            return env.get_template(name).render(**self.context)
        template, globals_ = _loaded(env, name)
        if self.parent_globals is not globals_:  # the templates of one environment share one globals dict
            self.parent = dict(globals_, **self.context)
            self.parent_globals = globals_
        parent = self.parent
        context = env.context_class(env, parent, template.name, template.blocks, globals=globals_)
        try:
            return env.concat(template.root_render_func(context))  # type: ignore[attr-defined]
        except Exception:
            env.handle_exception()
            raise  # handle_exception always raises


_LOADED: dict[tuple[int, str], tuple[Any, Environment, Template, dict[str, Any]]] = {}


def _loaded(env: Environment, name: str) -> tuple[Template, dict[str, Any]]:
    """A non-reloading environment's compiled template and its globals as one flat dict, looked up once.

    Templates whose globals are the same share one dict (so a message merges its variables once). As Jinja says,
    globals are not to be changed once templates are loaded: a change is not seen here.
    """
    key = (id(env), name)
    entry = _LOADED.get(key)
    if entry is None or entry[1] is not env or entry[0] is not env.loader:
        template = env.get_template(name)
        if len(_LOADED) > 1024:
            _LOADED.clear()
        flat = dict(template.globals)
        for other in _LOADED.values():
            if (
                other[1] is env
                and other[3].keys() == flat.keys()
                and all(other[3][k] is v for k, v in flat.items())
            ):
                flat = other[3]
                break
        entry = _LOADED[key] = (env.loader, env, template, flat)
    return entry[2], entry[3]


def render_template(name: str, context: dict[str, Any], environment: Environment | None = None) -> str:
    return _Renderer(environment or _environment, None, context)(name)


_SENDGRID_API_KEY = re.compile(r"SG\.[0-9a-zA-Z]+\.[0-9a-zA-Z]+")  # the helper's ValidateApiKey pattern
# an address `email.utils.parseaddr` returns unchanged (with no display name): dot-atoms around one `@`
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


@lru_cache(maxsize=256)
def _address_fields(value: str) -> tuple[tuple[str, str], ...]:
    """The fields of sendgrid's `Email(value).get()` (a name-less address string, parsed like the helper)."""
    if not value:
        return (("email", value),)
    name, email = parseaddr(value)
    if "@" not in email:  # the helper's reading: a string that is not an address is a name
        name, email = email, None
    fields = []
    if name:
        fields.append(("name", name))
    if email:
        fields.append(("email", email))
    return tuple(fields)


def _address(value: str) -> dict[str, str]:
    if _PLAIN_ADDRESS.fullmatch(value):
        return {"email": value}
    return dict(_address_fields(value))


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
    """A SendGrid v3 /mail/send body, the dict the sendgrid library's `Mail(...).get()` builds.

    The idempotency key travels in `custom_args`, so SendGrid's event webhook echoes it on every event; the
    unsubscribe group (`asm`) gives the recipient a one-click group unsubscribe that SendGrid enforces.
    Built as a plain dict (the helper objects cost more than the rest of a render); the helper's checks are
    kept: a non-string name raises TypeError, text or html starting with an API key raises
    ApiKeyIncludedException, and a recipient without an address raises KeyError, as the helper does.
    Arguments of other types than these go through the helper itself.
    """
    if not (
        isinstance(from_email, str)
        and isinstance(to_email, str)
        and isinstance(subject, str)
        and isinstance(text, str)
        and isinstance(html, str)
    ):
        return _sendgrid_mail_body_with_helper(
            from_email=from_email,
            to_email=to_email,
            to_name=to_name,
            subject=subject,
            text=text,
            html=html,
            key=key,
            unsubscribe_group_id=unsubscribe_group_id,
        )
    sender = dict(_address_fields(from_email))
    if to_name:
        if not isinstance(to_name, str):
            raise TypeError("name must be of type string.")
        to = {"name": to_name, "email": to_email}
    else:
        to = _address(to_email)
    if _SENDGRID_API_KEY.match(text) or _SENDGRID_API_KEY.match(html):
        raise ApiKeyIncludedException()
    if "email" not in to:
        raise KeyError("email")  # the helper's personalization reads the recipient's address
    body: dict[str, Any] = {}
    if sender:
        body["from"] = sender
    body["subject"] = subject
    body["personalizations"] = [{"to": [to]}]
    body["content"] = [{"type": "text/plain", "value": text}, {"type": "text/html", "value": html}]
    if key is not None:
        body["custom_args"] = {"idempotency_key": key}
    if unsubscribe_group_id is not None:
        body["asm"] = {"group_id": unsubscribe_group_id}
    return body


def _sendgrid_mail_body_with_helper(
    *,
    from_email: Any,
    to_email: Any,
    to_name: Any,
    subject: Any,
    text: Any,
    html: Any,
    key: Any,
    unsubscribe_group_id: int | None = None,
) -> dict[str, Any]:
    """`sendgrid_mail_body` through the sendgrid helper objects (the reference the plain dict must equal)."""
    from sendgrid.helpers.mail import Asm, CustomArg, GroupId, Mail

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
    if type(value) is str:
        return [part for part in value.split("|") if part] if value else []
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
    render: Callable[[str], str],
    row: dict[str, Any],
    from_email: str,
    unsubscribe_group_id: int | None,
) -> dict[str, Any]:
    route: dict[str, Any] = {"channel": channel, "recipient": recipient, "message_type": message_type}
    key = str(row["idempotency_key"])
    if channel == "email":
        subject = render(f"{template}.subject.j2")
        text = render(f"{template}.text.j2")
        html = render(f"{template}.html.j2")
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
            body.update(type="text", text={"body": render(f"{template}.chat.j2")})
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
            "text": render(f"{template}.chat.j2"),
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
    render = _Renderer(environment or _environment, row)
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
            render,
            row,
            from_email,
            unsubscribe_group_id,
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
        message["content"] = {"text": render(f"{template}.chat.j2")}
    message["message_type"] = primary_type
    message["fallback_channels"] = channels[1:]
    return message
