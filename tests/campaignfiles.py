"""The one campaign-YAML builder of the suite: a campaign file written from a kind's defaults
and the keys a test cares about, so a test says only what matters to it.

    write_campaign(tmp_path, schedule="0 10 * * *", holdout=0.1)   # → tmp_path/winback.yaml
    load_campaign(write_campaign(tmp_path, kind="bundle", id="sets"))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from engine.campaigns import models as campaigns

DEFAULTS: dict[str, dict[str, Any]] = {
    # Customers whose last order was 60-119 days ago are drowsy: each gets one coupon email.
    "winback": {
        "template": "winback.html",
        "subject": "{{ customer.first_name }}, we miss you: {{ offer.percent_off }}% off",
        "steps": [{"tier": "drowsy", "coupon": {"percent_off": 10, "prefix": "BACK"}}],
    },
}


def campaign_yaml(kind: str = "winback", **keys: Any) -> str:
    """A campaign file's text: ``kind``'s defaults with ``keys`` on top (``None`` drops a key)."""
    body = {"id": keys.pop("id", kind), "kind": kind, **DEFAULTS[kind], **keys}
    return yaml.safe_dump({k: v for k, v in body.items() if v is not None}, sort_keys=False,
                          allow_unicode=True)


def write_campaign(folder: Path, kind: str = "winback", **keys: Any) -> Path:
    """``campaign_yaml(kind, **keys)`` written to ``folder/<id>.yaml``; its path."""
    text = campaign_yaml(kind, **keys)
    path = Path(folder) / f"{yaml.safe_load(text)['id']}.yaml"
    path.write_text(text)
    return path


def load_campaign(path: Path) -> campaigns.Campaign:
    return campaigns.load_file(path)
