"""Delivery: the ledger of every send, and the run that fills it.

Owns the ``deliveries`` ledger and its state machine (``ledger``, the only writer of
deliveries), which runs are alive (``runs``), one delivery's email context (``compose``), the
render worker processes (``renderworkers``), the run itself: plan, claim, send, record
(``runner``), what a send's outcome means for its row and for the run (``verdicts``), and
bounce reports turned into suppressions (``bounces``).

Must not: decide audiences (the campaigns package does) or read the clock (``now`` is an
argument).
"""
