"""Views: read-only answers for people.

Owns ``retain why`` (``explain``), what-if simulations on a copy of the database
(``simulate``), previews of one customer's email (``preview``), delivery listings
(``reports``), one customer's deliveries and redemptions (``history``), and ``retain report``:
attribution in SQL (``attribution``), the lift statistics (``lift``), the figures per campaign
and step (``results``), their charts (``charts``) and their tables and HTML page
(``reportpage``).

Must not: write to the shop's database. A simulation works on a copy.
"""
