"""Message bytes never carry data that breaks a header: control characters from a customer's
name leave the subject, words no line can hold are RFC 2047 encoded words, bodies lose NUL;
read back with the stdlib parser."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime

import pytest

from engine.errors import InputError
from engine.mail.mime import build_message
from engine.mail.render import RenderedEmail

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
C0 = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def message(subject: str, html: str = "<p>Hi</p>", text: str = "Hi\n",
            to_addr: str = "ann@example.com") -> bytes:
    return build_message(
        RenderedEmail(subject, html, text), from_addr="hello@maison-verte.example",
        from_name="Maison Verte", to_addr=to_addr, reply_to=None,
        message_id="<d7.winback@maison-verte.example>", date=NOW,
        headers={"List-Unsubscribe": "<https://maison-verte.example/unsubscribe?token=abc>",
                 "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})


def head(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def parsed(data: bytes) -> email.message.EmailMessage:
    result = email.message_from_bytes(data, policy=email.policy.default)
    assert not result.defects
    return result


@pytest.mark.parametrize(("subject", "shown"), [
    ("Ann\r\nBcc: victim@example.com", "Ann Bcc: victim@example.com"),
    ("Ann\x00Lee, 10% off", "AnnLee, 10% off"),
    ("\x1b[31mRed\x07 alert\x7f", "[31mRed alert"),
    ("Zoë\u2028\u202egnp.exe\u202c 😀", "Zoë gnp.exe 😀"),
    ("Ann\n\tLee", "Ann Lee"),
])
def test_control_characters_never_reach_a_header(subject, shown):
    data = message(subject)
    for line in head(data):
        assert line.isascii() and not C0.search(line), line
    result = parsed(data)
    assert result["Subject"] == shown
    assert "Bcc" not in result


def test_a_word_longer_than_a_line_is_folded_as_encoded_words_and_reads_back():
    subject = "Z" * 2000 + ", we miss you: 10% off"
    data = message(subject)
    subject_lines = [line for line in head(data) if line.startswith((b"Subject:", b" =?"))]
    assert len(subject_lines) > 20 and max(map(len, subject_lines)) <= 76  # RFC 2047
    assert all(len(word) <= 75 for line in subject_lines
               for word in re.findall(rb"=\?[^ ]*\?=", line))
    assert parsed(data)["Subject"] == subject


def test_a_long_url_in_a_header_is_never_split():
    url = "<https://maison-verte.example/unsubscribe?token=" + "a" * 300 + ">"
    data = build_message(
        RenderedEmail("Hi", "<p>x</p>", "x"), from_addr="a@shop.example", from_name="Shop",
        to_addr="b@example.com", reply_to=None, message_id="m1@shop.example", date=NOW,
        headers={"List-Unsubscribe": url})
    assert f"List-Unsubscribe: {url}".encode() in head(data)


def test_control_characters_leave_the_bodies():
    data = message("Hi", html="<p>Ann\x00Lee \x1b[0m</p>", text="Ann\x00Lee\x0c\n")
    assert b"\x00" not in data and b"\x1b" not in data and b"\x0c" not in data
    plain, html = parsed(data).iter_parts()
    assert plain.get_content().replace("\r\n", "\n") == "AnnLee\n"
    assert "<p>AnnLee [0m</p>" in html.get_content()


@pytest.mark.parametrize("address", ["ann\x00@example.com", "ann@exa\x07mple.com",
                                     "ann@example.com\r\nRCPT TO:<x@example.com>"])
def test_a_recipient_address_with_control_characters_is_refused_without_quoting_it(address):
    with pytest.raises(InputError, match="recipient address is not a valid") as refused:
        message("Hi", to_addr=address)
    assert "ann" not in str(refused.value)
