"""Fake provider credentials the fakes accept by default, each secret easy to spot if it ever leaks into output."""

from __future__ import annotations

SENDGRID_API_KEY = "SG.fake-sendgrid-secret-key.0123456789"
# Twilio checks the SID's shape (AC + 32 hex digits), so only the token can carry a marker.
TWILIO_ACCOUNT_SID = "AC" + "fa4e" * 8
TWILIO_AUTH_TOKEN = "fake-twilio-secret-auth-token-0123"
TWILIO_FROM = "+15005550006"  # Twilio's own "valid From" magic test number
X_CONSUMER_KEY = "fake-x-consumer-key"
X_CONSUMER_SECRET = "fake-x-secret-consumer-0123456789"
X_ACCESS_TOKEN = "1234567890-fake-x-secret-access-token"
X_ACCESS_TOKEN_SECRET = "fake-x-secret-access-token-secret-0123"
X_BEARER_TOKEN = "fake-x-secret-bearer-token-0123"

# What output must never contain: grep captured output, logs and ledgers for each of these.
SECRETS = (
    SENDGRID_API_KEY,
    TWILIO_AUTH_TOKEN,
    X_CONSUMER_SECRET,
    X_ACCESS_TOKEN,
    X_ACCESS_TOKEN_SECRET,
    X_BEARER_TOKEN,
)
