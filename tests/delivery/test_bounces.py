"""Bounce reports read from a real mbox file and a real Maildir folder into a real SQLite file.

The messages in tests/data/bounces are written after real notices: Postfix and Gmail DSNs
(multipart/report), an Exchange Online NDR, a plain-text Postfix bounce with the original
attached, a qmail "failure notice" quoting the original, and an out-of-office auto-reply.
"""

from __future__ import annotations

import logging
import mailbox
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.delivery import bounces
from engine.errors import InputError, NotFound
from engine.tables import Customer, Delivery, Suppression

DATA = Path(__file__).parents[1] / "data" / "bounces"
NOW = datetime(2026, 6, 15, 14, 0, tzinfo=UTC)
SENT_AT = datetime(2026, 6, 15, 7, 0, tzinfo=UTC)
DELIVERIES, CUSTOMERS, SUPPRESSIONS = Delivery.__table__, Customer.__table__, Suppression.__table__

CUSTOMER_EMAILS = {
    1: "jane.doe@example.org",             # postfix_dsn_user_unknown: 5.1.1
    2: "paul.martin@example.net",          # gmail_dsn_delayed: 4.4.7
    3: "lena.schmidt@contoso-shop.example",  # exchange_ndr_recipient_not_found: 5.1.10
    4: "marc.leroy@old-isp.example",       # postfix_plain_undelivered: 5.2.1
    5: "Hugo.Moreau@example.org",          # unmatched_known_customer: not a campaign email
    6: "louis.garnier@bigmail.example",    # policy_rejected_spam: 5.7.1
    7: "camille.petit@example.com",        # out_of_office
    8: "sophie.bernard@small-host.example",  # qmail_failure_notice: 5.1.1
}
# delivery id -> (customer, campaign, status, message_id)
SENT = {
    1: (1, "winback", "sent", "<d1.winback@maison-verte.example>"),
    2: (2, "winback", "sent", "<d2.winback@maison-verte.example>"),
    # The run died after DATA: `unknown`, and the Message-ID was never recorded.
    3: (3, "winback", "unknown", None),
    4: (4, "new_arrivals", "sent", "<d4.new_arrivals@maison-verte.example>"),
    6: (6, "winback", "sent", "<d6.winback@maison-verte.example>"),
    7: (7, "winback", "sent", "<d7.winback@maison-verte.example>"),
    8: (8, "spend_gift", "sent", "<d8.spend_gift@maison-verte.example>"),
}


def _shop(engine, deliveries: dict = SENT) -> None:
    with engine.begin() as conn:
        conn.execute(CUSTOMERS.insert(), [
            {"id": cid, "external_id": f"c{cid}", "email": email, "email_key": email.lower(),
             "accepts_marketing": True, "created_at": SENT_AT}
            for cid, email in CUSTOMER_EMAILS.items()])
        conn.execute(DELIVERIES.insert(), [
            {"id": did, "customer_id": cid, "campaign_id": campaign, "occasion": f"drowsy:{did}",
             "status": status, "message_id": message_id, "planned_at": SENT_AT,
             "sent_at": SENT_AT if status == "sent" else None}
            for did, (cid, campaign, status, message_id) in deliveries.items()])


def _fill(box: mailbox.Mailbox, names: list[str] | None) -> None:
    for path in sorted(DATA.glob("*.eml")):
        if names is None or path.stem in names:
            box.add(path.read_bytes())
    box.flush()


def write_mbox(tmp_path: Path, names: list[str] | None = None) -> Path:
    path = tmp_path / "bounces.mbox"
    _fill(mailbox.mbox(path), names)
    return path


def write_maildir(tmp_path: Path, names: list[str] | None = None) -> Path:
    path = tmp_path / "Maildir"
    _fill(mailbox.Maildir(path), names)
    return path


def statuses(engine) -> dict[int, tuple[str, str | None]]:
    with engine.connect() as conn:
        return {r.id: (r.status, r.reason) for r in conn.execute(
            select(DELIVERIES.c.id, DELIVERIES.c.status, DELIVERIES.c.reason))}


def suppressed(engine) -> dict[str, tuple[str, str]]:
    with engine.connect() as conn:
        return {r.email_key: (str(r.reason), r.source) for r in conn.execute(select(SUPPRESSIONS))}


