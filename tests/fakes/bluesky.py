"""Local fake of a Bluesky PDS (XRPC): app-password sessions, app.bsky.feed.post records checked against the
published lexicons (tests/fakes/specs/lexicons), listing, reading and deleting them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import regex

from tests.fakes.server import Delivery, FakeServer, Faults, InvalidRequest, RecordedRequest, Reply

BLUESKY_HANDLE = "lakeside-water.bsky.social"
BLUESKY_APP_PASSWORD = "fake-bsky-secret-app-password-0123"
DID = "did:plc:lakesidewater0000000000"
POST = "app.bsky.feed.post"
LEXICONS = {
    path.stem: json.loads(path.read_text()) for path in (Path(__file__).parent / "specs" / "lexicons").glob("*.json")
}
_XRPC = re.compile(r"/xrpc/([a-zA-Z0-9.]+)")


def graphemes(text: str) -> int:
    """Grapheme clusters (UAX #29), as the lexicon's maxGraphemes counts them."""
    return len(regex.findall(r"\X", text))


def validate(value: Any, schema: dict[str, Any], lexicon: str, where: str = "$") -> list[str]:
    """Problems of ``value`` against a lexicon schema node: objects, strings, integers, arrays, refs and unions."""
    kind = schema.get("type")
    if kind == "ref":
        target_lexicon, _, name = schema["ref"].partition("#")
        target_lexicon = target_lexicon or lexicon
        if target_lexicon not in LEXICONS:
            return [f"{where}: refers to {schema['ref']}, a lexicon this fake does not hold"]
        return validate(value, LEXICONS[target_lexicon]["defs"][name or "main"], target_lexicon, where)
    if kind == "union":
        if not isinstance(value, dict) or "$type" not in value:
            return [f"{where}: a union member needs $type"]
        members = {lexicon + r if r.startswith("#") else r for r in schema["refs"]}
        wanted = value["$type"]
        if wanted not in members and wanted.removesuffix("#main") not in members:
            return [f"{where}: $type {wanted} is not one of {sorted(members)}"]
        return validate(value, {"type": "ref", "ref": wanted}, lexicon, where)
    if kind in ("object", "record"):
        schema = schema.get("record", schema)
        if not isinstance(value, dict):
            return [f"{where}: not an object"]
        problems = [f"{where}.{name}: required" for name in schema.get("required", []) if name not in value]
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                problems += validate(value[name], sub, lexicon, f"{where}.{name}")
        return problems
    if kind == "string":
        if not isinstance(value, str):
            return [f"{where}: not a string"]
        problems = []
        if "maxLength" in schema and len(value.encode()) > schema["maxLength"]:
            problems.append(f"{where}: over {schema['maxLength']} UTF-8 bytes")
        if "maxGraphemes" in schema and graphemes(value) > schema["maxGraphemes"]:
            problems.append(f"{where}: {graphemes(value)} graphemes, over {schema['maxGraphemes']}")
        problem = _format_problem(schema.get("format"), value)
        return problems + ([f"{where}: {problem}"] if problem else [])
    if kind == "integer":
        if not isinstance(value, int) or value < schema.get("minimum", value):
            return [f"{where}: not an integer >= {schema.get('minimum')}"]
        return []
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: not an array"]
        problems = [f"{where}: over {schema['maxLength']} items"] if len(value) > schema.get("maxLength", len(value)) else []
        for i, item in enumerate(value):
            problems += validate(item, schema["items"], lexicon, f"{where}[{i}]")
        return problems
    return []


def _format_problem(fmt: str | None, value: str) -> str | None:
    if fmt == "datetime":
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return f"{value!r} is not an RFC 3339 datetime"
        return None if parsed.tzinfo else f"{value!r} has no timezone"
    if fmt == "language" and not re.fullmatch(r"[a-zA-Z]{2,3}(-[a-zA-Z0-9]+)*", value):
        return f"{value!r} is not a BCP 47 language tag"
    if fmt == "at-uri" and not value.startswith("at://"):
        return f"{value!r} is not an at:// URI"
    if fmt == "uri" and not re.fullmatch(r"[a-z][a-z0-9+.-]*:\S+", value):
        return f"{value!r} is not a URI"
    if fmt == "cid" and not re.fullmatch(r"b[a-z2-7]{20,}", value):
        return f"{value!r} is not a CID"
    return None


def _jwt(subject: str, scope: str) -> str:
    """A token shaped like the PDS's (the SDK reads its exp to know when to refresh; it never checks the signature)."""
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'typ': 'at+jwt', 'alg': 'ES256K'})}.{part({'scope': scope, 'sub': subject, 'exp': int(time.time()) + 7200})}.c2ln"


