"""A minimal SMTP sink on asyncio: answers EHLO/HELO/MAIL/RCPT/DATA/RSET/NOOP/QUIT, keeps nothing.

For throughput measurements only. aiosmtpd spends 1.6–2.3 ms of CPU per message, so above
~500 messages/s a benchmark against it measures aiosmtpd; this sink costs a few µs per message,
so what remains is the client. It checks nothing and must never face the network.

    python bench/smtp_sink.py [--port 0] [--delay 0.1]
        # prints the port, then serves until stdin closes; --delay: seconds before each reply
        # to DATA (a real relay answers in 50-300 ms)
"""

from __future__ import annotations

import argparse
import asyncio
import sys

_EHLO = b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 104857600\r\n"
_END_OF_DATA = b"\r\n.\r\n"


DELAY = 0.0  # seconds the sink waits before answering a message's DATA


async def _session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 sink ready\r\n")
    try:
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(_EHLO)
            elif verb == b"DATA":
                writer.write(b"354 end with <CRLF>.<CRLF>\r\n")
                # The payload ends at CRLF.CRLF; an empty payload is just ".CRLF".
                first = await reader.readline()
                if first != b".\r\n":
                    await reader.readuntil(_END_OF_DATA)
                if DELAY:
                    await asyncio.sleep(DELAY)
                writer.write(b"250 2.0.0 OK queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 bye\r\n")
                break
            elif verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                writer.write(b"250 2.0.0 OK\r\n")
            else:
                writer.write(b"502 5.5.2 not implemented\r\n")
            await writer.drain()   # returns at once unless the client stopped reading
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def start(host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    return await asyncio.start_server(_session, host, port, limit=64 * 1024 * 1024)


async def _main(host: str, port: int) -> None:
    server = await start(host, port)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    # Serve until the parent closes our stdin: no stray process outlives the benchmark.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    DELAY = args.delay
    asyncio.run(_main(args.host, args.port))
