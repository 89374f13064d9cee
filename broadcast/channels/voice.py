"""The voice channel: one Twilio call per contact who asked for one, reading the notice with <Say> and asking for 1."""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from broadcast.channels.base import Channel, RenderOptions
from broadcast.config import Env, Secret, mask, provider_timeout
from broadcast.errors import ChannelError
from broadcast.message import INTERRUPTED, Message, Receipt, Rendering, Status

if TYPE_CHECKING:
    from twilio.base.exceptions import TwilioRestException
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    from broadcast.notice import LocalNotice, Notice
    from broadcast.results import Event


class Voice(NamedTuple):
    """A <Say> voice: Twilio's ``language`` attribute, its ``voice`` attribute, and the language's name in reports."""

    language: str
    voice: str
    name: str


#: notice language → the <Say> voice that reads it. Only Amazon Polly standard voices, which Twilio offers as
#: "Polly.<Name>" (twilio.com/docs/voice/twiml/say/text-speech); each pair is in Amazon's table of Polly voices
#: (docs.aws.amazon.com/polly/latest/dg/available-voices.html: en-GB Amy, arb Zeina, ...). Polly has no Swahili
#: and no Slovenian voice, so sw and sl are not here: their contacts are called in the notice's default language
#: (Channel.written_in), and check, preview and send say so. A language is added here only once a voice for it is
#: checked in both tables.
VOICES: dict[str, Voice] = {
    "en": Voice("en-GB", "Polly.Amy", "English"),
    "ar": Voice("arb", "Polly.Zeina", "Arabic"),
    "de": Voice("de-DE", "Polly.Marlene", "German"),
    "es": Voice("es-ES", "Polly.Conchita", "Spanish"),
    "fr": Voice("fr-FR", "Polly.Celine", "French"),
    "it": Voice("it-IT", "Polly.Carla", "Italian"),
    "nl": Voice("nl-NL", "Polly.Lotte", "Dutch"),
    "pl": Voice("pl-PL", "Polly.Ewa", "Polish"),
    "pt": Voice("pt-PT", "Polly.Ines", "Portuguese"),
}
#: how fast a text-to-speech voice reads: about 150 words a minute, the usual rate for narration and the pace Polly's
#: standard voices keep at their default rate; each <Say> is followed by a one-second <Pause>
WORDS_PER_MINUTE = 150
PAUSE_SECONDS = 1
#: seconds <Gather> waits for the key after the last <Say>
GATHER_TIMEOUT = 8
#: where Twilio posts the key a person pressed: BROADCAST_PUBLIC_URL + this path. Twilio's POST carries Digits
#: ("1": the person says they are safe) and CallSid, the provider id the ledger holds for the call
GATHER_PATH = "/voice/gather"
PUBLIC_URL = "BROADCAST_PUBLIC_URL"

CREDENTIALS_HINT = "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (Twilio Console → Account → API keys & tokens)"
#: refusals of one number (Twilio's error codes for Calls)
RECIPIENT_REASONS = {
    13223: "invalid phone number for a call (Twilio 13223)",
    13224: "Twilio cannot call this number (13224)",
    13225: "calls to this number are blocked by Twilio's fraud rules (13225)",
    13227: "calls to this country are not enabled on the Twilio account (13227)",
    21211: "invalid phone number (Twilio 21211)",
    21215: "calls to this country are not enabled on the Twilio account (21215)",
}
#: our caller ID is unusable, so every call would fail the same way
SENDER_CODES = frozenset({21210, 21212, 13214})
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")

#: a lost answer's call is looked up in the number's newest calls, compared by creation time here (see _look_up)
LOOKUP_LIMIT = 50
#: room for our clock being ahead of Twilio's, as for SMS: a call from our number to this one created in that
#: window is taken as ours; missing the real one would ring the person twice
CLOCK_SLACK = timedelta(minutes=10)
#: a lost answer's call is taken as never placed only if Twilio's list still lacks it this many client timeouts
#: after the attempt started: before that the request may still be on its way in
SETTLE_TIMEOUTS = 2


def voice_for(language: str) -> Voice | None:
    """The voice Twilio reads ``language`` with, trying its base language (sw-KE → sw); None if none."""
    return VOICES.get(language) or VOICES.get(language.split("-")[0].lower())