@pytest.mark.parametrize("write", [write_mbox, write_maildir], ids=["mbox", "maildir"])
def test_a_whole_bounce_mailbox_is_counted_and_recorded(engine, tmp_path, write):
    _shop(engine)
    report = bounces.process(engine, write(tmp_path), NOW)

    assert report == bounces.BounceReport(
        messages=9, reports=8, hard=6, soft=1, refused=1, unmatched=2, ignored=1,
        suppressed_new=5, bounced_new=4)
    assert {did for did, (status, _) in statuses(engine).items() if status == "bounced"} == {
        1, 3, 4, 8}
    assert set(suppressed(engine)) == {"jane.doe@example.org", "lena.schmidt@contoso-shop.example",
                                       "marc.leroy@old-isp.example", "hugo.moreau@example.org",
                                       "sophie.bernard@small-host.example"}


def test_hard_bounce_marks_the_delivery_and_suppresses_the_address(engine, tmp_path):
    _shop(engine)
    bounces.process(engine, write_mbox(tmp_path, ["postfix_dsn_user_unknown"]), NOW)

    status, reason = statuses(engine)[1]
    assert status == "bounced"
    assert reason == ("dsn 5.1.1 <address>: Recipient address rejected: "
                      "User unknown in virtual mailbox table")
    assert suppressed(engine) == {"jane.doe@example.org": ("bounced", "dsn:bounces.mbox")}


def test_maildir_cites_the_message_file(engine, tmp_path):
    _shop(engine)
    path = write_maildir(tmp_path, ["postfix_dsn_user_unknown"])
    (key,) = mailbox.Maildir(path).keys()
    bounces.process(engine, path, NOW)
    assert suppressed(engine)["jane.doe@example.org"] == ("bounced", f"dsn:{key}")


def test_soft_bounce_and_policy_refusal_change_nothing(engine, tmp_path):
    _shop(engine)
    report = bounces.process(
        engine, write_mbox(tmp_path, ["gmail_dsn_delayed", "policy_rejected_spam"]), NOW)

    assert (report.soft, report.refused, report.hard) == (1, 1, 0)
    assert statuses(engine)[2] == ("sent", None)
    assert statuses(engine)[6] == ("sent", None)
    assert suppressed(engine) == {}


def test_out_of_office_reply_is_ignored(engine, tmp_path):
    _shop(engine)
    report = bounces.process(engine, write_mbox(tmp_path, ["out_of_office"]), NOW)

    assert (report.messages, report.reports, report.ignored) == (1, 0, 1)
    assert statuses(engine)[7] == ("sent", None)
    assert suppressed(engine) == {}


def test_unmatched_reports_suppress_known_customers_only(engine, tmp_path):
    _shop(engine)
    report = bounces.process(
        engine, write_mbox(tmp_path, ["unmatched_known_customer", "unmatched_stranger"]), NOW)

    assert (report.unmatched, report.hard, report.bounced_new) == (2, 2, 0)
    assert suppressed(engine) == {"hugo.moreau@example.org": ("bounced", "dsn:bounces.mbox")}


def test_non_standard_bounces_are_read_from_their_text(engine, tmp_path):
    _shop(engine)
    report = bounces.process(
        engine, write_mbox(tmp_path, ["postfix_plain_undelivered", "qmail_failure_notice"]), NOW)

    assert (report.hard, report.unmatched) == (2, 0)
    assert statuses(engine)[4] == (
        "bounced", "dsn 5.2.1 <address>: Mailbox disabled, account closed by its owner "
                   "(in reply to RCPT TO command)")
    assert statuses(engine)[8][0] == "bounced"
    assert {"marc.leroy@old-isp.example", "sophie.bernard@small-host.example"} == set(
        suppressed(engine))


def test_delivery_without_recorded_message_id_is_found_by_its_id(engine, tmp_path):
    _shop(engine)
    bounces.process(engine, write_mbox(tmp_path, ["exchange_ndr_recipient_not_found"]), NOW)

    assert statuses(engine)[3][0] == "bounced"
    assert "lena.schmidt@contoso-shop.example" in suppressed(engine)


def test_id_of_another_campaign_does_not_match(engine, tmp_path):
    # Delivery 999 exists here, but for another campaign than the returned <d999.partner_news@>.
    _shop(engine, {**SENT, 999: (7, "winback", "sent", None)})
    report = bounces.process(engine, write_mbox(tmp_path, ["unmatched_stranger"]), NOW)

    assert report.unmatched == 1
    assert statuses(engine)[999] == ("sent", None)


@pytest.mark.parametrize("status", ["held_out", "suppressed"])
def test_a_delivery_never_sent_keeps_its_status(engine, tmp_path, status):
    _shop(engine, {**SENT, 1: (1, "winback", status, None)})
    report = bounces.process(engine, write_mbox(tmp_path, ["postfix_dsn_user_unknown"]), NOW)

    assert report.bounced_new == 0
    assert statuses(engine)[1] == (status, None)


