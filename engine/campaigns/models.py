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
- ``post_purchase``: each step once per order (``order:<id>:<step>``).
- ``review_followup``: once per review (``review:<id>``).
- ``abandoned_checkout``: each step once per checkout (``checkout:<id>:<step>``).
- ``vip``: early access once per set of products, the anniversary note once a year.

Every campaign has a ``purpose``: ``marketing`` (the default: consent, caps, every rule) or
``transactional`` (no consent needed, no frequency cap, never an offer).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from engine import yamlfile
from engine.campaigns import cron
from engine.errors import CampaignError, InputError, Invalid, SegmentError, did_you_mean
from engine.money import MAX_CENTS

# Amounts a campaign gives or compares are stored in the same INTEGER cents as imported ones.
Money = Annotated[Decimal, Field(ge=0, le=MAX_CENTS // 100, max_digits=12,
                                 decimal_places=2)]
CAMPAIGN_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"
MAX_DAYS = 3650  # cooldowns: ten years is "never again"; more would overflow date arithmetic


def _duration(value: Any) -> Any:
    """"90m", "1h", "24h", "5d" (or a number of seconds) → a timedelta."""
    if isinstance(value, timedelta | int) and not isinstance(value, bool):
        return value if isinstance(value, timedelta) else timedelta(seconds=value)
    text = str(value).strip()
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if len(text) >= 2 and text[:-1].isdigit() and text[-1] in units:
        return timedelta(**{units[text[-1]]: int(text[:-1])})
    raise ValueError(f'"{value}" is not a duration; write a number and a unit: 30m, 1h, 5d')


Duration = Annotated[timedelta, BeforeValidator(_duration)]