class BlueskyFake(FakeServer):
    """One account on a PDS: createSession with the app password, createRecord of posts (lexicon-validated, facet
    byte ranges checked against the text, reply parents and roots checked to exist), listRecords newest first,
    getRecord, deleteRecord."""

    provider = "bluesky"

    def __init__(self, *, handle: str = BLUESKY_HANDLE, app_password: str = BLUESKY_APP_PASSWORD,
                 latency: float = 0.0, faults: Faults | None = None) -> None:
        self.handle = handle
        self.app_password = app_password
        self.access_jwt = _jwt(DID, "com.atproto.appPass")
        #: rkey → {"uri", "cid", "value"}, oldest first
        self.records: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        self.sessions = 0
        self._tids = itertools.count(int(time.time() * 1_000_000) << 10)
        super().__init__(validate=False, latency=latency, faults=faults)

    def _reset_state(self) -> None:
        self.records.clear()

    def authorized(self, request: RecordedRequest) -> bool:
        if request.path == "/xrpc/com.atproto.server.createSession":
            return True
        header = request.headers.get("authorization", "")
        return hmac.compare_digest(header, f"Bearer {self.access_jwt}")

    def unauthorized_reply(self) -> Reply:
        return self.error_reply(401, "Authentication Required", "AuthMissing")

    def error_reply(self, status: int, message: str, error: str | None = None) -> Reply:
        return Reply(status, {"error": error or ("InvalidRequest" if status == 400 else "InternalServerError"),
                              "message": message})

    def rate_limit_headers(self, retry_after: int) -> dict[str, str]:
        return {"ratelimit-limit": "5000", "ratelimit-remaining": "0",
                "ratelimit-reset": str(int(time.time()) + retry_after), "ratelimit-policy": "5000;w=3600"}

    def route(self, request: RecordedRequest) -> Reply:
        found = _XRPC.fullmatch(request.path)
        method = found[1] if found else ""
        handlers = {
            ("POST", "com.atproto.server.createSession"): self._session,
            ("GET", "com.atproto.server.getSession"): lambda r: Reply(200, {"handle": self.handle, "did": DID}),
            ("POST", "com.atproto.repo.createRecord"): self._create,
            ("GET", "com.atproto.repo.listRecords"): self._list,
            ("GET", "com.atproto.repo.getRecord"): self._get,
            ("POST", "com.atproto.repo.deleteRecord"): self._delete,
        }
        handler = handlers.get((request.method, method))
        if handler is None:
            return self.error_reply(501, f"Method Not Implemented: {method or request.path}", "MethodNotImplemented")
        return handler(request)

    def _session(self, request: RecordedRequest) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        if body.get("identifier") not in (self.handle, DID) or not hmac.compare_digest(
            str(body.get("password", "")), self.app_password
        ):
            return self.error_reply(401, "Invalid identifier or password", "AuthenticationRequired")
        self.sessions += 1
        return Reply(200, {"accessJwt": self.access_jwt, "refreshJwt": _jwt(DID, "com.atproto.refresh"),
                           "handle": self.handle, "did": DID, "active": True})

    def _repo_ok(self, repo: Any) -> bool:
        return repo in (self.handle, DID)

    def _create(self, request: RecordedRequest) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        if not self._repo_ok(body.get("repo")) or body.get("collection") != POST:
            return self.error_reply(400, f"this fake holds {POST} records of {self.handle} only")
        record = body.get("record")
        problems = validate(record, LEXICONS[POST]["defs"]["main"], POST, "$.record")
        if isinstance(record, dict):
            if record.get("$type") != POST:
                problems.append(f"$.record.$type: must be {POST}")
            problems += self._facet_problems(record)
            problems += self._reply_problems(record.get("reply"))
        if problems:
            self.invalid.append(InvalidRequest(request.method, request.path, tuple(problems)))
            return self.error_reply(400, "Invalid app.bsky.feed.post record: " + "; ".join(problems))
        rkey = _tid(next(self._tids))
        uri = f"at://{DID}/{POST}/{rkey}"
        cid = "bafyrei" + base64.b32encode(hashlib.sha256(json.dumps(record, sort_keys=True).encode()).digest()).decode().lower().rstrip("=")[:45]
        self.records[rkey] = {"uri": uri, "cid": cid, "value": record}
        parent = ((record.get("reply") or {}).get("parent") or {}).get("uri")
        self.deliveries.append(Delivery(record["text"], {"uri": uri, "parent": parent, "record": record}))
        return Reply(200, {"uri": uri, "cid": cid, "validationStatus": "valid"})

    def _facet_problems(self, record: dict[str, Any]) -> list[str]:
        """A facet's byte range must cut the UTF-8 text at character boundaries, and a link's range must be the link."""
        raw = str(record.get("text", "")).encode()
        problems = []
        for i, facet in enumerate(record.get("facets") or []):
            index = facet.get("index", {})
            start, end = index.get("byteStart", -1), index.get("byteEnd", -1)
            if not 0 <= start < end <= len(raw):
                problems.append(f"$.record.facets[{i}]: byte range {start}-{end} is outside the text")
                continue
            try:
                shown = raw[start:end].decode()
            except UnicodeDecodeError:
                problems.append(f"$.record.facets[{i}]: byte range {start}-{end} cuts a character")
                continue
            for feature in facet.get("features", []):
                uri = feature.get("uri")
                if uri is not None and shown not in uri:
                    problems.append(f"$.record.facets[{i}]: the text at bytes {start}-{end} is {shown!r}, not the link {uri}")
        return problems

    def _reply_problems(self, reply: Any) -> list[str]:
        if not isinstance(reply, dict):
            return []
        problems = []
        for part in ("root", "parent"):
            ref = reply.get(part) or {}
            held = self.records.get(str(ref.get("uri", "")).rsplit("/", 1)[-1])
            if held is None or held["cid"] != ref.get("cid"):
                problems.append(f"$.record.reply.{part}: no post {ref.get('uri')} with cid {ref.get('cid')}")
        parent = self.records.get(str((reply.get("parent") or {}).get("uri", "")).rsplit("/", 1)[-1])
        if parent is not None:
            root = (parent["value"].get("reply") or {}).get("root", {}).get("uri", parent["uri"])
            if root != (reply.get("root") or {}).get("uri"):
                problems.append(f"$.record.reply.root: the parent's thread starts at {root}")
        return problems

    def _list(self, request: RecordedRequest) -> Reply:
        if not self._repo_ok(request.query.get("repo")) or request.query.get("collection") != POST:
            return Reply(200, {"records": []})
        limit = int(request.query.get("limit", "50"))
        if not 1 <= limit <= 100:
            return self.error_reply(400, "limit must be between 1 and 100")
        newest_first = list(reversed(self.records.values()))
        return Reply(200, {"records": newest_first[:limit]})

    def _get(self, request: RecordedRequest) -> Reply:
        held = self.records.get(request.query.get("rkey", ""))
        if held is None or not self._repo_ok(request.query.get("repo")):
            return self.error_reply(400, "Could not locate record", "RecordNotFound")
        return Reply(200, held)

    def _delete(self, request: RecordedRequest) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        rkey = str(body.get("rkey", ""))
        if self.records.pop(rkey, None) is not None:
            self.deleted.append(rkey)
        return Reply(200, {})  # deleting a record that is not there succeeds, as on a PDS


def _tid(value: int) -> str:
    """A record key in TID form: 13 base32-sortable characters."""
    alphabet = "234567abcdefghijklmnopqrstuvwxyz"
    out = ""
    for _ in range(13):
        out = alphabet[value & 31] + out
        value >>= 5
    return out