@dataclass(frozen=True)
class VoiceSettings:
    account_sid: Secret
    auth_token: Secret
    #: TWILIO_VOICE_FROM, else TWILIO_FROM: the number calls come from
    caller: str
    #: where Twilio posts the key pressed (BROADCAST_PUBLIC_URL + GATHER_PATH); None: the key is not posted anywhere
    gather_url: str | None
    base_url: str | None

    @classmethod
    def from_env(cls, env: Env) -> VoiceSettings | None:
        """TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_VOICE_FROM (else TWILIO_FROM) and BROADCAST_PUBLIC_URL."""
        sid, token = env.secret("TWILIO_ACCOUNT_SID"), env.secret("TWILIO_AUTH_TOKEN")
        base_url, public_url = env.url("TWILIO_API_BASE_URL"), env.url(PUBLIC_URL)
        complete = env.need("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")
        own, shared = env.get("TWILIO_VOICE_FROM"), env.get("TWILIO_FROM")
        if own and not _E164.match(own):
            env.problem(
                f"voice: TWILIO_VOICE_FROM must be a phone number in E.164, such as +15005550006 (it is "
                f"{len(own)} characters and not one): calls come from it, so nobody is called until it is one"
            )
            return None
        caller = own or (shared if _E164.match(shared) else "")
        if not caller:
            # a Messaging Service or an alphanumeric sender ID sends SMS only: a call needs a number of the account
            why = "TWILIO_FROM is not a phone number" if shared else "TWILIO_FROM is not set"
            env.missing.append(f"TWILIO_VOICE_FROM (a voice-capable number in E.164; {why}, so calls cannot come from it)")
            return None
        if not complete or sid is None or token is None:
            return None
        gather_url = public_url.rstrip("/") + GATHER_PATH if public_url else None
        return cls(sid, token, caller, gather_url, base_url)