def duration_text(value: timedelta) -> str:
    """A step's name in occasions: whole days from two days on ("5d"), else whole hours
    ("1h", "24h"), else minutes ("90m" stays "90m")."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600)):
        if seconds >= 2 * size and seconds % size == 0 or (unit == "h" and seconds == size):
            return f"{seconds // size}{unit}"
    return f"{seconds // 60}m"
# How a value that misses a pattern is described to the marketer: '"Win Back!" is not an id; …'.
ID_WORDS = "an id; use lower-case letters, digits, - and _ (like spring-sale)"


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class Coupon(Frozen):
    """A unique coupon code: percent or amount off, with optional minimum spend and expiry."""
    percent_off: int | None = Field(default=None, gt=0, le=100)
    amount_off: Money | None = None
    min_spend: Money = Decimal(0)
    valid_days: int = Field(default=30, gt=0, le=366)
    prefix: str = Field(default="", pattern=r"^[A-Z0-9]{0,12}$", description=(
        "a coupon prefix; use up to 12 capital letters and digits, like BACK"))

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
    id: str = Field(pattern=CAMPAIGN_ID, description=ID_WORDS)
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
    # Transactional mail (a shipping notice) needs no marketing consent and skips the cap, but
    # never carries an offer; marketing mail keeps every rule.
    purpose: Literal["transactional", "marketing"] = "marketing"
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
            # APScheduler says "Error validating expression '25': the last value (25) is ...".
            why = re.sub(r"^Error validating expression '[^']*': ", "", str(exc))
            raise ValueError(f'"{value}" is not a cron schedule ({why}); write five fields '
                             'like "0 9 * * 1" for Mondays at 09:00') from None
        return value

    @property
    def offer_kind(self) -> str:
        return "none"

    @property
    def transactional(self) -> bool:
        return self.purpose == "transactional"

    @model_validator(mode="after")
    def _transactional_without_offer(self) -> CampaignBase:
        if self.transactional and self.offer_kind != "none":
            raise ValueError("transactional mail never carries an offer; remove the coupon "
                             "(or gift, bundle) or set purpose: marketing")
        return self


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
    # Set by a vip campaign's early_access (load_folder): this campaign shows a product this
    # many days after it became new; the vip campaign announces it to its segment at once.
    held_back_days: int = Field(default=0, ge=0, exclude=True)


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
    id: str = Field(pattern=CAMPAIGN_ID, description=ID_WORDS)
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


class Step(Frozen):
    """One message of a flow: when it goes, and optionally its own template and subject."""
    after: Duration = timedelta(0)
    template: str | None = None
    subject: str | None = Field(default=None, min_length=1, max_length=200)


class PostPurchaseStep(Step):
    on: Literal["ordered", "shipped", "delivered"]

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        # YAML 1.1 reads the key `on` as the boolean true.
        if isinstance(data, dict) and True in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data

    @property
    def name(self) -> str:
        return self.on + (f"+{duration_text(self.after)}" if self.after else "")


class Flow(CampaignBase):
    """A kind triggered by the shop's events: a step whose moment passed more than ``max_late``
    ago (the shop's data arrived late) is skipped, never sent out of time."""
    max_late: Duration = timedelta(days=2)
    template: str = ""

    @property
    def steps_with_templates(self) -> tuple[Step, ...]:
        return tuple(getattr(self, "steps", ()))

    @model_validator(mode="after")
    def _every_step_has_a_template(self) -> Flow:
        if not self.template and any(not s.template for s in self.steps_with_templates):
            raise ValueError("give the campaign a template: or each step its own template:")
        if not self.template and not self.steps_with_templates:
            raise ValueError('"template" is required')
        return self

    def variant(self, step: str | None) -> Flow:
        """The campaign as one step's message: its template and subject if it has its own."""
        found = next((s for s in self.steps_with_templates if _step_name(s) == step), None)
        if found is None:
            return self
        return self.model_copy(update={"template": found.template or self.template,
                                       "subject": found.subject or self.subject})


def _step_name(step: Step) -> str:
    return getattr(step, "name", None) or duration_text(step.after)


class PostPurchase(Flow):
    kind: Literal["post_purchase"]
    steps: tuple[PostPurchaseStep, ...] = Field(min_length=1)
    purpose: Literal["transactional", "marketing"] = "transactional"

    @field_validator("steps")
    @classmethod
    def _unique_steps(cls, steps: tuple[PostPurchaseStep, ...]) -> tuple[PostPurchaseStep, ...]:
        names = [s.name for s in steps]
        if len(set(names)) != len(names):
            raise ValueError("two steps on the same event after the same delay; merge them")
        return steps


class RatingCondition(Frozen):
    lte: int | None = Field(default=None, ge=1, le=5)
    gte: int | None = Field(default=None, ge=1, le=5)
    eq: int | None = Field(default=None, ge=1, le=5)

    @model_validator(mode="after")
    def _one(self) -> RatingCondition:
        if sum(x is not None for x in (self.lte, self.gte, self.eq)) != 1:
            raise ValueError("rating takes one of lte, gte or eq, e.g. {lte: 2}")
        return self

    def matches(self, rating: int) -> bool:
        return ((self.lte is None or rating <= self.lte) and
                (self.gte is None or rating >= self.gte) and
                (self.eq is None or rating == self.eq))


class ReviewWhen(Frozen):
    rating: RatingCondition


class Person(Frozen):
    """A named person the email comes from; replies go to their inbox."""
    name: str = Field(min_length=1, max_length=100)
    reply_to: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ReviewFollowup(Flow):
    kind: Literal["review_followup"]
    when: ReviewWhen
    sender: Person | None = None
    coupon: Coupon | None = None
    max_late: Duration = timedelta(days=3)

    @property
    def offer_kind(self) -> str:
        return "coupon" if self.coupon else "none"


class CheckoutStep(Step):
    coupon: Coupon | None = None


class AbandonedCheckout(Flow):
    kind: Literal["abandoned_checkout"]
    steps: tuple[CheckoutStep, ...] = Field(min_length=1)
    max_late: Duration = timedelta(hours=12)

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: tuple[CheckoutStep, ...]) -> tuple[CheckoutStep, ...]:
        afters = [s.after for s in steps]
        if afters != sorted(set(afters)) or not afters[0]:
            raise ValueError("steps go later and later, each after a delay (after: 1h, "
                             "after: 24h)")
        return steps

    @property
    def offer_kind(self) -> str:
        return "coupon" if any(s.coupon for s in self.steps) else "none"


