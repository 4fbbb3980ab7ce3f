"""Campaigns: the marketer's YAML turned into would-be deliveries.

Owns the typed, frozen campaign models and their loading (``models``), the ``schedule:`` crontab
(``cron``), ``retain validate`` (``validate``), the per-kind rules (``kinds``), offers such as
coupons and gifts (``offers``), the frequency cap and quiet hours (``limits``), the planner that
turns a campaign and a moment into candidates (``planner``), and the counts of their outcomes
(``counts``).

Must not: send mail or write the deliveries ledger. It decides *who would get what*; the
delivery package records and sends it.
"""
