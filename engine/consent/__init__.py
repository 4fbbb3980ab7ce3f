"""Consent: who must never be mailed, and how a customer says so.

Owns the suppression list (``suppressions``), the signed one-click unsubscribe tokens of
RFC 8058 (``unsubscribe``), the opt-out request handling behind the endpoint (``optout``),
and forgetting a customer for good (``erasure``).

Must not: know campaigns, plan or send. It answers "may this address be mailed?" and records
"never again"; the planner and the ledger ask it.
"""
