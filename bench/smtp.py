"""Messages per second through engine.smtp.SmtpTransport, to a minimal sink and to aiosmtpd.

Each server runs in its own process (so it does not share the client's GIL), on loopback.
Scenarios, 20 KB messages by default:
  - the sink's own capacity: one raw socket, every command pipelined, no client library;
  - plain smtplib.sendmail on one reused connection (the floor our transport adds to);
  - SmtpTransport with 1 connection/1 thread and 4 connections/4 threads,
against both the minimal asyncio sink (bench/smtp_sink.py) and engine.mailserver.MailServer.

    .venv/bin/python bench/smtp.py [--messages 2000] [--size 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import smtplib
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.config import Smtp
from engine.transport import OutgoingMessage, SendStatus
from engine.transport.smtp import SmtpTransport

HERE = Path(__file__).resolve().parent
SERVERS = {
    "sink": [sys.executable, str(HERE / "smtp_sink.py")],
    "aiosmtpd": [sys.executable, "-c",
                 "import sys; from engine.mailserver import MailServer; s = MailServer().start();"
                 " print(s.port, flush=True); sys.stdin.read(); s.stop()"],
}


def make_messages(count: int, size: int) -> list[OutgoingMessage]:
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n"
    body = line * max(1, size // len(line))
    messages = []
    for n in range(count):
        head = (f"From: shop@bench.example\r\nTo: c{n}@d{n % 50}.example\r\n"
                f"Subject: bench {n}\r\nMessage-ID: <{n}@bench.example>\r\n\r\n").encode()
        messages.append(OutgoingMessage("bounces@bench.example", f"c{n}@d{n % 50}.example",
                                        head + body, f"<{n}@bench.example>"))
    return messages


@contextmanager
def server_process(kind: str) -> Iterator[int]:
    process = subprocess.Popen(SERVERS[kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    try:
        yield int(process.stdout.readline())
    finally:
        process.stdin.close()   # the server exits when its stdin closes
        process.wait(timeout=10)


def raw_pipelined(port: int, messages: list[OutgoingMessage]) -> None:
    """The sink's capacity: one socket, all commands written at once, replies counted."""
    wire = b"".join(b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n%s.\r\n" % (
        m.mail_from.encode(), m.rcpt_to.encode(), m.data) for m in messages)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"EHLO bench\r\n")
        writer = threading.Thread(target=sock.sendall, args=(wire + b"QUIT\r\n",))
        writer.start()
        replies = bytearray()
        while not (chunk := sock.recv(1 << 16)) == b"":
            replies += chunk
            if b"\r\n221 " in replies[-200:]:   # the reply to QUIT: all answered
                break
        writer.join()
    # One "250 " line ends EHLO, then MAIL, RCPT and the end of DATA each get one.
    accepted = sum(1 for line in replies.split(b"\r\n") if line.startswith(b"250 "))
    assert accepted == 3 * len(messages) + 1, "the server refused or lost messages"


def plain_smtplib(port: int, messages: list[OutgoingMessage]) -> None:
    with smtplib.SMTP("127.0.0.1", port, "bench.local") as client:
        for m in messages:
            client.sendmail(m.mail_from, [m.rcpt_to], m.data)


def transport_threads(connections: int) -> Callable[[int, list[OutgoingMessage]], None]:
    def run(port: int, messages: list[OutgoingMessage]) -> None:
        settings = Smtp(port=port, max_connections=connections, rate_per_second=1e9)
        with SmtpTransport(settings, local_hostname="bench.local") as transport:
            def work(share: list[OutgoingMessage]) -> None:
                for m in share:
                    outcome = transport.send(m)
                    assert outcome.status is SendStatus.sent, outcome
            threads = [threading.Thread(target=work, args=(messages[i::connections],))
                       for i in range(connections)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    return run


def measure(kind: str, scenario: Callable[[int, list[OutgoingMessage]], None],
            messages: list[OutgoingMessage], repeat: int) -> tuple[float, float]:
    """Median messages/s, and median client CPU (all threads, incl. kernel) µs per message."""
    rates, cpu = [], []
    for _ in range(repeat):
        with server_process(kind) as port:
            start, start_cpu = time.perf_counter(), time.process_time()
            scenario(port, messages)
            rates.append(len(messages) / (time.perf_counter() - start))
            cpu.append((time.process_time() - start_cpu) * 1e6 / len(messages))
    return statistics.median(rates), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=20_000, help="message size in bytes")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    args = parser.parse_args()
    messages = make_messages(args.messages, args.size)
    size_kb = len(messages[0].data) / 1000
    print(f"{args.messages} messages of {size_kb:.1f} KB, median of {args.repeat} runs, "
          f"messages/s over loopback")
    scenarios = [
        ("raw socket, all pipelined (server capacity)", raw_pipelined),
        ("smtplib.sendmail, 1 reused connection", plain_smtplib),
        ("SmtpTransport, 1 connection, 1 thread", transport_threads(1)),
        ("SmtpTransport, 4 connections, 4 threads", transport_threads(4)),
    ]
    print(f"{'client':44} {'sink msg/s':>10} {'CPU µs/msg':>10} {'aiosmtpd msg/s':>14}")
    for name, scenario in scenarios:
        (sink, cpu), (aiosmtpd, _) = (measure(kind, scenario, messages, args.repeat)
                                      for kind in SERVERS)
        print(f"{name:44} {sink:10,.0f} {cpu:10,.0f} {aiosmtpd:14,.0f}", flush=True)
    print("CPU µs/msg: the client process's CPU time (user + system, all threads) while "
          "sending to the sink.")


if __name__ == "__main__":
    main()
