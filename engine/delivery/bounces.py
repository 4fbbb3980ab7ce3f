"""Bounce reports: reading returned mail and recording what it says about our deliveries.

Owns: reading an mbox file or a Maildir folder of returned mail, recognising delivery status
notifications (RFC 3464 ``multipart/report; report-type=delivery-status``) and the common
non-standard bounces (a plain-text Postfix or qmail notice with the original attached or quoted),
finding the original Message-ID, and recording the verdict:

    hard     Action failed, a permanent "this address is bad" status (5.1.x, 5.2.1, 5.4.4):
             the delivery becomes ``bounced`` and the address is suppressed
    soft     delayed, or a temporary or expired failure (4.x.x, 5.2.2 mailbox full): counted only
    refused  a permanent refusal about *us* (5.7.x spam/policy, 5.3-5.6): counted, nobody is
             suppressed, the same caution as ``transport.classify``
    ignored  auto-replies ("out of office"), read receipts, success notices, anything else

A report is matched to its delivery by the ``deliveries.message_id`` column, and only when that
is empty (a run that died after DATA) by the delivery id inside our Message-ID
(``<d123.campaign@domain>``). The delivery's status is changed through ``ledger.mark_bounced``.
Must not send, and must not log or return
a customer's address (only its domain).
"""

from __future__ import annotations

import logging
import mailbox
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser, HeaderParser
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection

from engine.consent import suppressions
from engine.delivery import ledger
from engine.display import count
from engine.errors import InputError, NotFound
from engine.tables import Customer, Delivery, DeliveryStatus
from engine.transport import SendStatus, Stage, classify, domain_of, scrub

log = logging.getLogger(__name__)
DELIVERIES, CUSTOMERS = Delivery.__table__, Customer.__table__
S = DeliveryStatus
HARD, SOFT, REFUSED = "hard", "soft", "refused"
# A bounce may only turn a delivery that was (or may have been) handed over into `bounced`;
# held_out, suppressed, deferred... were never sent and keep their status.

