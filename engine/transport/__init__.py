"""The mail transport seam: one message in, one ``Outcome`` out.

Owns: the closed vocabulary of send outcomes (``SendStatus``, ``Outcome``), the reading of SMTP
replies into that vocabulary (RFC 5321 reply codes, RFC 3463 enhanced status codes), the retry
delay (``backoff``), and the two transports that never touch the network: ``FileTransport``
(.eml files, for previews and the demo) and ``MemoryTransport`` (for tests of the code above).
The SMTP pool lives in ``smtp``, its rate limit and back-offs in ``pacing``, and the loopback
test server in ``mailserver``, beside this seam.

Must not: know campaigns, customers or the database; log a customer's address (log the domain)
or a secret. An outcome's ``detail`` is server text with every address replaced.

    sent     the server took responsibility for the message (2xx after DATA)
    failed   transient: nothing was delivered, try again later (4xx, network error before DATA)
    bounced  permanent, about this recipient: the address does not exist → suppress it
    blocked  the server refuses *us* (5.7.x policy/spam, auth, our sender): pause, suppress nobody
    unknown  the connection died after the message was sent: the server may have it
    held     not tried: the transport is backing off (the server asked us to slow down)

A transient outcome also says what it is about (``Scope``): this message (the server judged it
and said "later": one of its attempts), or the server (a refused connection, a 421, a refused
AUTH or MAIL: every message waits, none is charged an attempt), or the recipient's domain (it
kept saying "later": its mail waits).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol


class SendStatus(StrEnum):
    sent = "sent"          # 2xx to the message: the server has it
    failed = "failed"      # transient (4xx, network): retry later
    bounced = "bounced"    # permanent, the address is bad (5.1.x): suppress the address
    blocked = "blocked"    # refused for policy/auth/sender (5.7.x, 535): pause the run
    unknown = "unknown"    # dropped after the payload went out: do not resend blindly
    held = "held"          # not tried: a back-off holds it; try again after retry_after


class Scope(StrEnum):
    """What a transient failure is about, and so what waits and whether it was a try."""
    message = "message"    # the server judged this message (RCPT, DATA, the payload): a try
    domain = "domain"      # the recipient's domain keeps saying "later": its mail waits
    server = "server"      # the connection (refused, 421, AUTH, MAIL): all mail waits


class Stage(StrEnum):
    """Where in the SMTP dialogue a reply (or a dropped connection) happened."""
    connect = "connect"    # greeting, EHLO, STARTTLS, AUTH
    mail = "mail"          # MAIL FROM: about our sender
    rcpt = "rcpt"          # RCPT TO: about this recipient
    data = "data"          # the DATA command, before the payload
    payload = "payload"    # while sending the payload (the final dot not yet sent)
    final = "final"        # the reply after the payload


@dataclass(frozen=True)
class Outcome:
    status: SendStatus
    code: int | None = None          # the SMTP reply code, None for network errors
    enhanced: str | None = None      # RFC 3463 code such as "5.1.1"
    detail: str = ""                 # server text or error, addresses removed, truncated
    retry_after: float | None = None  # seconds the transport asks to wait (a back-off)
    stage: Stage | None = None        # where a network error happened (None: a reply came)
    scope: Scope = Scope.message      # what a failure is about (see Scope)

    @property
    def tried(self) -> bool:
        """Whether the server judged this very message: only such outcomes spend an attempt."""
        return self.scope is Scope.message


@dataclass(frozen=True)
class OutgoingMessage:
    mail_from: str   # envelope sender, becomes Return-Path: where bounces go
    rcpt_to: str     # one recipient per message: outcomes are per recipient
    data: bytes      # the complete RFC 5322 message, CRLF line endings
    message_id: str  # the Message-ID header's value, used to name files

    def __post_init__(self) -> None:
        # A CR or LF in an address would let it inject SMTP commands.
        for value in (self.mail_from, self.rcpt_to):
            if "\r" in value or "\n" in value:
                raise ValueError("an envelope address contains a line break")


class Transport(Protocol):
    def send(self, message: OutgoingMessage) -> Outcome: ...

    def close(self) -> None: ...


# -- reading SMTP replies ----------------------------------------------------------------------

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")
_ADDRESS = re.compile(r"<?[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+>?")
_AUTH_CODES = {530, 534, 535, 538}        # auth required / too weak / failed / needs encryption
_RCPT_BOUNCE_CODES = {550, 551, 553}      # mailbox unavailable / not local / name not allowed
DEFER_CODES = {450, 451, 452}             # "later" about one recipient or message
CLOSING = 421                             # the server is closing the connection: all mail waits
DETAIL_LIMIT = 200


def domain_of(address: str) -> str:
    """The part after the last @, lower-cased: the only part of an address we log."""
    return address.rpartition("@")[2].lower() or "?"


def scrub(text: str | bytes) -> str:
    """Server text safe to store and log: addresses replaced, one line, truncated."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = " ".join(_ADDRESS.sub("<address>", text).split())
    return text if len(text) <= DETAIL_LIMIT else text[: DETAIL_LIMIT - 1] + "…"


