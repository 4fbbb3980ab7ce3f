"""config.yaml → one frozen ``Settings`` object.

Owns: reading the file (with yamlfile's limits on size, nesting and aliases), ``${VAR}`` /
``${VAR:-default}`` interpolation from the environment (how secrets get in: they are never
written in the file), validation with file:line errors, and the
precedence of the database URL (``--db`` > ``RETAIN_DATABASE_URL`` > ``database.url`` > default).
Must not open connections.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from engine import yamlfile
from engine.errors import ConfigError, InputError
from engine.money import DEFAULT_CURRENCY, DEFAULT_LOCALE, Money, check_locale

DEFAULT_CONFIG = "config.yaml"
DEFAULT_DATABASE_URL = "sqlite:///retain.db"

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Store(Frozen):
    name: str
    url: str
    postal_address: str = Field(min_length=5)
    currency: str = Field(default=DEFAULT_CURRENCY, pattern=r"^[A-Z]{3}$",
                          description="a currency code; write three capitals like EUR")
    # How amounts are written in emails: "en_IE" → "€1,234.50", "fr_FR" → "1 234,50 €".
    locale: str = DEFAULT_LOCALE
    timezone: str = "UTC"

    @field_validator("locale")
    @classmethod
    def _known_locale(cls, value: str) -> str:
        return check_locale(value)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f'"{value}" is not a time zone name like "Europe/Paris"') from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def money(self, cents: int) -> Money:
        """``cents`` of the store's currency, printed in the store's locale."""
        return Money(cents, self.currency, self.locale)


class Database(Frozen):
    url: str = DEFAULT_DATABASE_URL


class DormancyDays(Frozen):
    """Days since the last order at which a customer becomes drowsy, half asleep, sleeping."""
    drowsy: int = Field(default=60, gt=0)
    half_asleep: int = Field(default=120, gt=0)
    sleeping: int = Field(default=240, gt=0)

    @field_validator("sleeping")
    @classmethod
    def _ascending(cls, value: int, info: Any) -> int:
        drowsy, half = info.data.get("drowsy"), info.data.get("half_asleep")
        if drowsy is not None and half is not None and not drowsy < half < value:
            raise ValueError("needs drowsy < half_asleep < sleeping")
        return value


class ValueTiers(Frozen):
    """Share of buyers (by spend) in tier A, and in tier B; the rest are C."""
    a: float = Field(default=0.2, gt=0, lt=1)
    b: float = Field(default=0.3, gt=0, lt=1)

    @field_validator("b")
    @classmethod
    def _fits(cls, value: float, info: Any) -> float:
        a = info.data.get("a")
        if a is not None and a + value > 1:
            raise ValueError("a + b must be at most 1")
        return value


class Lifecycle(Frozen):
    formation_orders: int = Field(default=2, ge=2)
    stable_orders: int = Field(default=4, ge=3)
    decline_recency_days: int = Field(default=60, gt=0)


class Metrics(Frozen):
    dormancy_days: DormancyDays = DormancyDays()
    value_tiers: ValueTiers = ValueTiers()
    lifecycle: Lifecycle = Lifecycle()


class ChurnTiers(Frozen):
    """Churn risk from which a buyer's churn tier is medium, and high (below medium: low)."""
    medium: float = Field(default=0.5, gt=0, lt=1)
    high: float = Field(default=0.7, gt=0, lt=1)

    @field_validator("high")
    @classmethod
    def _above_medium(cls, value: float, info: Any) -> float:
        medium = info.data.get("medium")
        if medium is not None and not medium < value:
            raise ValueError("needs medium < high")
        return value


class Predict(Frozen):
    """Per-customer predictions (the ``predict`` extra): churn risk over the next horizon."""
    horizon_days: int = Field(default=90, ge=7, le=730)
    churn_tiers: ChurnTiers = ChurnTiers()


class Sender(Frozen):
    from_address: str = Field(alias="from", pattern=r"^[^@\s]+@[^@\s]+$",
                              description="an email address, like hello@your-shop.example")
    from_name: str = ""
    reply_to: str | None = None
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Smtp(Frozen):
    host: str = "127.0.0.1"
    port: int = Field(default=25, gt=0, lt=65536)
    security: Literal["none", "starttls", "ssl"] = "none"
    username: str | None = None
    password: SecretStr | None = None
    max_connections: int = Field(default=4, ge=1, le=512)  # for the whole fleet of workers
    rate_per_second: float = Field(default=50, gt=0)
    timeout_seconds: float = Field(default=30, gt=0)


class Unsubscribe(Frozen):
    url: str = "https://example.invalid/unsubscribe"
    mailto: str | None = None
    secret: SecretStr | None = None