_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_SMTP_AND_ENHANCED = re.compile(r"\b([45]\d\d)[\s-]+([45]\.\d{1,3}\.\d{1,3})(?![\d.])")
_ANGLE_ID = re.compile(r"<[^<>\s]+>")
_QUOTED_ID = re.compile(r"^Message-ID:\s*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)
_OUR_ID = re.compile(r"^<d(\d+)\.([^@>]+)@")
_ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+")
_DAEMON = re.compile(r"mailer-daemon|postmaster|mail delivery", re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(r"undeliver|returned mail|delivery status notification|"
                             r"delivery (?:failure|has failed)|failure notice|"
                             r"mail delivery failed|non-?delivery", re.IGNORECASE)
_AUTO_REPLY_SUBJECT = re.compile(r"^\s*(?:out of (?:the )?office|automatic reply|auto(?:matic)?"
                                 r"[- ]?(?:reply|response)|abwesenheit|absence)", re.IGNORECASE)


@dataclass(frozen=True)
class BounceReport:
    """What one pass over a mailbox found and changed. Addresses never appear here."""

    messages: int = 0        # every message read
    reports: int = 0         # bounce reports: hard + soft + refused
    hard: int = 0
    soft: int = 0
    refused: int = 0
    unmatched: int = 0       # reports whose original message is not in the ledger
    ignored: int = 0         # auto-replies, receipts, success notices, unreadable messages
    suppressed_new: int = 0  # addresses added to the suppression list by this pass
    bounced_new: int = 0     # deliveries turned into `bounced` by this pass

    def summary(self) -> str:
        return (f"{count(self.messages, 'message')}: {count(self.reports, 'bounce report')} "
                f"({self.hard:,} hard, {self.soft:,} soft, {self.refused:,} refused for "
                f"policy), {self.unmatched:,} unmatched, {self.ignored:,} ignored; "
                f"{count(self.bounced_new, 'delivery', 'deliveries')} marked bounced, "
                f"{count(self.suppressed_new, 'address', 'addresses')} newly suppressed")


@dataclass(frozen=True)
class Recipient:
    """One per-recipient verdict of a report."""

    address: str | None
    action: str        # failed, delayed, delivered, relayed, expanded
    status: str        # "5.1.1"
    smtp_code: int | None
    diagnostic: str    # remote server text, addresses removed

    def verdict(self) -> str | None:
        if self.action == "delayed":
            return SOFT
        if self.action != "failed" or not self.status:
            return None
        if self.status == "5.4.4":  # no such domain (no MX, no A): the address cannot exist
            return HARD
        code = self.smtp_code or (550 if self.status.startswith("5") else 450)
        outcome = classify(code, f"{self.status} {self.diagnostic}", Stage.rcpt)
        return {SendStatus.bounced: HARD, SendStatus.failed: SOFT}.get(outcome.status, REFUSED)


@dataclass(frozen=True)
class Parsed:
    recipients: tuple[Recipient, ...]
    message_ids: tuple[str, ...]  # candidates for the original Message-ID, best first


def read(raw: bytes) -> Parsed | None:
    """The bounce report in one raw message, or None when it is not one."""
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    # Each part's type once: with policy.default every header read is a parse, and it shows.
    parts = [(part.get_content_type(), part) for part in msg.walk()]
    returned, notice = _returned_headers(parts), _notice_text(msg)
    if parts[0][0] == "multipart/report":
        if (msg.get_param("report-type") or "").lower() != "delivery-status":
            return None  # read receipts (MDN), abuse reports (ARF): not bounces
        recipients = _dsn_recipients(parts)
    else:
        recipients = _text_recipients(msg, notice, returned)
    if not recipients:
        return None
    ids = _original_ids(msg, parts, returned, notice)
    return Parsed(tuple(recipients), tuple(dict.fromkeys(ids)))


def _dsn_recipients(parts: list[tuple[str, EmailMessage]]) -> list[Recipient]:
    found = []
    for content_type, part in parts:
        if content_type != "message/delivery-status":
            continue
        for block in part.get_payload()[1:]:  # the first block holds per-message fields
            address = _typed_value(block.get("Final-Recipient"))
            found.append(_recipient(address or None, str(block.get("Action", "")),
                                    str(block.get("Status", "")),
                                    _typed_value(block.get("Diagnostic-Code"))))
    return found


def _typed_value(value) -> str:
    """ "rfc822; a@b" -> "a@b", "smtp; 550 ..." -> "550 ..." (RFC 3464 typed fields)."""
    text = str(value or "")
    return (text.partition(";")[2] if ";" in text else text).strip()


def _text_recipients(msg: EmailMessage, notice: str,
                     returned: list[EmailMessage]) -> list[Recipient]:
    """A non-standard bounce: a status code in the text of a daemon's message."""
    subject, sender = str(msg.get("Subject", "")), str(msg.get("From", ""))
    if (msg.get("X-Autoreply") or msg.get("X-Autorespond") or _AUTO_REPLY_SUBJECT.search(subject)
            or "auto_reply" in str(msg.get("Precedence", "")).lower()):
        return []
    if not (_DAEMON.search(sender) or _BOUNCE_SUBJECT.search(subject)):
        return []
    text = notice.split("--- Below this line is a copy", 1)[0]
    match = _SMTP_AND_ENHANCED.search(text) or _ENHANCED.search(text)
    if match is None:
        return []
    diagnostic = text[match.start():].split("\n\n", 1)[0]
    before = _ADDRESS.findall(text[:match.start()].rsplit("\n\n", 1)[-1])
    # We send each message to one recipient: the returned To is the address that bounced.
    to = [a for headers in returned for a in _ADDRESS.findall(str(headers.get("To", "")))]
    address = (to or before or [None])[0]
    status = _ENHANCED.search(match.group(0)).group(0)
    action = "failed" if status.startswith("5") else "delayed"
    return [_recipient(address, action, status, diagnostic)]


def _recipient(address: str | None, action: str, status: str, diagnostic: str) -> Recipient:
    diagnostic = " ".join(diagnostic.split())
    code_match = re.match(r"([245]\d\d)\b[\s-]*", diagnostic)
    smtp_code = int(code_match.group(1)) if code_match else None
    if code_match:
        diagnostic = diagnostic[code_match.end():]
    status_match = _ENHANCED.search(status)
    status = status_match.group(0) if status_match else ""
    detail_match = _ENHANCED.match(diagnostic)
    if detail_match:
        diagnostic = diagnostic[detail_match.end():].strip()
        # "Status: 5.0.0" with "550 5.1.1 ..." in the diagnostic: the server's code is sharper.
        if status.endswith(".0.0") and detail_match.group(1) == status[:1]:
            status = detail_match.group(0)
    return Recipient(address, action.strip().lower(), status, smtp_code, scrub(diagnostic))


def _notice_text(msg: EmailMessage) -> str:
    part = msg if not msg.is_multipart() else next(
        (p for p in msg.iter_parts() if p.get_content_type() == "text/plain"), None)
    try:
        return part.get_content() if part is not None else ""
    except (LookupError, ValueError):  # unknown charset or broken transfer encoding
        return ""


def _returned_headers(parts: list[tuple[str, EmailMessage]]) -> list[EmailMessage]:
    """The original message's headers, from a message/rfc822 or text/rfc822-headers part."""
    found = []
    for content_type, part in parts:
        if content_type == "message/rfc822":
            found.extend(part.get_payload())
        elif content_type == "text/rfc822-headers":
            found.append(HeaderParser(policy=policy.default).parsestr(part.get_content()))
    return found


def _original_ids(msg: EmailMessage, parts: list[tuple[str, EmailMessage]],
                  returned: list[EmailMessage], notice: str) -> list[str]:
    found = [str(headers.get("Message-ID", "")) for headers in returned]
    found += [str(part.get_payload()[0].get("X-Original-Message-ID", ""))  # Gmail's DSN field
              for content_type, part in parts
              if content_type == "message/delivery-status" and part.get_payload()]
    found += [str(msg.get("In-Reply-To", "")), str(msg.get("References", ""))]
    found += _QUOTED_ID.findall(notice)  # qmail quotes the original in its text
    return [mid for value in found for mid in _ANGLE_ID.findall(value)]


# -- recording -------------------------------------------------------------------------------

def _delivery(conn: Connection, message_ids: tuple[str, ...]):
    query = (select(DELIVERIES.c.id, DELIVERIES.c.status, CUSTOMERS.c.email)
             .join(CUSTOMERS, CUSTOMERS.c.id == DELIVERIES.c.customer_id))
    for message_id in message_ids:
        row = conn.execute(query.where(DELIVERIES.c.message_id == message_id)).first()
        if row is not None:
            return row
    for message_id in message_ids:
        # Only a delivery without a recorded Message-ID (its run died after DATA) is found by
        # the id inside ours; the campaign must match too, so another database's ids miss.
        match = _OUR_ID.match(message_id)
        if match:
            row = conn.execute(query.where(DELIVERIES.c.id == int(match.group(1)),
                                           DELIVERIES.c.campaign_id == match.group(2),
                                           DELIVERIES.c.message_id.is_(None))).first()
            if row is not None:
                return row
    return None


def _open(path: Path) -> tuple[mailbox.Mailbox, str | None]:
    """The mailbox at path, and the file name to cite (None: cite each Maildir file)."""
    if path.is_dir():
        if all((path / sub).is_dir() for sub in ("cur", "new", "tmp")):
            return mailbox.Maildir(path, factory=None, create=False), None
        raise InputError("this folder is not a Maildir (it has no cur/, new/ and tmp/ folders); "
                         "give the Maildir folder itself, or an mbox file", path)
    if not path.exists():
        raise NotFound(f"{path}: no such file or folder; give the mbox file or the Maildir "
                       "folder where bounce reports arrive")
    try:
        with path.open("rb") as handle:
            head = handle.read(5)
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror}); check the path and its "
                         "permissions", path) from None
    if head and head != b"From ":
        raise InputError('not an mbox file: it does not start with a "From " line; give an '
                         "mbox file, or a Maildir folder (with cur/, new/ and tmp/)", path, 1)
    return mailbox.mbox(path, factory=None, create=False), path.name


