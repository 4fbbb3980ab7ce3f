"""Demo: a realistic synthetic shop and ``retain demo``.

Owns the deterministic synthetic shop (``synthshop``) and the demo itself: build the shop, run
every campaign through a loopback SMTP server, summarise (``showcase``); then a few days of
the shop's response with an injected effect, and the report (``response``).

Must not: be imported by anything but the command line and the benchmarks.
"""
