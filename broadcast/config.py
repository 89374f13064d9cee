"""Configuration from the environment and .env only: per-channel settings, required variables, secret masking."""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from broadcast.errors import ConfigError


class ChannelFacts(Protocol):
    """What configuration reads of a channel adapter class (channels.base.Channel): a Protocol, since the registry
    reads this module and never the other way round."""

    name: str
    secrets: tuple[str, ...]
    host_variable: str | None
    settings: Any


#: a variable whose name ends like this holds a credential: masked even for a channel no adapter declared yet
_SECRET_NAME = re.compile(r"(?:KEY|TOKEN|SECRET|SID|PASSWORD)$")
#: every variable whose value must never be printed, logged or stored: each channel's ``secrets`` (added by the
#: registry, channels/__init__.py) and any variable named like a credential
SECRET_VARIABLES: set[str] = set()
HIDDEN = "<hidden>"

#: variables the env file set because the real environment did not have them: name → file
ENV_FILE_SET: dict[str, str] = {}

#: user:password@ in any URL (a proxy or database password); the scheme stays, so the URL still reads as one
_USERINFO = re.compile(r"(?<=://)[^/?#@\s]+@")


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
    ENV_FILE_SET.clear()
    if path and not target.is_file():
        raise ConfigError("env file not found", file=target, hint="pass an existing file to --env-file, or leave it out")
    if target.is_file():
        before = set(os.environ)
        try:
            load_dotenv(target, override=False)
        except UnicodeDecodeError:
            raise ConfigError(
                "the env file is not UTF-8 text", file=target, hint="save the env file as UTF-8 and run again"
            ) from None
        # remembered so a provider address and its credentials from different sources can be caught (trust_problems)
        ENV_FILE_SET.update((name, str(target)) for name in set(os.environ) - before)


#: seconds each provider request may take before its answer counts as lost (BROADCAST_PROVIDER_TIMEOUT)
DEFAULT_PROVIDER_TIMEOUT = 30.0