def process(engine: Engine, path: str | Path, now: datetime) -> BounceReport:
    """Read every message at path and record the bounces, all in one transaction.

    Running it again over the same mailbox changes nothing: a bounced delivery stays bounced and
    a suppressed address stays suppressed with its first reason.
    """
    box, file_name = _open(Path(path))
    # Parse first, write after: parsing is the slow part (milliseconds a message), and the
    # write transaction must not keep a sending run waiting on SQLite's lock meanwhile. What
    # is kept per message is a few short strings.
    found: list[tuple[str, Parsed | None]] = []
    for key in box.iterkeys():
        try:
            found.append((file_name or key, read(box.get_bytes(key))))
        except (LookupError, ValueError) as exc:  # unknown charset, broken encoding
            log.warning("bounces: %s is unreadable, ignored (%s)", file_name or key,
                        type(exc).__name__)
            found.append((file_name or key, None))
    counts: Counter[str] = Counter(messages=len(found))
    with engine.begin() as conn:
        for source, parsed in found:
            _record(conn, parsed, source, now, counts)
    report = BounceReport(**counts)
    log.info("bounces: %s", report.summary())
    return report


def _record(conn: Connection, parsed: Parsed | None, source: str, now: datetime,
            counts: Counter[str]) -> None:
    # The report's verdict is its worst recipient's; keep the first recipient of each verdict.
    verdicts = {r.verdict(): r for r in reversed(parsed.recipients)} if parsed else {}
    worst = next((v for v in (HARD, REFUSED, SOFT) if v in verdicts), None)
    if worst is None:
        counts["ignored"] += 1
        return
    counts["reports"] += 1
    counts[worst] += 1
    row = _delivery(conn, parsed.message_ids)
    counts["unmatched"] += row is None
    if worst != HARD:
        return
    recipient = verdicts[HARD]
    address = None
    if row is not None:
        reason = f"dsn {recipient.status} {recipient.diagnostic}".strip()
        counts["bounced_new"] += ledger.mark_bounced(conn, row.id, reason)
        address = row.email
    elif recipient.address:  # unmatched: suppress the address only if it is a customer's
        address = conn.execute(select(CUSTOMERS.c.email_key).where(
            CUSTOMERS.c.email_key == suppressions.key(recipient.address))).scalar()
    log.info("hard bounce %s in %s, domain %s, delivery %s", recipient.status, source,
             domain_of(recipient.address or address or ""), row.id if row else "not found")
    if address:
        counts["suppressed_new"] += suppressions.add(conn, address, "bounced", f"dsn:{source}",
                                                     now)
