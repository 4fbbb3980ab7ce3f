"""Shop data: what the shop knows about its customers, and who is in a segment.

Owns reading CSV exports (``csvfile``, ``csvformats``), the transactional chunked import
(``importer``, ``upserts``, ``importkeys``; the event kinds in ``csvevents`` and
``eventupserts``), the sources that bring data in by themselves and their sync state
(``sources/``), the stale-data guard (``freshness``), coupon redemptions kept current on
every import (``redemptions``), the customer metrics computed in SQL (``metrics``), and the
segment language compiled to one SQL query (``segments``, ``segmentfields``).

Must not: send, render, or know campaigns. Audiences leave this package as customer ids.
"""
