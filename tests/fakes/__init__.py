"""Local fakes of the SendGrid, Twilio and X APIs for tests and benchmarks; see server.py for the shared parts."""

from tests.fakes.sendgrid import SendGridFake
from tests.fakes.server import Delivery, FakeServer, Faults, InvalidRequest, RecordedRequest
from tests.fakes.twilio import TwilioFake
from tests.fakes.x import XFake, point_tweepy_at

__all__ = [
    "Delivery",
    "FakeServer",
    "Faults",
    "InvalidRequest",
    "RecordedRequest",
    "SendGridFake",
    "TwilioFake",
    "XFake",
    "point_tweepy_at",
]