class VoiceChannel(Channel):
    """Twilio Programmable Voice: one Calls create per contact, with the TwiML built by the SDK's VoiceResponse.

    A rendering's ``text`` is what the call reads, one paragraph per <Say>, the last one the "press 1" prompt;
    its ``subject`` is the notice language it is read in (the contact's, or the default one when Twilio has no
    voice for theirs: ``written_in``).
    """

    name: ClassVar[str] = "voice"
    title: ClassVar[str] = "Voice call"
    provider: ClassVar[str] = "Twilio"
    # a call rings a phone: an info or advisory notice waits for the recipient's morning, as an SMS does
    quiet_at_night: ClassVar[bool] = True
    address: ClassVar[str] = "phone"
    #: a call only to a contact whose channels column names voice (or call): a phone number alone is no request to
    #: be rung, at any hour
    opt_in: ClassVar[bool] = True
    aliases: ClassVar[tuple[str, ...]] = ("call", "phone call")
    templates: ClassVar[dict[str, str]] = {
        "text": "voice/script.txt.j2", "prompt": "voice/prompt.txt.j2", "spoken": "voice/spoken.txt.j2",
    }
    settings: ClassVar[type[VoiceSettings]] = VoiceSettings
    secrets: ClassVar[tuple[str, ...]] = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")
    host_variable: ClassVar[str] = "TWILIO_API_BASE_URL"
    #: Twilio places API-created calls at the account's calls-per-second limit, 1 CPS by default (Console → Voice →
    #: Settings raises it); requests over it are queued, not refused, and a call queued 24 hours is cancelled
    #: (twilio.com/docs/glossary/cps; help article "How fast can I place or receive phone calls with Twilio?"). So
    #: 1 CPS places at most 86,400 calls a day. Its answer comes at once, so two requests at a time keep the queue
    #: fed; --rate voice=N matches a raised CPS. Calls in progress at once are capped by the account too (2 without
    #: an approved customer profile, per the same article): Twilio queues the rest
    max_concurrency: ClassVar[int] = 2
    #: the Calls API's Twiml parameter takes at most 4,000 characters; check refuses a longer script
    max_body: ClassVar[int] = 4000

    @classmethod
    def written_in(cls, lang: str, notice: Notice) -> tuple[str, str]:
        if voice_for(lang) is not None:
            return lang, ""
        default = notice.default_language
        fallback = voice_for(default)
        if fallback is None:
            return lang, (f"{lang} has no Twilio voice, nor has the default language {default}; the {lang} contacts "
                          "are not called (their other channels still reach them)")
        return default, f"{lang} has no Twilio voice; the {lang} contacts are called in {fallback.name}"

    @classmethod
    def shape(cls, rendering: Rendering, parts: Mapping[str, str], options: RenderOptions, local: LocalNotice) -> Rendering:
        # the script as it is read: one paragraph per <Say>, no blank runs; the prompt last, inside <Gather>
        paragraphs = [" ".join(p.split()) for p in (*parts["text"].split("\n\n"), parts["prompt"]) if p.strip()]
        return replace(rendering, text="\n\n".join(paragraphs), subject=parts["spoken"].strip())

    @classmethod
    def stats(cls, rendering: Rendering) -> dict[str, Any]:
        found = voice_for(rendering.subject)
        seconds = estimated_seconds(rendering)
        fallback = f" in {found.name}: no Twilio voice for {rendering.language}" if found and not voice_for(rendering.language) else ""
        said = (f"call ≈ {_duration(seconds)} at {WORDS_PER_MINUTE} words a minute, read by {found.voice} "
                f"({found.language}){fallback}" if found
                else f"NO Twilio voice for {rendering.language}: these contacts are not called")
        # "subject" is the line the text report prints for a rendering
        return {"characters": len(rendering.text), "seconds": seconds, "voice": f"{found.voice} ({found.language})"
                if found else "none", "spoken": rendering.subject, "subject": said}

    @classmethod
    def preview(cls, rendering: Rendering, now: datetime) -> Rendering:
        # the preview page shows the call script and how long it takes, above what is read
        return replace(rendering, text=f"[{cls.stats(rendering)['subject']}]\n\n{rendering.text}")

    def __init__(self, settings: VoiceSettings, *, timeout: float | None = None, **run: Any) -> None:
        super().__init__(settings, **run)
        self.settings = settings
        self.timeout = provider_timeout() if timeout is None else timeout
        # one Client and Session per sending thread, as for SMS (requests does not promise a Session is thread-safe)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._http_clients: list[TwilioHttpClient] = []

    def close(self) -> None:
        with self._lock:
            http_clients, self._http_clients = self._http_clients, []
            self._local = threading.local()
        for http_client in http_clients:
            if http_client.session is not None:
                http_client.session.close()

    def send(self, messages: Sequence[Message]) -> list[Receipt]:
        return [self._call(message) for message in messages]

    def reconcile(self, lost: Sequence[tuple[Message, datetime]]) -> list[Receipt]:
        """After a crash: Twilio's call list says whether each call in flight was placed."""
        client = self._client()
        return [self._reconcile(client, message, since, "an earlier run stopped before Twilio answered")
                for message, since in lost]

    def _client(self) -> Client:
        client = getattr(self._local, "client", None)
        if client is None:
            from twilio.http.http_client import TwilioHttpClient
            from twilio.rest import Client

            http_client = TwilioHttpClient(timeout=self.timeout)
            client = Client(self.settings.account_sid.reveal(), self.settings.auth_token.reveal(), http_client=http_client)
            if self.settings.base_url:
                client.api.base_url = self.settings.base_url
            client.calls  # noqa: B018 - import the Calls modules now, not inside the --rate gate
            self._local.client = client
            with self._lock:
                self._http_clients.append(http_client)
        return client

    @classmethod
    def gather_event(cls, form: Mapping[str, str], at: datetime) -> Event | None:
        """The key a person pressed during a call (Twilio posts CallSid, To and Digits to the Gather's action) as
        their reply, counted under the notice's reply keyword that lists it ("1" under SAFE); None for no key.
        ValueError when the form is not a Gather's."""
        from broadcast.results import Event

        sid, called = form.get("CallSid"), form.get("To")
        if not sid or not called:
            raise ValueError("a Gather's answer has CallSid and To")
        digits = (form.get("Digits") or "").strip()
        if not digits:
            return None
        # one answer per call: Twilio posts it once, and a repeat of the same request changes nothing
        return Event(cls.name, "reply", at, recipient=called, text=digits, event_id=f"{sid}:gather")

    def twiml(self, message: Message) -> str:
        """The call's TwiML, built by the SDK: every paragraph a <Say> inside one one-key <Gather> (a person may
        press 1 at any time), the last the prompt; the key goes to BROADCAST_PUBLIC_URL/voice/gather when set."""
        from twilio.twiml.voice_response import VoiceResponse

        rendering = message.personal()
        voice = voice_for(rendering.subject)
        assert voice is not None  # _call fails a message without a voice before building its TwiML
        response = VoiceResponse()
        gather_options: dict[str, Any] = {"num_digits": 1, "timeout": GATHER_TIMEOUT, "action_on_empty_result": False}
        if self.settings.gather_url:
            gather_options.update(action=self.settings.gather_url, method="POST")
        gather = response.gather(**gather_options)
        for paragraph in rendering.text.split("\n\n"):
            gather.say(paragraph, language=voice.language, voice=voice.voice)
            gather.pause(length=PAUSE_SECONDS)
        return str(response)

    def _call(self, message: Message) -> Receipt:
        import requests
        from twilio.base.exceptions import TwilioRestException

        if voice_for(message.rendering.subject) is None:
            return _receipt(message, "failed", reason=f"no Twilio voice reads {message.language} nor the notice's "
                            "default language; not called (check says so)")
        twiml = self.twiml(message)
        if len(twiml) > self.max_body:
            # check refuses a script over the limit; only a long name can get here, and Twilio would refuse it
            return _receipt(message, "failed", reason=f"with this contact's name the call's TwiML is {len(twiml):,} "
                            f"characters, over Twilio's limit of {self.max_body:,}; not called")
        client = self._client()
        started = datetime.now(timezone.utc)
        try:
            with self.request() as go:
                if not go:
                    return _receipt(message, "not_started", reason=INTERRUPTED)
                call = client.calls.create(to=message.recipient, from_=self.settings.caller, twiml=twiml)
        except TwilioRestException as error:
            return self._refused(message, error)
        except requests.RequestException as error:
            from broadcast.channels.twilio import _never_sent

            if _never_sent(error):
                return _receipt(message, "retry", reason="could not connect to Twilio; nobody was called")
            # the request may have reached Twilio: a second call to someone who answered the first is worse than
            # waiting, so Twilio's call list is asked first
            lost = "Twilio did not answer in time" if isinstance(error, requests.Timeout) else "the connection to Twilio dropped"
            return self._reconcile(client, message, started, lost)
        return _receipt(message, "sent", provider_id=call.sid)

    def _refused(self, message: Message, error: TwilioRestException) -> Receipt:
        status, code = error.status, error.code
        said = mask(str(error.msg).removeprefix("Unable to create record: "))
        if status in (401, 403) or code == 20003:
            raise ChannelError(f"Twilio refused the credentials (HTTP {status}, code {code}): {said}", hint=CREDENTIALS_HINT)
        if code in SENDER_CODES:
            raise ChannelError(
                f"Twilio will not call from {self.settings.caller} (code {code}): {said}",
                hint="set TWILIO_VOICE_FROM to a voice-capable number of this Twilio account (or TWILIO_FROM when "
                "the SMS number can call)",
            )
        if status == 429 or code == 20429:
            return _receipt(message, "retry", reason=f"Twilio is busy: too many calls at once ({code})")
        if status >= 500:
            return _receipt(message, "retry", reason=f"Twilio had a server error (HTTP {status}, code {code}): {said}")
        if code in RECIPIENT_REASONS:
            return _receipt(message, "failed", reason=RECIPIENT_REASONS[code])
        return _receipt(message, "failed", reason=f"Twilio refused the call (code {code}): {said}")

    def _reconcile(self, client: Client, message: Message, started: datetime, lost: str) -> Receipt:
        """The answer to a create was lost: look for the call in Twilio's list before deciding, and take it as never
        placed only when it is still absent SETTLE_TIMEOUTS client timeouts after the attempt started."""
        found = self._look_up(client, message, started)
        wait = (started + timedelta(seconds=self.timeout * SETTLE_TIMEOUTS) - datetime.now(timezone.utc)).total_seconds()
        if found is None and wait > 0:
            if self.stop.wait(wait):
                return _receipt(message, "unknown", reason=f"{lost}; not looked up again: interrupted (Ctrl-C)")
            found = self._look_up(client, message, started)
        if found is None:
            return _receipt(message, "retry", reason=f"{lost}; Twilio has no record of the call, so calling is safe")
        return found

    def _look_up(self, client: Client, message: Message, started: datetime) -> Receipt | None:
        """The call among the number's newest calls from our number: sent, unknown (Twilio could not be asked), or None.

        Listed by To and From, compared by creation time here: Twilio's StartTime filter (``start_time_after``)
        would miss the very call we look for, since a call still queued has no start time yet.
        """
        import requests
        from twilio.base.exceptions import TwilioException

        try:
            with self.request() as go:
                if not go:
                    return _receipt(message, "unknown", reason="answer lost; not looked up: interrupted (Ctrl-C)")
                recent = client.calls.list(to=message.recipient, from_=self.settings.caller, limit=LOOKUP_LIMIT)
        except (TwilioException, requests.RequestException):
            return _receipt(message, "unknown", reason="answer lost and Twilio could not be asked; the call may have been placed")
        since = started - CLOCK_SLACK
        for call in recent:
            if call.date_created is not None and call.date_created >= since:
                return _receipt(message, "sent", provider_id=call.sid)
        return None


def estimated_seconds(rendering: Rendering) -> int:
    """How long the call takes: its words at WORDS_PER_MINUTE, a pause after each <Say>, and the wait for a key."""
    paragraphs = [p for p in rendering.text.split("\n\n") if p.strip()]
    words = sum(len(p.split()) for p in paragraphs)
    return math.ceil(words * 60 / WORDS_PER_MINUTE + len(paragraphs) * PAUSE_SECONDS + GATHER_TIMEOUT)


def _duration(seconds: int) -> str:
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def _receipt(message: Message, status: Status, *, provider_id: str | None = None, reason: str | None = None) -> Receipt:
    return Receipt(message.id, message.channel, message.recipient, status, provider_id, reason)
