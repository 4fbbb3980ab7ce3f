"""Product pictures drawn for the demo shop, so its emails show real images when opened.

Owns: drawing one small PNG per product (a tile in its category's colour with the product's
name), the same bytes for the same product every time, and ``Picture``: what an email attaches
inline and refers to by Content-ID. Real shops never get these: their products keep the image
URLs of their own catalogue (compose.py attaches pictures only to the demo shop's mail).
Must not: touch the database, fetch anything over the network, or know campaigns.

Drawn with Pillow at twice the size an email shows them (260 px), for sharp phone screens.
"""

from __future__ import annotations

import hashlib
import io
import textwrap
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

SIZE = 520  # pixels; shown at 260
# (background, shape, text) per category; an unknown category gets a colour from its name.
PALETTE = {
    "yoga": ("#e7dccb", "#c9b79c", "#4a3b28"), "tea": ("#dfe8d5", "#b9cca6", "#2f4a22"),
    "coffee": ("#e5d6c9", "#c4a58c", "#4b2e1c"), "kitchen": ("#e9e2d6", "#cdbfa6", "#463b2a"),
    "candles": ("#efe3d0", "#d9bf95", "#54401f"), "plants": ("#d9e8d9", "#a9c9a9", "#234523"),
    "bath": ("#dde7ec", "#b3cad6", "#254150"), "stationery": ("#ece4e9", "#cfbccb", "#4a3446"),
}


@dataclass(frozen=True, slots=True)
class Picture:
    """An image attached to an email and shown where its HTML says ``src="cid:<cid>"``."""
    cid: str
    content_type: str
    data: bytes


def _colours(category: str) -> tuple[str, str, str]:
    if category in PALETTE:
        return PALETTE[category]
    hue = hashlib.sha256(category.encode()).digest()
    base = tuple(200 + b % 40 for b in hue[:3])
    shape = tuple(c - 40 for c in base)
    text = tuple(c // 4 for c in base)
    return tuple("#{:02x}{:02x}{:02x}".format(*c)  # type: ignore[return-value]
                 for c in (base, shape, text))


@lru_cache(maxsize=256)
def draw(name: str, category: str) -> bytes:
    """A PNG of ``SIZE`` pixels square showing ``name`` on its category's colours."""
    background, shape, ink = _colours(category)
    image = Image.new("RGB", (SIZE, SIZE), background)
    pen = ImageDraw.Draw(image)
    pen.ellipse((SIZE * 0.12, SIZE * 0.06, SIZE * 0.88, SIZE * 0.82), fill=shape)
    font = ImageFont.load_default(size=36)
    small = ImageFont.load_default(size=24)
    lines = textwrap.wrap(name, width=15)[:3]
    top = SIZE * 0.44 - 22 * (len(lines) - 1)
    for number, line in enumerate(lines):
        pen.text((SIZE / 2, top + number * 44), line, fill=ink, font=font, anchor="mm")
    pen.text((SIZE / 2, SIZE * 0.88), category.upper(), fill=ink, font=small, anchor="mm")
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def picture(key: str, name: str, category: str) -> Picture:
    """The drawn picture of a product, with a Content-ID derived from ``key`` (its sku)."""
    slug = "".join(c if c.isalnum() else "-" for c in key.lower())
    return Picture(f"{slug}@pictures.retain", "image/png", draw(name, category or "shop"))