def classify(code: int, text: str | bytes, stage: Stage) -> Outcome:
    """Turn one SMTP reply into an Outcome (RFC 5321 codes, RFC 3463 enhanced codes).

    When a permanent reply is ambiguous we choose ``blocked`` over ``bounced``: pausing a run
    costs a person a look, but suppressing good addresses on a misconfiguration (a relay that
    answers "550 relaying denied" to every recipient) silently loses customers.
    """
    detail = scrub(text)
    match = _ENHANCED.match(detail)
    enhanced = match.group(0) if match else None
    if match:
        detail = detail[match.end():].strip()
    subject = (int(match.group(2)), int(match.group(3))) if match else None
    # The greeting, AUTH and MAIL are about us; a 421 closes the connection for every message.
    # Only a reply to RCPT, DATA or the payload judges this message.
    about_us = stage in (Stage.connect, Stage.mail) or (code == CLOSING and stage != Stage.final)
    scope = Scope.server if about_us else Scope.message

    def outcome(status: SendStatus) -> Outcome:
        return Outcome(status, code, enhanced, detail, scope=scope)

    if 200 <= code < 300:
        return outcome(SendStatus.sent)
    if code < 500:
        return outcome(SendStatus.failed)         # 4xx, or a reply that makes no sense here
    if code in _AUTH_CODES or (subject and subject[0] == 7):
        return outcome(SendStatus.blocked)
    if stage is Stage.mail or subject in ((1, 7), (1, 8)):
        return outcome(SendStatus.blocked)        # our sender was refused, not the recipient
    if subject and subject[0] == 1:
        return outcome(SendStatus.bounced)        # 5.1.x: bad mailbox, bad domain, bad syntax
    if subject == (2, 2):
        return outcome(SendStatus.failed)         # mailbox full: the address exists
    if subject and subject[0] == 2 and subject != (2, 3):
        return outcome(SendStatus.bounced)        # 5.2.1 mailbox disabled
    if (subject in (None, (0, 0)) and stage is Stage.rcpt and code in _RCPT_BOUNCE_CODES):
        return outcome(SendStatus.bounced)        # plain "550 No such user" at RCPT
    return outcome(SendStatus.blocked)            # 5.3-5.6.x, message too big, protocol: ours


def dropped(stage: Stage, error: BaseException) -> Outcome:
    """A connection that died or timed out: ``unknown`` once the whole payload went out; about
    the server (no try of this message) until the payload began."""
    status = SendStatus.unknown if stage is Stage.final else SendStatus.failed
    scope = Scope.message if stage in (Stage.payload, Stage.final) else Scope.server
    name = type(error).__name__
    return Outcome(status, detail=scrub(f"{name} at {stage}: {error}".rstrip(": ")),
                   stage=stage, scope=scope)


def held(scope: Scope, seconds: float, detail: str) -> Outcome:
    """A message the transport did not try: ``scope`` (its domain, or the server) is backed off
    for ``seconds`` more."""
    return Outcome(SendStatus.held, detail=detail, retry_after=seconds, scope=scope)


def backoff(attempt: int, base: float = 60.0, cap: float = 6 * 3600.0,
            jitter_key: str | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``: base, 2×base, 4×base ... at most cap.

    ``jitter_key`` (say a message id) spreads retries over [half, full] of the delay, the same
    spread every time for the same key, so many failures at once do not retry at once and tests
    stay deterministic.
    """
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    if jitter_key is None:
        return delay
    digest = hashlib.sha256(f"{jitter_key}:{attempt}".encode()).digest()
    return delay * (0.5 + 0.5 * int.from_bytes(digest[:4], "big") / 0xFFFFFFFF)


# -- transports that stay on this machine ------------------------------------------------------

_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._@+-]")


class FileTransport:
    """Writes each message to ``<folder>/<message-id>.eml``; the same message overwrites itself."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path_for(self, message: OutgoingMessage) -> Path:
        name = _UNSAFE_FILE_CHARS.sub("_", message.message_id.strip("<> "))[:150]
        return self.folder / f"{name or hashlib.sha256(message.data).hexdigest()[:32]}.eml"

    def send(self, message: OutgoingMessage) -> Outcome:
        target = self.path_for(message)
        # Write then rename: a reader of the folder never sees half a message.
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(message.data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Outcome(SendStatus.sent, detail=f"written to {target.name}")

    def close(self) -> None:
        pass


class MemoryTransport:
    """Keeps messages in ``sent``; ``reply`` may script an outcome per message (tests only)."""

    def __init__(self, reply: Callable[[OutgoingMessage], Outcome] | None = None):
        self.sent: list[OutgoingMessage] = []
        self.reply = reply
        self.closed = False
        self._lock = threading.Lock()

    def send(self, message: OutgoingMessage) -> Outcome:
        outcome = self.reply(message) if self.reply else Outcome(SendStatus.sent, 250)
        if outcome.status is SendStatus.sent:
            with self._lock:
                self.sent.append(message)
        return outcome

    def close(self) -> None:
        self.closed = True
