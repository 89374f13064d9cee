"""Check requests against the providers' own OpenAPI documents, each built once per process on first use."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.security.exceptions import SecurityProviderError
from openapi_core.security.factories import SecurityProviderFactory
from openapi_core.security.providers import BaseProvider
from openapi_core.templating.paths.exceptions import PathError
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPECS_DIR = Path(__file__).parent / "specs"

# Each message is cut to this length: jsonschema quotes the whole offending value, and a
# 1001-item personalizations list would otherwise fill a terminal.
_MAX_MESSAGE = 300


class _HttpProvider(BaseProvider):
    """HTTP auth check that compares scheme names case-insensitively, as RFC 7235 says.

    openapi-core lowercases the header's scheme but not the spec's, so X's ``scheme: OAuth``
    would never match a real OAuth 1.0a header.
    """

    def __call__(self, parameters: RequestParameters) -> Any:
        auth_type, _, credentials = parameters.header.get("Authorization", "").partition(" ")
        if auth_type.lower() != (self.scheme / "scheme").read_str().lower() or not credentials:
            raise SecurityProviderError(f"Unknown authorization method {auth_type or '(none)'}")
        return credentials


class _OAuth2BearerProvider(BaseProvider):
    """An OAuth 2 user token travels as a bearer token; openapi-core only warns "Unsupported scheme type"."""

    def __call__(self, parameters: RequestParameters) -> Any:
        auth_type, _, token = parameters.header.get("Authorization", "").partition(" ")
        if auth_type.lower() != "bearer" or not token:
            raise SecurityProviderError("Missing bearer token.")
        return token


class _SecurityProviders(SecurityProviderFactory):
    PROVIDERS = {**SecurityProviderFactory.PROVIDERS, "http": _HttpProvider, "oauth2": _OAuth2BearerProvider}


def _config(**overrides: Any) -> Config:
    # Twilio's "phone-number" format covers E.164, alphanumeric sender IDs and channel
    # addresses like "whatsapp:+1555...", so the fakes judge numbers themselves.
    return Config(
        extra_format_validators={"phone-number": lambda value: True},
        security_provider_factory=_SecurityProviders(),
        **overrides,
    )


def _read(name: str) -> dict[str, Any]:
    with open(SPECS_DIR / name, encoding="utf-8") as spec_file:
        return json.load(spec_file)


def _sendgrid() -> OpenAPI:
    spec = _read("sendgrid_mail_v3.json")
    # The document types the top-level custom_args as a string; the API and the SDK send an object.
    body = spec["components"]["requestBodies"]["PostMailSend"]["content"]["application/json"]["schema"]
    body["properties"]["custom_args"]["type"] = "object"
    return OpenAPI.from_dict(spec, config=_config())


def _twilio() -> OpenAPI:
    # from_file_path would fail: its YAML loader rejects the "\ud83d" escapes in the file.
    return OpenAPI.from_dict(_read("twilio_api_v2010.json"), config=_config())


def _x() -> OpenAPI:
    # The document has a duplicate enum value, so it fails openapi-spec-validator.
    return OpenAPI.from_dict(_read("x_api_v2.json"), config=_config(spec_validator_cls=None))


# provider -> (builder, the server URL the document declares)
_BUILDERS: dict[str, tuple[Callable[[], OpenAPI], str]] = {
    "sendgrid": (_sendgrid, "https://api.sendgrid.com"),
    "twilio": (_twilio, "https://api.twilio.com"),
    "x": (_x, "https://api.x.com"),
}
_built: dict[str, OpenAPI] = {}
_build_lock = threading.Lock()
# openapi-core and jsonschema-path fill lazy caches while validating; one request at a time per
# document keeps that safe, and costs little next to the GIL.
_validate_locks = {provider: threading.Lock() for provider in _BUILDERS}


def spec_for(provider: str) -> OpenAPI:
    """Return the provider's OpenAPI document, built on first use (Twilio's takes about 1.5 s)."""
    with _build_lock:
        if provider not in _built:
            _built[provider] = _BUILDERS[provider][0]()
        return _built[provider]


class _SpecRequest:
    """The request shape openapi-core reads; the host is the spec's own, so its server entry matches."""

    def __init__(
        self,
        host_url: str,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> None:
        self.host_url = host_url
        self.method = method.lower()
        self.path = path
        self.body = body or None
        self.parameters = RequestParameters(query=ImmutableMultiDict(query), header=Headers(headers))
        self.content_type = self.parameters.header.get("Content-Type", "").lower()


def _describe(error: Exception) -> str:
    """One line per problem, naming where it is, e.g. "body $.personalizations[0].to: [] is too short"."""
    cause = error.__cause__
    schema_errors = getattr(cause, "schema_errors", None)
    if schema_errors:
        where = "body" if "body" in str(error).lower() else "parameter"
        lines = [f"{where} {e.json_path}: {e.message}" for e in schema_errors]
    elif cause is not None and str(cause) not in str(error):
        lines = [f"{error}: {cause}"]
    else:
        lines = [str(error)]
    return "; ".join(line if len(line) <= _MAX_MESSAGE else line[:_MAX_MESSAGE] + "..." for line in lines)


class Verdict(NamedTuple):
    """What the spec says about a request; ``known`` is False when it names no operation in the spec."""

    errors: list[str]
    known: bool


def check_request(
    provider: str,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: list[tuple[str, str]],
    body: bytes,
) -> Verdict:
    """Check a request against the provider's OpenAPI document; no errors means the real API would take it."""
    openapi = spec_for(provider)
    request = _SpecRequest(_BUILDERS[provider][1], method, path, query, headers, body)
    with _validate_locks[provider]:
        errors = list(openapi.iter_request_errors(request))
    return Verdict([_describe(error) for error in errors], not any(isinstance(e, PathError) for e in errors))
