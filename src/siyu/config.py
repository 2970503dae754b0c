"""Settings, read from SIYU_* environment variables and an optional .env file."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SQLITE_PATH = Path("var") / "siyu.db"


class Settings(BaseSettings):
    """Every tunable of siyu; each domain default of domain.md is one of these, never a constant."""

    model_config = SettingsConfigDict(env_prefix="SIYU_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default=f"sqlite:///{DEFAULT_SQLITE_PATH}",
        description="SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user@host/db",
    )
    secret_key: str = Field(default="", description="Signs session cookies; generated under ./var when empty")
    cookie_secure: bool | None = Field(
        default=None, description="Force the Secure flag on the session cookie; by default set on HTTPS"
    )
    db_pool_size: int = Field(
        default=20,
        description="PostgreSQL connections kept per process (serve runs up to 40 request threads)",
    )
    db_max_overflow: int = Field(default=10, description="Extra PostgreSQL connections under bursts")
    sqlite_cache_mb: int = Field(
        default=64, description="SQLite page cache per connection; the ingest indexes must stay in memory"
    )
    environment: str = "development"
    log_level: str = "INFO"

    # Ingestion limits, as Segment's HTTP tracking API.
    max_event_bytes: int = 32 * 1024
    max_batch_bytes: int = 500 * 1024

    # Identity resolution.
    unique_identifier_types: list[str] = Field(
        default=["member_id", "phone"],
        description="Identifier types a profile may hold one value of; a merge that would join two "
        "different values goes to the review queue",
    )
    shared_device_threshold: int = Field(
        default=3, description="An anonymousId seen with more than this many member ids stops linking"
    )
    extra_identifier_types: list[str] = Field(
        default=[], description="Identifier types accepted in context.externalIds beyond the built-in ones"
    )
    default_phone_region: str = "CN"

    # The ingest processor: the API queues batches, the processor resolves and stores them.
    ingest_processor: bool = Field(
        default=True,
        description="Run the ingest processor inside `siyu serve` (off when dedicated workers run it)",
    )
    outbox_in_serve: bool = Field(
        default=False,
        description="Also run the outbox (WeChat calls, welcome messages) inside `siyu serve`: one-process installs and the demo",
    )
    fake_wechat: bool = Field(
        default=False,
        description="Serve a local fake WeChat API at /_fake/wechat (the demo); refused in production",
    )
    ingest_process_events: int = Field(
        default=2000, description="Events resolved together in one transaction by the processor"
    )

    # WeChat and WeCom callbacks.
    wechat_callback_max_age_seconds: int = Field(
        default=300,
        description="A callback whose timestamp is further than this from now is refused as stale",
    )

    # Outbound WeChat / WeCom API (point these at a local fake in tests and in the demo).
    wechat_api_base: str = "https://api.weixin.qq.com"
    wecom_api_base: str = "https://qyapi.weixin.qq.com"
    wechat_http_timeout_seconds: float = 5.0
    wechat_max_attempts: int = Field(
        default=3, description="Tries of a call answered -1 (busy) or rate-limited"
    )
    wechat_retry_backoff_seconds: float = Field(default=0.5, description="First back-off; doubles per try")

    # Loyalty.
    loyalty_member_prefix: str = Field(default="M", description="Member numbers are this prefix and 8 digits")
    loyalty_default_tier: str = "Jade"
    loyalty_expiry_policy: str = Field(
        default="end_of_following_year",
        description="When earned points expire: end_of_following_year, or days:N",
    )
    loyalty_timezone: str = Field(
        default="Asia/Shanghai", description="The programme's calendar (expiry, days)"
    )
    loyalty_points_per_yuan: float = Field(
        default=1.0, description="Points a member earns per CNY of an order"
    )
    loyalty_return_window_days: int = Field(
        default=14, description="An order's points stay pending this long (its return window)"
    )
    loyalty_schedule_seconds: float = Field(
        default=60.0, description="How often the worker releases pending points and expires old ones"
    )

    # The brand's calendar: dates in segment rules ("between 2026-01-01 and …") are days in this zone.
    timezone: str = Field(default="Asia/Shanghai", description="The brand's calendar for dates in rules")

    # Lifecycle stages (domain.md §3): every threshold of the default rules.
    lifecycle_loyal_purchases_365: int = Field(
        default=4, description="Loyal: at least this many purchase days in the trailing 365 days"
    )
    lifecycle_loyal_top_tier: bool = Field(
        default=True, description="Loyal: a member in the top loyalty tier is Loyal whatever the count"
    )
    lifecycle_indecisive_p_alive: float = Field(
        default=0.5, description="Indecisive: a buyer whose P(alive) is below this"
    )
    lifecycle_indecisive_gap_factor: float = Field(
        default=2.0,
        description="Indecisive: days since the last purchase exceed this times the buyer's median gap",
    )
    lifecycle_intent_events: list[str] = Field(
        default=["Product Added to Wishlist", "Product Added", "Consultation Started"],
        description="High-intent actions (favourite, add to cart, consultation)",
    )
    lifecycle_indecisive_intent_actions: int = Field(
        default=3, description="Indecisive: a window customer with this many high-intent actions …"
    )
    lifecycle_intent_window_days: int = Field(default=30, description="… within this many days")
    lifecycle_lapsed_p_alive: float = Field(default=0.15, description="Lapsed: P(alive) below this")
    lifecycle_lapsed_days: int = Field(default=365, description="Lapsed: no purchase for this many days")
    lifecycle_prediction_days: int = Field(
        default=90, description="Expected purchases and CLV are predicted over this many days"
    )
    log_retention_days: int = Field(
        default=180,
        ge=1,
        description="Dead letters and outbound WeChat call logs (which hold phones and openids) are deleted after "
        "this many days (PIPL: kept no longer than needed)",
    )
    lifecycle_schedule_seconds: float = Field(
        default=300.0, description="How often the worker re-stages everyone (time alone lapses customers)"
    )
    segments_work_mem_mb: int = Field(
        default=128, description="PostgreSQL work_mem of a full segment computation (its transaction only)"
    )
    segments_schedule_seconds: float = Field(
        default=240.0,
        description="How often the worker recomputes segments whose rules depend on time (at most 5 min)",
    )

    # Messages (domain.md §5, wechat-protocol.md §3.4 and §4).
    public_url: str = Field(
        default="http://127.0.0.1:8000", description="siyu's address as customers reach it (tracked links)"
    )
    quiet_hours: str = Field(
        default="22:00-08:00",
        description="No marketing message in these local hours (the customer's time zone trait, else the "
        "brand's); a message due then waits for the end. Empty: no quiet hours",
    )
    wecom_mass_cap: str = Field(
        default="1/day",
        description="WeCom company mass messages per customer: n/day, n/week or n/month (WeChat's default "
        "is as many a month as the month has days; strict is 1/day)",
    )
    oa_kefu_window_hours: float = Field(
        default=48.0, description="Customer-service messages only this long after the customer's last message"
    )
    oa_kefu_messages: int = Field(
        default=5, description="Customer-service messages allowed per window opened by a customer message"
    )
    sms_webhook_url: str = Field(
        default="", description="The SMS provider's HTTP endpoint; siyu POSTs {to, text, id} as JSON"
    )
    messages_batch_size: int = Field(default=500, description="Messages a sender claims at a time")
    messages_lease_seconds: float = Field(
        default=300.0,
        description="A claimed message not reported sent within this is marked unknown, never resent",
    )
    messages_max_attempts: int = Field(default=6, description="Tries of a message on transient errors")
    wecom_confirm_poll_seconds: float = Field(
        default=300.0,
        description="How often the worker asks WeCom which associate-confirmed messages went out",
    )

    # Journeys.
    journeys_batch_size: int = Field(default=1000, description="Enrolments a worker steps at a time")
    journeys_schedule_seconds: float = Field(
        default=60.0, description="How often the worker enrols customers of date-triggered journeys"
    )
    journeys_retry_seconds: float = Field(
        default=300.0, description="A step that failed is tried again after this long"
    )
    journeys_trigger_max_age_hours: float = Field(
        default=24.0,
        gt=0,
        description="Events older than this (by their timestamp) enter no journey, meet no goal and end no wait",
    )

    # File imports uploaded in the console are kept here.
    import_dir: str = Field(
        default="var/imports", description="Where console uploads are saved before import"
    )

    # Worker.
    gc_threshold: int = Field(
        default=100_000,
        description="Allocations between young-generation garbage collections in the server and the worker "
        "(Python's default is 700; 0 leaves Python's settings): fewer collections, faster batches",
    )
    worker_poll_seconds: float = 1.0
    worker_batch_size: int = 100


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests clear the cache to change them)."""
    return Settings()


def secret_key(settings: Settings) -> str:
    """SIYU_SECRET_KEY, or one generated once and kept under ./var (fine for one machine)."""
    if settings.secret_key:
        return settings.secret_key
    path = Path("var") / "secret_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key
