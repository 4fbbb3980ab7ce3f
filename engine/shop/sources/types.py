"""What a sync of one source reports, and the hook through which a source forgets a customer.

Owns ``SyncResult`` (rows applied, whether data arrived, per-file or per-query notes, the one
error line) and ``Forget``, the signature of the erasure that sources call for customers deleted
or redacted upstream: erasure lives with consent (it suppresses the address), a layer this one
may not import, so the caller hands it in. Must not do anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# forget(conn, now, source, external_id=..., email=...) -> the erased customer's id, or None
Forget = Callable[..., int | None]


@dataclass
class SyncResult:
    source: str
    kind: str
    applied: int = 0          # rows inserted or updated
    arrived: bool = False     # data arrived: the source's last success moves to now
    notes: list[str] = field(default_factory=list)
    failed_files: list[str] = field(default_factory=list)
    error: str | None = None  # one line, no secrets or addresses
    watermark: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "kind": self.kind, "applied": self.applied,
                "arrived": self.arrived, "notes": self.notes, "error": self.error}

