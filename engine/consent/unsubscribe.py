"""Unsubscribe tokens and links (RFC 8058 one-click).

Owns: the HMAC-SHA256 token over (customer, list) with the secret from config.yaml's
``unsubscribe.secret`` (itself from the environment), the link that carries it, and verifying a
token that comes back. A token cannot be forged without the secret, nor moved to another
customer or list. Must not touch the database: recording the unsubscribe is ``suppressions``' job.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlencode

from engine.config import Settings
from engine.errors import ConfigError

LIST_ID = "marketing"


def _secret(settings: Settings) -> bytes:
    secret = settings.unsubscribe.secret
    if secret is None or not secret.get_secret_value():
        raise ConfigError("unsubscribe.secret is empty: set it to ${RETAIN_UNSUBSCRIBE_SECRET} "
                          "and export a long random value", settings.source)
    return secret.get_secret_value().encode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def token(settings: Settings, customer_id: int, list_id: str = LIST_ID) -> str:
    message = f"{customer_id}.{list_id}".encode()
    mac = hmac.new(_secret(settings), message, hashlib.sha256).digest()
    return f"{customer_id}.{list_id}.{_b64(mac[:20])}"


def verify(settings: Settings, value: str) -> tuple[int, str] | None:
    """(customer id, list id) for a genuine token, None for a forged or altered one."""
    try:
        customer, list_id, _mac = value.split(".", 2)
        customer_id = int(customer)
    except ValueError:
        return None
    expected = token(settings, customer_id, list_id)
    return (customer_id, list_id) if hmac.compare_digest(expected, value) else None


def url(settings: Settings, customer_id: int, list_id: str = LIST_ID) -> str:
    base = settings.unsubscribe.url
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}{urlencode({'token': token(settings, customer_id, list_id)})}"


def headers(settings: Settings, customer_id: int, list_id: str = LIST_ID) -> dict[str, str]:
    """List-Unsubscribe (https and mailto) and RFC 8058's one-click List-Unsubscribe-Post."""
    targets = [f"<{url(settings, customer_id, list_id)}>"]
    if settings.unsubscribe.mailto:
        subject = f"unsubscribe%20{token(settings, customer_id, list_id)}"
        targets.append(f"<mailto:{settings.unsubscribe.mailto}?subject={subject}>")
    domain = settings.sender.from_address.split("@", 1)[1] if settings.sender else "localhost"
    return {
        "List-Unsubscribe": ", ".join(targets),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "List-Id": f"{settings.store.name} {list_id} <{list_id}.{domain}>",
    }