def test_second_pass_over_the_same_mailbox_changes_nothing(engine, tmp_path):
    _shop(engine)
    path = write_mbox(tmp_path)
    first = bounces.process(engine, path, NOW)
    before = statuses(engine), suppressed(engine)

    second = bounces.process(engine, path, datetime(2026, 6, 16, tzinfo=UTC))

    assert (statuses(engine), suppressed(engine)) == before
    assert (second.suppressed_new, second.bounced_new) == (0, 0)
    assert (second.hard, second.soft, second.unmatched) == (first.hard, first.soft,
                                                            first.unmatched)


def test_no_address_in_summary_or_logs(engine, tmp_path, caplog):
    _shop(engine)
    with caplog.at_level(logging.INFO, logger="engine.delivery.bounces"):
        report = bounces.process(engine, write_mbox(tmp_path), NOW)

    assert "6 hard" in report.summary()
    assert "@" not in report.summary()
    assert caplog.records and "@" not in caplog.text


def test_missing_path_is_not_found(engine, tmp_path):
    with pytest.raises(NotFound, match="no such file or folder"):
        bounces.process(engine, tmp_path / "nowhere", NOW)


def test_folder_that_is_not_a_maildir_is_refused(engine, tmp_path):
    (tmp_path / "mail").mkdir()
    with pytest.raises(InputError, match="not a Maildir"):
        bounces.process(engine, tmp_path / "mail", NOW)


def test_single_message_file_is_refused_and_nothing_is_written(engine, tmp_path):
    _shop(engine)
    with pytest.raises(InputError, match='does not start with a "From " line'):
        bounces.process(engine, DATA / "postfix_dsn_user_unknown.eml", NOW)
    assert statuses(engine)[1] == ("sent", None)
    assert suppressed(engine) == {}


def test_an_unreadable_message_is_ignored_and_the_rest_recorded(engine, tmp_path):
    _shop(engine)
    path = write_mbox(tmp_path, ["postfix_dsn_user_unknown"])
    box = mailbox.mbox(path)
    box.add(b"From: MAILER-DAEMON\nSubject: failure notice\nMIME-Version: 1.0\n"
            b"Content-Type: multipart/mixed; boundary=q\n\n--q\nContent-Type: text/plain\n\n"
            b"550 5.1.1 no such user\n--q\nContent-Type: text/rfc822-headers; charset=x-klingon"
            b"\n\nTo: someone@example.org\n--q--\n")
    box.flush()

    report = bounces.process(engine, path, NOW)

    assert (report.messages, report.ignored, report.hard) == (2, 1, 1)
    assert statuses(engine)[1][0] == "bounced"


def _dsn(action: str, status: str, diagnostic: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example\nSubject: Undelivered Mail Returned to Sender\n"
        "MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; "
        'boundary="b"\n\n--b\nContent-Type: text/plain\n\nnotice\n--b\n'
        "Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example\n\n"
        f"Final-Recipient: rfc822; someone@example.org\nAction: {action}\nStatus: {status}\n"
        f"Diagnostic-Code: smtp; {diagnostic}\n\n--b--\n").encode()


@pytest.mark.parametrize(("action", "status", "diagnostic", "verdict"), [
    ("failed", "5.1.1", "550 5.1.1 <someone@example.org>: User unknown", "hard"),
    ("failed", "5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound", "hard"),
    ("failed", "5.2.1", "550 5.2.1 Mailbox disabled", "hard"),
    ("failed", "5.4.4", "Host or domain name not found", "hard"),     # no such domain
    ("failed", "5.0.0", "550 5.1.1 User unknown", "hard"),            # sharper code in text
    ("failed", "5.0.0", "550 No such user here", "hard"),
    ("failed", "5.2.2", "552 5.2.2 Mailbox full", "soft"),            # the address exists
    ("failed", "4.4.7", "Delivery time expired", "soft"),             # gave up on a 4xx
    ("delayed", "4.4.1", "Connection timed out", "soft"),
    ("failed", "5.7.1", "550 5.7.1 Message rejected as spam", "refused"),  # about us
    ("failed", "5.1.8", "553 5.1.8 Sender address rejected", "refused"),    # our sender
    ("failed", "5.0.0", "554 Transaction failed", "refused"),
    ("delivered", "2.0.0", "250 2.0.0 OK", None),
])
def test_verdict_of_each_status(action, status, diagnostic, verdict):
    (recipient,) = bounces.read(_dsn(action, status, diagnostic)).recipients
    assert recipient.verdict() == verdict
    assert "@" not in recipient.diagnostic