class Delivery(Frozen):
    """Retries, back-off and the safety brakes of a run."""
    # A delivery is given up after the server itself refused it this many times; waiting on a
    # back-off of ours spends no attempt.
    max_attempts: int = Field(default=5, ge=1, le=50)
    retry_base_seconds: float = Field(default=60, ge=0)
    retry_cap_seconds: float = Field(default=6 * 3600, ge=0)
    # A refused connection, a 421 or a refused AUTH/MAIL: no new connection for this long,
    # doubling while it goes on, up to the cap.
    connection_backoff_seconds: float = Field(default=1, gt=0)
    connection_backoff_cap_seconds: float = Field(default=300, ge=0)
    # A recipient domain that answered 450/451/452 this many times in a row (nothing accepted
    # for it in between) waits domain_backoff_seconds, doubling up to the cap. One recipient's
    # 451 only retries that message.
    domain_backoff_after: int = Field(default=5, ge=1)
    domain_backoff_seconds: float = Field(default=30, ge=0)
    domain_backoff_cap_seconds: float = Field(default=900, ge=0)
    # Transient failures falling due within this many seconds are retried in the same run.
    retry_within_run_seconds: float = Field(default=120, ge=0)
    # smtp: send through the smtp: section; file: write each message as an .eml file into
    # paths.outbox instead (to look at a run's mail locally, without a mail server).
    transport: Literal["smtp", "file"] = "smtp"
    max_bounce_rate: float = Field(default=0.05, gt=0, le=1)
    bounce_rate_min_sends: int = Field(default=50, ge=1)
    return_path: str | None = None  # envelope sender for bounces; default: sender.from


class FrequencyCap(Frozen):
    """At most ``count`` marketing emails per customer in any ``days``, across campaigns."""
    count: int = Field(gt=0)
    days: int = Field(gt=0, le=365)


class Limits(Frozen):
    max_emails_per_customer: FrequencyCap | None = None


_HOUR_WORDS = 'a time of day; write it in quotes as HH:MM, like "21:00"'


class QuietHours(Frozen):
    """No email between ``start`` and ``end`` in the customer's own time zone (HH:MM)."""
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description=_HOUR_WORDS)
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description=_HOUR_WORDS)

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("quiet_hours start and end are equal; remove the section instead")
        return self


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> Any:
    """"26h", "15m", "90s", "2d" (or a number of seconds) → timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f'"{value}" is not a duration; write it like 90s, 15m, 26h or 2d')
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
SOURCE_NAME = r"^[a-z0-9][a-z0-9_-]*$"


class Data(Frozen):
    """How old the shop's data may be before campaigns wait (only with ``sources:``)."""
    max_age: Duration = timedelta(hours=26)


class FolderSource(Frozen):
    """A drop folder: CSV files named after their kind, imported in name order."""
    name: str = Field(pattern=SOURCE_NAME)
    kind: Literal["folder"]
    path: str
    sync_every: Duration = timedelta(minutes=5)
    settle_seconds: float = Field(default=1.0, ge=0, le=60)  # between the two looks at a file


class ShopifySource(Frozen):
    """Shopify webhooks, posted to ``retain serve`` at /webhooks/shopify."""
    name: str = Field(pattern=SOURCE_NAME)
    kind: Literal["shopify_webhooks"]
    secret: SecretStr
    sync_every: Duration = timedelta(minutes=5)  # re-applies deliveries that failed to apply


class SqlQueries(Frozen):
    """One read-only SELECT per kind, with a :since parameter on its updated-at column."""
    customers: str | None = None
    products: str | None = None
    orders: str | None = None
    fulfillments: str | None = None
    reviews: str | None = None
    checkouts: str | None = None

    @field_validator("*")
    @classmethod
    def _a_select(cls, value: str | None) -> str | None:
        if value is None:
            return value
        head = value.lstrip().split(None, 1)[0].lower() if value.strip() else ""
        if head not in ("select", "with"):
            raise ValueError("must be a SELECT (or WITH ... SELECT) query: sources are read "
                             "only")
        if ":since" not in value:
            raise ValueError("must compare its updated-at column with :since "
                             "(WHERE updated_at > :since), so each sync reads only what changed")
        return value


class SqlSource(Frozen):
    """The shop's own database, read with one query per kind."""
    name: str = Field(pattern=SOURCE_NAME)
    kind: Literal["sql"]
    url: SecretStr
    queries: SqlQueries
    timezone: str | None = None  # of naive timestamps in the shop's database; default: store's
    overlap: Duration = timedelta(minutes=5)  # re-read before the watermark (late commits)
    sync_every: Duration = timedelta(minutes=15)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return value if value is None else Store._known_zone(value)


Source = Annotated[FolderSource | ShopifySource | SqlSource, Field(discriminator="kind")]


class Utm(Frozen):
    """The campaign tags added to every link of an email: utm_source and utm_medium from here,
    utm_campaign the campaign's id, utm_content one per link (from its text)."""
    source: str = Field(default="newsletter", min_length=1)
    medium: str = Field(default="email", min_length=1)


