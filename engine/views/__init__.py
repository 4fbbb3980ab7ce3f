"""Views: read-only answers for people.

Owns ``retain why`` (``explain``), what-if simulations on a copy of the database
(``simulate``), previews of one customer's email (``preview``), and delivery reports
(``reports``).

Must not: write to the shop's database. A simulation works on a copy.
"""