class EarlyAccess(Frozen):
    campaign: str = Field(pattern=CAMPAIGN_ID)
    days: int = Field(gt=0, le=60)


class Vip(Flow):
    kind: Literal["vip"]
    early_access: EarlyAccess | None = None
    anniversary: bool = True
    anniversary_subject: str | None = Field(default=None, min_length=1, max_length=200)
    max_late: Duration = timedelta(days=7)
    # The new_product campaign early_access names (load_folder); None: early access is off.
    early_target: Any = Field(default=None, exclude=True)

    def variant(self, step: str | None) -> Vip:
        if step == "anniversary" and self.anniversary_subject:
            return self.model_copy(update={"subject": self.anniversary_subject})
        return self

    @model_validator(mode="after")
    def _something(self) -> Vip:
        if self.early_access is None and not self.anniversary:
            raise ValueError("a vip campaign needs early_access: or anniversary: true")
        if self.segment is None:
            raise ValueError("a vip campaign needs a segment: (e.g. value_tier: A)")
        return self


FLOW_KINDS = ("post_purchase", "review_followup", "abandoned_checkout", "vip")
Campaign = (NewProduct | Winback | SpendThreshold | BundleCampaign | PostPurchase
            | ReviewFollowup | AbandonedCheckout | Vip)
KINDS: dict[str, type[CampaignBase]] = {
    "new_product": NewProduct,
    "winback": Winback,
    "spend_threshold": SpendThreshold,
    "bundle": BundleCampaign,
    "post_purchase": PostPurchase,
    "review_followup": ReviewFollowup,
    "abandoned_checkout": AbandonedCheckout,
    "vip": Vip,
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
    return with_early_access(good), problems


def with_early_access(found: list[Campaign]) -> list[Campaign]:
    """A vip campaign's ``early_access`` is the one declaration: the new_product campaign it
    names holds its products back ``days``, while the vip campaign announces them to its segment
at once (each product is announced to a customer once, so nobody gets it twice)."""
    held = {c.early_access.campaign: c for c in found
            if isinstance(c, Vip) and c.enabled and c.early_access is not None}
    found = [c.model_copy(update={"held_back_days": held[c.id].early_access.days})
             if isinstance(c, NewProduct) and c.id in held else c for c in found]
    targets = {c.id: c.model_copy(update={"held_back_days": 0})
               for c in found if isinstance(c, NewProduct) and c.id in held}
    return [c.model_copy(update={"early_target": targets.get(c.early_access.campaign)})
            if isinstance(c, Vip) and c.early_access is not None else c for c in found]


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
        for template, key in templates_of(campaign):
            if templates_dir is not None and not (Path(templates_dir) / template).is_file():
                problems.append(CampaignError(
                    f'template "{template}" not found in {templates_dir}/; create it or '
                    'fix the name', campaign.source, campaign.line_of(key)))
    by_id = {c.id: c for c in found}
    for campaign in found:
        if isinstance(campaign, Vip) and campaign.early_access is not None:
            target = by_id.get(campaign.early_access.campaign)
            if not isinstance(target, NewProduct):
                problems.append(CampaignError(
                    f'early_access names "{campaign.early_access.campaign}", which is not a '
                    "new_product campaign of this folder" + did_you_mean(
                        campaign.early_access.campaign,
                        [c.id for c in found if isinstance(c, NewProduct)]),
                    campaign.source, campaign.line_of("early_access")))
    return problems


def templates_of(campaign: Campaign) -> list[tuple[str, str]]:
    """(template, YAML key it is named under) for the campaign and each of its steps."""
    found = [(campaign.template, "template")] if campaign.template else []
    for step in getattr(campaign, "steps_with_templates", ()):
        if step.template and (step.template, "steps") not in found:
            found.append((step.template, "steps"))
    return found


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