class Links(Frozen):
    """Where an email's buttons lead, and the tags its links carry."""
    # The shop's cart link with a bundle's items, e.g. https://shop.example/cart?add={skus}
    # ({skus}: the items' skus, comma-separated); without it a bundle links to its products.
    cart_url: str | None = None
    utm: Utm | None = Utm()  # `utm: false` sends links untagged

    @field_validator("cart_url")
    @classmethod
    def _has_skus(cls, value: str | None) -> str | None:
        if value is not None and "{skus}" not in value:
            raise ValueError("cart_url needs {skus} where the bundle's skus go, like "
                             "https://shop.example/cart?add={skus}")
        return value

    @field_validator("utm", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        return None if value is False else value

    def cart(self, skus: list[str] | tuple[str, ...]) -> str | None:
        """The cart link holding ``skus``, if the shop's pattern is known."""
        if self.cart_url is None:
            return None
        return self.cart_url.replace("{skus}", quote(",".join(skus), safe=","))


class Reporting(Frozen):
    """How ``retain report`` attributes orders: within N days after a delivery."""
    window_days: int = Field(default=5, ge=1, le=365)


class Paths(Frozen):
    """Folders, relative to config.yaml's folder unless absolute."""
    campaigns: str = "campaigns"
    templates: str = "templates"
    outbox: str = "outbox"


class Settings(Frozen):
    store: Store
    database: Database = Database()
    metrics: Metrics = Metrics()
    predict: Predict = Predict()
    sender: Sender | None = None
    smtp: Smtp = Smtp()
    unsubscribe: Unsubscribe = Unsubscribe()
    delivery: Delivery = Delivery()
    limits: Limits = Limits()
    quiet_hours: QuietHours | None = None
    links: Links = Links()
    paths: Paths = Paths()
    sources: list[Source] = []
    data: Data = Data()
    reporting: Reporting = Reporting()
    # Where the file was read from; relative paths (SQLite files) resolve against its folder.
    source: str = Field(default=DEFAULT_CONFIG, exclude=True)

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, value: list[Any]) -> list[Any]:
        names = [source.name for source in value]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f'two sources are named "{name}"; give each its own name')
        return value

    @property
    def base_dir(self) -> Path:
        return Path(self.source).resolve().parent

    def folder(self, name: str) -> Path:
        """A folder from ``paths:`` ("campaigns", "templates", "outbox"), resolved."""
        return self.base_dir / getattr(self.paths, name)


def _interpolate(node: Any, path: Path, environ: Mapping[str, str], key: str = "") -> Any:
    """Replace ${VAR} references in every string, keeping the Located* containers."""
    if isinstance(node, yamlfile.LocatedDict):
        for k in list(node):
            try:
                node[k] = _interpolate(node[k], path, environ, f"{key}.{k}" if key else str(k))
            except _MissingVariable as missing:
                raise ConfigError(
                    f'"{key + "." if key else ""}{k}" refers to the environment variable '
                    f'{missing.name}, which is not set: export {missing.name}=... before running',
                    path, node.lines[k][0]) from None
        return node
    if isinstance(node, yamlfile.LocatedList):
        for i, item in enumerate(node):
            node[i] = _interpolate(item, path, environ, f"{key}[{i}]")
        return node
    if isinstance(node, str):
        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            raise _MissingVariable(name)
        return _ENV_REF.sub(substitute, node)
    return node


class _MissingVariable(Exception):
    def __init__(self, name: str):
        self.name = name


def load(path: str | Path | None = None, database_url: str | None = None,
         environ: Mapping[str, str] | None = None) -> Settings:
    """Load and validate config.yaml. ``database_url`` (from ``--db``) wins over everything."""
    environ = os.environ if environ is None else environ
    path = Path(path or environ.get("RETAIN_CONFIG") or DEFAULT_CONFIG)
    if not path.exists():
        raise ConfigError("config file not found: pass --config PATH, set RETAIN_CONFIG, "
                          "or copy the repository's config.yaml here", path)
    try:
        raw = yamlfile.load(path)
    except InputError as exc:
        raise ConfigError(exc.message, path, exc.line) from None
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping of sections (store:, database:, ...)", path,
                          getattr(raw, "start", (1, 1))[0])
    raw = _interpolate(raw, path, environ)
    try:
        settings = Settings.model_validate({**raw, "source": str(path)})
    except ValidationError as exc:
        problems = yamlfile.problems_from_validation(exc, raw, path, Settings)
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(first.message + more, path, first.line) from None
    url = database_url or environ.get("RETAIN_DATABASE_URL")
    if not url:
        url = resolve_sqlite_path(settings.database.url, path)
    return settings.model_copy(update={"database": Database(url=url)})


def resolve_sqlite_path(url: str, config_path: Path) -> str:
    """Make config.yaml's relative SQLite path relative to its folder, not the caller's cwd.

    The scheduler runs unattended from wherever its service manager starts it; the database it
    opens must not depend on that. (``--db`` and RETAIN_DATABASE_URL are taken as given.)
    """
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == "sqlite:///:memory:":
        return url
    file = url[len(prefix):]
    if file.startswith("/"):
        return url
    return prefix + str(config_path.resolve().parent / file)
