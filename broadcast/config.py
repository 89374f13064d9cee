"""Configuration from the environment and .env only: per-channel settings, required variables, secret masking."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from broadcast.errors import ConfigError

#: every variable whose value must never be printed, logged or stored
SECRET_VARIABLES = (
    "SENDGRID_API_KEY",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "X_CONSUMER_KEY",
    "X_CONSUMER_SECRET",
    "X_ACCESS_TOKEN",
    "X_ACCESS_TOKEN_SECRET",
    "X_BEARER_TOKEN",
)
HIDDEN = "<hidden>"


class Secret:
    """A credential that prints as <hidden> everywhere; only an adapter calls ``reveal()``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return HIDDEN

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


def load_dotenv_file(path: str | Path | None = None) -> None:
    """Read ``.env`` (or ``path``) into the environment; real environment variables win over the file."""
    from dotenv import load_dotenv

    target = Path(path) if path else Path.cwd() / ".env"
    if path and not target.is_file():
        raise ConfigError("env file not found", file=target, hint="pass an existing file to --env-file, or leave it out")
    if target.is_file():
        try:
            load_dotenv(target, override=False)
        except UnicodeDecodeError:
            raise ConfigError(
                "the env file is not UTF-8 text", file=target, hint="save the env file as UTF-8 and run again"
            ) from None


def mask(text: str, env: Mapping[str, str] | None = None) -> str:
    """Replace every secret value from the environment that appears in ``text`` with <hidden>."""
    env = os.environ if env is None else env
    for name in SECRET_VARIABLES:
        value = env.get(name, "")
        # very short values would mask ordinary words; real credentials are long
        if len(value) >= 6 and value in text:
            text = text.replace(value, HIDDEN)
    return text


@dataclass(frozen=True)
class EmailSettings:
    api_key: Secret
    sender: str
    sender_name: str | None
    host: str
    sandbox: bool = False


@dataclass(frozen=True)
class SmsSettings:
    account_sid: Secret
    auth_token: Secret
    sender: str | None
    messaging_service_sid: str | None
    status_callback: str | None
    base_url: str | None


@dataclass(frozen=True)
class SocialSettings:
    consumer_key: Secret | None
    consumer_secret: Secret | None
    access_token: Secret | None
    access_token_secret: Secret | None
    bearer_token: Secret | None
    base_url: str | None


@dataclass(frozen=True)
class WebSettings:
    directory: Path


Settings = EmailSettings | SmsSettings | SocialSettings | WebSettings

SENDGRID_HOST = "https://api.sendgrid.com"


def channel_settings(
    channels: Iterable[str],
    *,
    env: Mapping[str, str] | None = None,
    sandbox: bool = False,
    web_dir: str | Path | None = None,
) -> dict[str, Settings]:
    """Settings for every channel picked for a live send; one ConfigError lists everything missing."""
    env = os.environ if env is None else env
    missing: dict[str, list[str]] = {}
    problems: list[str] = []
    out: dict[str, Settings] = {}

    def get(name: str) -> str:
        return env.get(name, "").strip()

    for channel in channels:
        need: list[str] = []
        if channel == "email":
            need = [v for v in ("SENDGRID_API_KEY", "BROADCAST_EMAIL_FROM") if not get(v)]
            sender = get("BROADCAST_EMAIL_FROM")
            if sender and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", sender):
                problems.append(f"BROADCAST_EMAIL_FROM={sender!r} is not an email address")
            if not need:
                out[channel] = EmailSettings(
                    api_key=Secret(get("SENDGRID_API_KEY")),
                    sender=sender,
                    sender_name=get("BROADCAST_EMAIL_FROM_NAME") or None,
                    host=get("SENDGRID_API_HOST") or SENDGRID_HOST,
                    sandbox=sandbox,
                )
        elif channel == "sms":
            need = [v for v in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN") if not get(v)]
            sender, service = get("TWILIO_FROM"), get("TWILIO_MESSAGING_SERVICE_SID")
            if not sender and not service:
                need.append("TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID")
            elif sender and service:
                problems.append("set TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID, not both (Twilio accepts exactly one)")
            if not need:
                out[channel] = SmsSettings(
                    account_sid=Secret(get("TWILIO_ACCOUNT_SID")),
                    auth_token=Secret(get("TWILIO_AUTH_TOKEN")),
                    sender=sender or None,
                    messaging_service_sid=service or None,
                    status_callback=get("TWILIO_STATUS_CALLBACK") or None,
                    base_url=get("TWILIO_API_BASE_URL") or None,
                )
        elif channel == "social":
            user = ("X_CONSUMER_KEY", "X_CONSUMER_SECRET", "X_ACCESS_TOKEN", "X_ACCESS_TOKEN_SECRET")
            has_user = [v for v in user if get(v)]
            if get("X_BEARER_TOKEN") and not has_user:
                pass
            elif len(has_user) < len(user):
                need = [v for v in user if not get(v)]
                if not has_user:
                    need = [" + ".join(user) + " (OAuth 1.0a) or X_BEARER_TOKEN (OAuth 2.0 user token)"]
            if not need:
                out[channel] = SocialSettings(
                    *(Secret(get(v)) if get(v) else None for v in user),
                    bearer_token=Secret(get("X_BEARER_TOKEN")) if get("X_BEARER_TOKEN") else None,
                    base_url=get("X_API_BASE_URL") or None,
                )
        elif channel == "web":
            out[channel] = WebSettings(Path(web_dir or get("BROADCAST_WEB_DIR") or "web"))
        if need:
            missing[channel] = need
    if missing or problems:
        lines = [f"  - {channel}: {', '.join(names)}" for channel, names in missing.items()]
        lines += [f"  - {p}" for p in problems]
        head = "missing credentials for a live send:" if missing else "credentials are set up wrong:"
        raise ConfigError(
            head + "\n" + "\n".join(lines),
            hint="set them in the environment or in .env (see .env.example), leave those channels out with "
            "--channel, or preview with --dry-run. Nothing was sent.",
        )
    return out