def provider_timeout(env: Mapping[str, str] | None = None) -> float:
    """The provider request timeout: BROADCAST_PROVIDER_TIMEOUT seconds (0.1 to 600), or 30.

    A lost answer's SMS is looked up again two timeouts after its attempt, so a shorter timeout also settles lost
    answers sooner; a longer one suits a slow proxy.
    """
    env = os.environ if env is None else env
    raw = env.get("BROADCAST_PROVIDER_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_PROVIDER_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0.1 <= value <= 600:  # also false for nan
        raise ConfigError(
            f"BROADCAST_PROVIDER_TIMEOUT={raw[:40]!r} is not a number of seconds from 0.1 to 600; nothing was sent",
            hint="write seconds, e.g. BROADCAST_PROVIDER_TIMEOUT=30, or leave it unset for 30",
        )
    return value


def mask(text: str, env: Mapping[str, str] | None = None) -> str:
    """Replace every secret value from the environment, and the user:password of any URL, in ``text`` with <hidden>."""
    env = os.environ if env is None else env
    for name in {*SECRET_VARIABLES, *(n for n in env if _SECRET_NAME.search(n))}:
        value = env.get(name, "")
        # very short values would mask ordinary words; real credentials are long
        if len(value) < 6:
            continue
        # also as an error message quotes it: repr() escapes a line break or a quote inside the value
        for form in {value, value.strip(), repr(value)[1:-1]}:
            if len(form) >= 6 and form in text:
                text = text.replace(form, HIDDEN)
    return _USERINFO.sub(HIDDEN + "@", text)


def _credential_problem(name: str, value: str) -> str | None:
    """Why a credential cannot be sent in an HTTP header, without quoting any of it."""
    for position, char in enumerate(value, 1):
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            what = "a line break" if char in "\r\n\u2028\u2029\x85" else f"a control character (U+{ord(char):04X})"
            return (f"{name} contains {what} at character {position}: it was pasted with part of the next line, "
                    "or the .env value spans lines; write it on one line")
        if not char.isascii():
            return (f"{name} contains a character that is not plain ASCII (U+{ord(char):04X}) at character {position}: "
                    "usually a non-breaking space or smart quote from copying; paste the credential again")
    return None


def _url_problem(name: str, value: str) -> str | None:
    """Why a provider URL cannot be used; the URL is quoted with any user:password hidden."""
    shown = _USERINFO.sub(HIDDEN + "@", value)
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp", "Zs") for c in value):
        return f"{name} contains a space or a control character; write the URL on one line without spaces"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        return f"{name}={shown!r} is not a URL ({exc}); write it like https://host:port"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{name}={shown!r} is not a full URL: it needs https:// (or http:// for a local test server) and a host"
    return None


def trust_problems(channels: Iterable[ChannelFacts], env: Mapping[str, str] | None = None) -> list[str]:
    """Channels whose provider address and credentials come from different places (env file vs environment).

    A ./.env in the folder you run from could otherwise point a provider at another host and receive
    the real credentials from the environment; the person must say they trust the file (--trust-env-file).
    """
    env = os.environ if env is None else env
    out = []
    for channel in channels:
        host = channel.host_variable
        if not host or not env.get(host, "").strip():
            continue
        secrets = [name for name in channel.secrets if env.get(name, "").strip()]
        where = {name: ENV_FILE_SET.get(name) for name in (host, *secrets)}
        mixed = [name for name in secrets if where[name] != where[host]]
        if not mixed:
            continue

        def source(name: str) -> str:
            return f"the env file {where[name]}" if where[name] else "the environment"

        out.append(
            f"{channel.name}: {host} comes from {source(host)}, but {', '.join(mixed)} from {source(mixed[0])}; "
            f"a file could send your credentials to a host you did not choose"
        )
    return out


class Env:
    """What a live send reads its settings from: the environment, and the run's own options (--sandbox, --web-dir).

    Each adapter's ``Settings.from_env(env)`` asks it for variables; it gathers everything missing or wrong, so
    one error lists every problem of every channel instead of one per attempt.
    """

    def __init__(self, values: Mapping[str, str] | None = None, **options: Any) -> None:
        self.values = os.environ if values is None else values
        self.options = options
        self.missing: list[str] = []
        self.problems: list[str] = []

    def get(self, name: str) -> str:
        return self.values.get(name, "").strip()

    def option(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)

    def need(self, *names: str) -> bool:
        """True when every variable is set; the ones that are not are listed as missing."""
        absent = [name for name in names if not self.get(name)]
        self.missing.extend(absent)
        return not absent

    def secret(self, name: str) -> Secret | None:
        """A credential, checked to fit in an HTTP header (never quoted in the problem); None when unset."""
        value = self.get(name)
        problem = _credential_problem(name, value)
        if problem:
            self.problems.append(problem)
        return Secret(value) if value else None

    def url(self, name: str) -> str | None:
        """A provider URL, checked to be a full http(s) URL; None when unset."""
        value = self.get(name)
        problem = _url_problem(name, value) if value else None
        if problem:
            self.problems.append(problem)
        return value or None

    def problem(self, text: str) -> None:
        self.problems.append(text)


def channel_settings(
    channels: Iterable[ChannelFacts],
    *,
    env: Mapping[str, str] | None = None,
    trust_env_file: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Settings for every channel picked for a live send; one ConfigError lists everything missing or wrong.

    ``options`` are the run's own (sandbox, web_dir), read by the channels they concern. A provider address and
    its credentials from different sources (see trust_problems) are refused unless ``trust_env_file``.
    """
    env = os.environ if env is None else env
    missing: dict[str, list[str]] = {}
    problems: list[str] = []
    out: dict[str, Any] = {}
    channels = list(channels)
    try:
        provider_timeout(env)  # read again by each adapter; a bad value stops here, before the ledger is touched
    except ConfigError as exc:
        problems.append(exc.message)
    for channel in channels:
        reader = Env(env, **options)
        settings = channel.settings.from_env(reader) if channel.settings is not None else None
        problems.extend(reader.problems)
        if reader.missing:
            missing[channel.name] = reader.missing
        elif settings is not None:
            out[channel.name] = settings
    if not trust_env_file:
        problems += [
            f"{found}. Nothing was sent. If you trust that file, add --trust-env-file; "
            "otherwise remove the line from it (see .env.example on the trust model)"
            for found in trust_problems(channels, env)
        ]
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


def email_sender(value: str) -> tuple[str, str, str | None]:
    """(display name, address, what is wrong or None) for ``Name <addr>`` or a bare address."""
    from email.utils import parseaddr

    from email_validator import EmailNotValidError, validate_email

    name, address = parseaddr(value)
    if not address or "@" not in address:
        return "", value, "is not an email address; write it as alerts@example.org or 'Alerts <alerts@example.org>'"
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return name, address, f"is not an email address: {exc}"
    return name, address, None
