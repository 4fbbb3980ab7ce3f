"""Campaign YAML → one typed, frozen model per kind.

Owns: the schema of ``campaigns/*.yaml`` (common fields and the four kinds), reading every file
with line numbers, and the checks across files (unique ids, the template exists). Every problem
is reported as ``file:line:column: sentence`` and all problems of a folder are collected before
anything is refused. Must not touch the database.

Kinds and what "at most once" means for each (the *occasion* of a delivery):
- ``new_product``: the set of products announced; a product is announced to a customer once.
- ``winback``: one step per dormancy tier, once per tier per dormancy episode.
- ``spend_threshold``: the gift once per period (month, week, or rolling days).
- ``bundle``: each bundle once per cooldown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine import yamlfile
from engine.campaigns import cron
from engine.errors import CampaignError, InputError, Invalid, SegmentError, did_you_mean
from engine.money import MAX_CENTS

# Amounts a campaign gives or compares are stored in the same INTEGER cents as imported ones.
Money = Annotated[Decimal, Field(ge=0, le=MAX_CENTS // 100, max_digits=12,
                                 decimal_places=2)]
CAMPAIGN_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"
MAX_DAYS = 3650  # cooldowns: ten years is "never again"; more would overflow date arithmetic


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class Coupon(Frozen):
    """A unique coupon code: percent or amount off, with optional minimum spend and expiry."""
    percent_off: int | None = Field(default=None, gt=0, le=100)
    amount_off: Money | None = None
    min_spend: Money = Decimal(0)
    valid_days: int = Field(default=30, gt=0, le=366)
    prefix: str = Field(default="", pattern=r"^[A-Z0-9]{0,12}$")

    @model_validator(mode="after")
    def _one_discount(self) -> Coupon:
        if (self.percent_off is None) == (self.amount_off is None):
            raise ValueError("a coupon needs exactly one of percent_off or amount_off")
        return self


class Gift(Frozen):
    """What a spend-threshold campaign gives: a product, a gift card amount, or a coupon."""
    product: str | None = None
    gift_card: Money | None = None
    coupon: Coupon | None = None
    valid_days: int = Field(default=30, gt=0, le=366)

    @model_validator(mode="after")
    def _one_gift(self) -> Gift:
        if sum(x is not None for x in (self.product, self.gift_card, self.coupon)) != 1:
            raise ValueError("a gift needs exactly one of product (a sku), gift_card (an "
                             "amount) or coupon")
        return self


class Budget(Frozen):
    """Caps per run: how many offers, and how much total face value, a run may issue."""
    max_offers: int | None = Field(default=None, gt=0, le=10_000_000)
    max_value: Money | None = None


class CampaignBase(Frozen):
    id: str = Field(pattern=CAMPAIGN_ID)
    kind: str
    description: str = ""  # for the team: never shown to a customer
    enabled: bool = True
    schedule: str | None = None
    segment: Any = None
    template: str
    subject: str = Field(min_length=1, max_length=200)
    # The inbox's preview line (Jinja, like the subject); by default the email's first paragraph.
    preheader: str | None = Field(default=None, min_length=1, max_length=300)
    priority: int = Field(default=50, ge=0, le=1000)
    holdout: float = Field(default=0.0, ge=0, lt=1)
    cooldown_days: int = Field(default=0, ge=0, le=MAX_DAYS)
    budget: Budget = Budget()
    # What happens when the frequency cap stops this campaign: try again next run, or drop.
    on_cap: Literal["defer", "drop"] = "defer"
    source: str = Field(default="", exclude=True)
    source_line: int = Field(default=1, exclude=True)
    # Line of each top-level key in the file, so later checks (templates) can point at it.
    key_lines: dict[str, int] = Field(default_factory=dict, exclude=True)

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.source_line)

    @field_validator("template")
    @classmethod
    def _inside_templates(cls, value: str) -> str:
        parts = PurePosixPath(value).parts
        if not value.strip() or value.startswith("/") or ".." in parts or "\\" in value or \
                len(value) > 200 or any(ord(char) < 32 for char in value):
            raise ValueError(f'"{value}" is not a file of the templates folder; write the name '
                             'of one, like "winback.html"')
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            cron.trigger(value, ZoneInfo("UTC"))
        except ValueError as exc:
            raise ValueError(f'"{value}" is not a cron schedule ({exc}); write five fields '
                             'like "0 9 * * 1" for Mondays at 09:00') from None
        return value

    @property
    def offer_kind(self) -> str:
        return "none"


class NewProduct(CampaignBase):
    kind: Literal["new_product"]
    lookback_days: int = Field(default=14, gt=0, le=365)
    include_price_drops: bool = True
    categories: tuple[str, ...] = Field(default=(), max_length=500)
    match: Literal["affinity", "all"] = "affinity"
    max_products: int = Field(default=4, ge=1, le=12)
    # One digest a week at most, unless the marketer says otherwise: products left out of a
    # full digest wait for the next one instead of arriving the same day.
    cooldown_days: int = Field(default=6, ge=0, le=MAX_DAYS)


class WinbackStep(Frozen):
    tier: Literal["drowsy", "half_asleep", "sleeping"]
    coupon: Coupon


class Winback(CampaignBase):
    kind: Literal["winback"]
    steps: tuple[WinbackStep, ...] = Field(min_length=1)

    @field_validator("steps")
    @classmethod
    def _one_step_per_tier(cls, steps: tuple[WinbackStep, ...]) -> tuple[WinbackStep, ...]:
        tiers = [s.tier for s in steps]
        if len(set(tiers)) != len(tiers):
            raise ValueError("each dormancy tier may have one step only")
        return steps

    def step_for(self, tier: str) -> WinbackStep | None:
        return next((s for s in self.steps if s.tier == tier), None)

    @property
    def offer_kind(self) -> str:
        return "coupon"


class Nudge(Frozen):
    """Customers within ``within`` of the threshold get a "spend X more" email."""
    within: Money
    subject: str | None = None


class SpendThreshold(CampaignBase):
    kind: Literal["spend_threshold"]
    threshold: Money
    period: Literal["month", "week", "days"] = "month"
    period_days: int | None = Field(default=None, gt=0, le=366)
    gift: Gift
    nudge: Nudge | None = None

    @model_validator(mode="after")
    def _period_days(self) -> SpendThreshold:
        if self.period == "days" and self.period_days is None:
            raise ValueError('period "days" needs period_days: N (a rolling window of N days)')
        if self.period != "days" and self.period_days is not None:
            raise ValueError('period_days only goes with period: days')
        if self.nudge and self.nudge.within >= self.threshold:
            raise ValueError("nudge.within must be smaller than the threshold")
        return self

    @property
    def offer_kind(self) -> str:
        return "gift"


class Bundle(Frozen):
    id: str = Field(pattern=CAMPAIGN_ID)
    name: str = ""
    skus: tuple[str, ...] = Field(min_length=2, max_length=50)
    price: Money | None = None
    discount_percent: int | None = Field(default=None, gt=0, lt=100)

    @model_validator(mode="after")
    def _one_price(self) -> Bundle:
        if (self.price is None) == (self.discount_percent is None):
            raise ValueError("a bundle needs exactly one of price or discount_percent")
        if len(set(self.skus)) != len(self.skus):
            raise ValueError("a bundle lists each sku once")
        return self


class Mine(Frozen):
    """Frequently-bought-together pairs mined from orders, offered at a discount; an offer that
    saves the customer less than ``min_saving_percent`` of its price, or less than
    ``min_saving`` (an amount: 15 % off a 5.90 item is not worth an email), is not made."""
    min_support: float = Field(default=0.01, gt=0, lt=1)
    top: int = Field(default=3, ge=1, le=50)
    discount_percent: int = Field(default=10, gt=0, lt=100)
    min_saving_percent: int = Field(default=10, ge=0, lt=100)
    min_saving: Money = Decimal(2)


class BundleCampaign(CampaignBase):
    kind: Literal["bundle"]
    bundles: tuple[Bundle, ...] = Field(default=(), max_length=200)
    mine: Mine | None = None
    cooldown_days: int = Field(default=30, ge=0, le=MAX_DAYS)

    @model_validator(mode="after")
    def _something_to_offer(self) -> BundleCampaign:
        if not self.bundles and self.mine is None:
            raise ValueError("a bundle campaign needs bundles: or mine:")
        ids = [b.id for b in self.bundles]
        if len(set(ids)) != len(ids):
            raise ValueError("bundle ids must be unique within a campaign")
        return self

    @property
    def offer_kind(self) -> str:
        return "bundle"


Campaign = NewProduct | Winback | SpendThreshold | BundleCampaign
KINDS: dict[str, type[CampaignBase]] = {
    "new_product": NewProduct,
    "winback": Winback,
    "spend_threshold": SpendThreshold,
    "bundle": BundleCampaign,
}


def parse(raw: Any, path: str | Path) -> Campaign:
    """Validate one campaign document; raises Invalid listing every problem found in it."""
    path = str(path)
    if not isinstance(raw, yamlfile.LocatedDict):
        line = getattr(raw, "start", (1, 1))[0]
        raise Invalid([CampaignError("a campaign file is a mapping of keys (id:, kind:, ...)",
                                     path, line)])
    kind = raw.get("kind")
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        line, column = raw.lines.get("kind", raw.start)
        what = f'unknown kind "{kind}"' + did_you_mean(str(kind), KINDS) if "kind" in raw \
            else '"kind" is required' + did_you_mean("", KINDS).replace(" (valid", " (one of")
        raise Invalid([CampaignError(what, path, line, column)])
    problems: list[InputError] = []
    try:
        campaign = model.model_validate({
            **raw, "source": path, "source_line": raw.start[0],
            "key_lines": {str(k): line for k, (line, _col) in raw.lines.items()}})
    except ValidationError as exc:
        problems.extend(CampaignError(p.message, path, p.line, p.column)
                        for p in yamlfile.problems_from_validation(exc, raw, path, model))
        campaign = None
    segment = None
    if raw.get("segment") is not None:
        segment, segment_problems = _parse_segment(raw["segment"], path, raw.lines["segment"])
        problems.extend(segment_problems)
    if problems:
        raise Invalid(problems)
    assert campaign is not None
    # The segment is kept compiled-ready (segments.Segment), not as the raw YAML mapping.
    return campaign.model_copy(update={"segment": segment})


def _parse_segment(node: Any, path: str, at: tuple[int, int]) -> tuple[Any, list[InputError]]:
    from engine.shop import segments

    try:
        return segments.parse(node, path, at), []
    except SegmentError as exc:
        return None, [exc]
    except Invalid as exc:
        return None, list(exc.problems)


def parse_text(text: str, path: str | Path = "<text>") -> Campaign:
    return parse(yamlfile.parse(text, path), path)


def load_file(path: str | Path) -> Campaign:
    return parse(yamlfile.load(path), path)


def load_folder(folder: str | Path, templates_dir: str | Path | None = None) -> list[Campaign]:
    """Every ``*.yaml``/``*.yml`` in ``folder``, checked together; Invalid lists all problems."""
    found, problems = read_folder(folder, templates_dir)
    if problems:
        raise Invalid(problems)
    return found


def read_folder(folder: str | Path, templates_dir: str | Path | None = None
                ) -> tuple[list[Campaign], list[InputError]]:
    """(the campaigns that loaded, every problem found): ``retain validate`` goes on to check
    the templates of the good ones instead of stopping at the first bad file."""
    folder = Path(folder)
    if not folder.is_dir():
        return [], [CampaignError("campaigns folder not found; create it, or set "
                                  "paths.campaigns in config.yaml", folder)]
    problems: list[InputError] = []
    found: list[Campaign] = []
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            found.append(load_file(path))
        except Invalid as exc:
            problems.extend(exc.problems)
        except InputError as exc:
            problems.append(exc)
    across = cross_file_problems(found, templates_dir)
    problems.extend(across)
    # A campaign whose template is missing, or whose id is taken, is not one of the good ones.
    blamed = {(p.path, p.line) for p in across}
    good = [c for c in found if (c.source, c.line_of("template")) not in blamed
            and (c.source, c.source_line) not in blamed]
    return good, problems


def cross_file_problems(found: Iterable[Campaign],
                        templates_dir: str | Path | None) -> list[InputError]:
    problems: list[InputError] = []
    seen: dict[str, Campaign] = {}
    for campaign in found:
        if campaign.id in seen:
            problems.append(CampaignError(
                f'campaign id "{campaign.id}" is already used by {seen[campaign.id].source}; '
                "give each campaign its own id", campaign.source, campaign.source_line))
        seen.setdefault(campaign.id, campaign)
        if templates_dir is not None and not (Path(templates_dir) / campaign.template).is_file():
            problems.append(CampaignError(
                f'template "{campaign.template}" not found in {templates_dir}/; create it or '
                'fix the name', campaign.source, campaign.line_of("template")))
    return problems


def select(found: list[Campaign], ids: Iterable[str]) -> list[Campaign]:
    """The campaigns named on the command line, in the order given; unknown ids are an error."""
    from engine.errors import NotFound

    by_id = {c.id: c for c in found}
    chosen = []
    for wanted in ids:
        if wanted not in by_id:
            raise NotFound(f'no campaign with id "{wanted}"' + did_you_mean(wanted, by_id))
        chosen.append(by_id[wanted])
    return chosen


@dataclass(frozen=True)
class SpendPeriod:
    """The spend period of a spend_threshold campaign that holds a day of the store's calendar.

    ``key`` names it in occasions and on the gift's coupon ("2026-06", "2026-W24", or for a
    rolling window its length and last day, "30d:2026-06-15"); the spend that counts is the
    counted orders from ``starts_at`` (midnight of ``first_day``, store time) until now.
    """
    key: str
    first_day: date
    last_day: date  # inclusive: the day a nudge says the customer has until

    def starts_at(self, zone: ZoneInfo) -> datetime:
        return datetime.combine(self.first_day, time.min, tzinfo=zone)


def spend_period(campaign: SpendThreshold, local_day: date) -> SpendPeriod:
    """The period holding ``local_day``: the calendar month, the ISO week (Monday to Sunday),
    or the ``period_days`` days ending on ``local_day``."""
    if campaign.period == "month":
        first = local_day.replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        return SpendPeriod(f"{local_day:%Y-%m}", first, last)
    if campaign.period == "week":
        year, week, _ = local_day.isocalendar()
        first = local_day - timedelta(days=local_day.weekday())
        return SpendPeriod(f"{year}-W{week:02d}", first, first + timedelta(days=6))
    first = local_day - timedelta(days=campaign.period_days - 1)
    return SpendPeriod(f"{campaign.period_days}d:{local_day.isoformat()}", first, local_day)


def local_today(now: datetime, zone: ZoneInfo) -> date:
    return now.astimezone(zone).date()
