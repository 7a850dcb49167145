"""Typed settings, read from the environment (and `.env`), validated at start-up.

Every variable is documented in `.env.example`; this module is the single place that
reads them. Services call `get_settings()` when they start, never at import time, so a
misconfigured production deployment refuses to start with one clear line.
"""

from __future__ import annotations

import enum
import functools
import os
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from moked.statuses import SummaryBackend

PLACEHOLDER_MARKERS = ("change-me", "changeme", "placeholder", "xxxxxxxx", "your-")


class Environment(enum.StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class TranscriberBackend(enum.StrEnum):
    AUTO = "auto"
    LOCAL = "local"
    OPENAI = "openai"


class WhisperDevice(enum.StrEnum):
    AUTO = "auto"
    """CUDA when CTranslate2 sees a GPU, else the CPU."""
    CPU = "cpu"
    CUDA = "cuda"


class ConfigurationError(RuntimeError):
    """A setting is missing or invalid; the message names the variable."""


def _is_placeholder(value: str) -> bool:
    lowered = value.lower()
    return not value or any(marker in lowered for marker in PLACEHOLDER_MARKERS)


def _cores() -> int:
    return os.cpu_count() or 1


def _bind(host: str, port: int) -> str:
    """gunicorn's host:port (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    moked_env: Environment = Environment.DEVELOPMENT
    public_host: str = "http://127.0.0.1:8080"
    http_port: int = 8080
    """nginx listens here in development (127.0.0.1); Docker maps 80/443 instead."""
    # These four defaults are also the ports inside the containers: the files that cannot
    # import this module (Dockerfiles, compose, Prometheus targets) write them literally, and
    # tests/deploy/test_ports.py holds every such literal to the default here.
    webhooks_port: int = 8001
    crm_port: int = 8002
    transcriber_metrics_port: int = 8003
    reconciler_metrics_port: int = 8004

    # gunicorn (services/*/gunicorn.conf.py), natively and in the containers.
    webhooks_bind_host: str = "127.0.0.1"
    """The webhooks listen on WEBHOOKS_BIND_HOST:WEBHOOKS_PORT (0.0.0.0 in a container)."""
    webhooks_workers: int = Field(default=0, ge=0)
    """gunicorn worker processes of the webhooks; 0 = 2 × cores."""
    webhooks_threads: int = Field(default=4, ge=1)
    webhooks_access_log: str = ""
    """gunicorn's access log of the webhooks: a file, `-` for stdout, empty for none."""
    crm_bind_host: str = "127.0.0.1"
    """The CRM listens on CRM_BIND_HOST:CRM_PORT (0.0.0.0 in a container)."""
    crm_workers: int = Field(default=0, ge=0)
    """gunicorn worker processes of the CRM; 0 = as many as cores, at least 2."""
    crm_threads: int = Field(default=4, ge=1)
    crm_access_log: str = ""
    """gunicorn's access log of the CRM: a file, `-` for stdout, empty for none."""

    database_url: str = "postgresql+psycopg2://moked@127.0.0.1:5432/moked"
    redis_url: str = "redis://127.0.0.1:6379/0"

    twilio_account_sid: str = "AC00000000000000000000000000000000"
    twilio_auth_token: SecretStr = SecretStr("")
    twilio_api_base: str = ""
    """Override of Twilio's REST base URL (a local API mock in tests); empty = Twilio's."""

    secret_key: SecretStr = SecretStr("")
    """Signs CRM sessions and CSRF tokens."""

    state_dir: Path = Path("var")
    greetings_dir: Path = Path("var/media/voice_responses")
    greeting_versions_kept: int = Field(default=3, ge=1)
    """Stored greetings kept per business besides the active one (the newest); older ones
    are deleted when a new one is stored. At least 1: an upload not made active is one."""
    recordings_dir: Path = Path("var/media/recordings")
    spool_dir: Path = Path("var/spool")
    nginx_fallback_log: Path = Path("var/log/twilio_fallback.log")
    """nginx's log of webhooks it answered with fallback TwiML; the reconciler replays it."""

    default_greeting_text: str = "שלום, הגעתם למוקד. אנא השאירו הודעה אחרי הצליל."
    thanks_text: str = "תודה, קיבלנו את ההודעה."
    no_message_text: str = "לא התקבלה הודעה. להתראות."

    transcriber_backend: TranscriberBackend = TranscriberBackend.AUTO
    transcriber_workers: int = 1
    """Worker processes per transcriber service; each holds its own copy of the model."""
    whisper_model: str = ""
    """The old name of WHISPER_MODEL_DEFAULT (used when that is empty)."""
    whisper_model_default: str = ""
    """The model for languages without their own: an installed model's name (`moked model
    list`) or a CTranslate2 model directory; empty = the embedded multilingual base."""
    whisper_model_he: str = ""
    """Hebrew's model; empty = a model installed for Hebrew (`moked model pull
    ivrit-ai/whisper-large-v3-turbo-ct2`), else OpenAI with a key, else the default."""
    whisper_model_en: str = ""
    whisper_model_ar: str = ""
    whisper_model_ru: str = ""
    hf_endpoint: str = ""
    """A Hugging Face Hub mirror for `moked model pull`; empty = the Hub (huggingface_hub's
    own HF_ENDPOINT, the same variable)."""
    expected_languages: str = "en,ar,ru"
    """Whisper codes callers may speak besides the business's own language (comma-
    separated): the language detector picks among them. A business's own list
    (`moked business add --expected-languages he,en`) replaces it."""
    whisper_compute_type: str = "int8"
    whisper_device: WhisperDevice = WhisperDevice.AUTO
    whisper_batch_size: int = Field(default=0, ge=0)
    """Speech chunks decoded together by faster-whisper's batched pipeline; 0 = 8 on CUDA
    and unbatched on the CPU (where batching buys nothing for one short voicemail)."""
    whisper_threads: int = 0
    """CPU threads for the local model; 0 = one per core."""
    openai_api_key: SecretStr = SecretStr("")
    openai_base_url: str = ""
    openai_model: str = "gpt-4o-transcribe"
    openai_timeout_seconds: float = 120.0
    openai_max_retries: int = 2
    summary_backend: SummaryBackend = SummaryBackend.OFF
    """openai: one short summary and the caller's intent per voicemail, with OPENAI_API_KEY
    (and OPENAI_BASE_URL) through the chat API; off, or no key: none, and no error."""
    summary_model: str = "gpt-4o-mini"
    summary_timeout_seconds: float = Field(default=20.0, gt=0)
    """A summary is asked for before the call's alerts go out: it must not hold them long."""

    media_allowed_hosts: str = "api.twilio.com,.twiliocdn.com"
    """Comma-separated hosts recordings may be fetched from (loopback added in development)."""
    media_max_bytes: int = 25 * 1024 * 1024
    media_timeout_seconds: float = 20.0
    recording_delete_from_twilio: bool = False

    reconcile_interval_seconds: float = 15.0
    reconcile_stale_after_seconds: float = 180.0

    # Notifications (moked.notify): when a voicemail is ready, who hears about it.
    notify_transcript_wait_seconds: float = Field(default=90.0, ge=0)
    """An alert goes out when the transcript is final or after this long without one."""
    notify_missed_grace_seconds: float = Field(default=20.0, ge=0)
    """How long after a call ends without a recording before it counts as missed: Twilio's
    recording callback may still be on its way."""
    notify_lookback_hours: float = Field(default=24.0, gt=0)
    """Calls older than this are never alerted about (a rule added today does not page
    anyone about last month; a stack down for days does not flood phones when it returns)."""
    notify_retry_hours: float = Field(default=24.0, gt=0)
    """Transient failures are retried with exponential backoff for this long."""
    notify_retry_base_seconds: float = Field(default=30.0, gt=0)
    """The first backoff; each next one doubles, up to an hour."""
    notify_attachment_max_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    """Emails attach the recording up to this size; a larger one is linked only."""
    notify_sms_segments: int = Field(default=3, ge=1, le=10)
    """An SMS is cut to fit this many segments (70 characters each in Hebrew, 153 in GSM)."""
    notify_webhook_timeout_seconds: float = Field(default=10.0, gt=0)

    # Callers (moked.callers): a number that calls SPAM_CALLS times or more within
    # SPAM_MINUTES, leaving no message, is flagged as likely spam (not blocked).
    spam_calls: int = Field(default=5, ge=2)
    spam_minutes: float = Field(default=10.0, gt=0)
    notifier_metrics_port: int = 8005
    smtp_url: str = "smtp://127.0.0.1:8025"
    """smtp://host:port (plain, development), smtp+starttls://user:pass@host:587 or
    smtps://user:pass@host:465; production requires STARTTLS or SSL."""
    mail_from: str = "Moked <moked@localhost>"
    mail_dir: Path = Path("var/mail")
    """Where the development mail sink (`make up`) stores each message as an .eml file."""
    twilio_whatsapp_from: str = ""
    """WhatsApp sender (E.164, approved by Meta through Twilio); empty = the business's
    own number."""
    twilio_sim_port: int = 8006
    """Development: the built-in simulator's Twilio REST API (Messages, Calls) listens here;
    Moked uses it when MOKED_ENV=development and no real Twilio credentials are set."""

    webhook_slow_seconds: float = 2.0
    """An answer slower than this counts as slow in the metrics (Twilio gives up at 15 s)."""

    prometheus_port: int = 9090
    prometheus_url: str = ""
    """Prometheus `moked doctor` asks for moked_twilio_errors_total; empty = the webhooks
    service's own /metrics on 127.0.0.1:WEBHOOKS_PORT."""
    prometheus_scrape_interval: str = Field(default="15s", pattern=r"^[1-9][0-9]*(ms|s|m)$")
    """How often Prometheus scrapes every target and evaluates the alert rules."""
    prometheus_retention: str = Field(default="15d", pattern=r"^[1-9][0-9]*(h|d|w|y)$")
    alertmanager_port: int = 9093
    nginx_exporter_port: int = 9113
    postgres_exporter_port: int = 9187
    redis_exporter_port: int = 9121
    metrics_bind_host: str = "127.0.0.1"
    """Where the reconciler's (and transcriber's) own /metrics server listens; 0.0.0.0 in
    containers, so Prometheus in its own container can reach it."""

    alert_email_to: str = "ops@localhost"
    alert_email_from: str = "moked-alerts@localhost"
    alert_smtp_smarthost: str = "127.0.0.1:25"
    alert_smtp_username: str = ""
    alert_smtp_password: SecretStr = SecretStr("")
    alert_smtp_require_tls: bool = False
    alert_webhook_url: str = "http://127.0.0.1:5001/"
    """Alertmanager posts every notification here as JSON (a chat or paging bridge)."""

    @property
    def is_production(self) -> bool:
        return self.moked_env is Environment.PRODUCTION

    @property
    def public_base(self) -> str:
        """PUBLIC_HOST without a trailing slash: the origin Twilio calls and fetches."""
        return self.public_host.rstrip("/")

    @property
    def webhooks_bind(self) -> str:
        return _bind(self.webhooks_bind_host, self.webhooks_port)

    @property
    def webhooks_worker_count(self) -> int:
        return self.webhooks_workers or 2 * _cores()

    @property
    def crm_bind(self) -> str:
        return _bind(self.crm_bind_host, self.crm_port)

    @property
    def crm_worker_count(self) -> int:
        return self.crm_workers or max(2, _cores())

    @property
    def last_known_answers_dir(self) -> Path:
        """Where webhooks keep each number's last answer, for callers during an outage."""
        return self.state_dir / "last-known-answers"

    def public_url(self, path: str) -> str:
        return self.public_base + "/" + path.lstrip("/")

    @property
    def effective_backend(self) -> TranscriberBackend:
        if self.transcriber_backend is TranscriberBackend.AUTO:
            if self.openai_api_key.get_secret_value():
                return TranscriberBackend.OPENAI
            return TranscriberBackend.LOCAL
        return self.transcriber_backend

    @property
    def default_expected_languages(self) -> tuple[str, ...]:
        """EXPECTED_LANGUAGES as Whisper codes."""
        codes = (c.strip().lower() for c in self.expected_languages.split(","))
        return tuple(c for c in codes if c)

    @property
    def media_hosts(self) -> frozenset[str]:
        hosts = {h.strip().lower() for h in self.media_allowed_hosts.split(",") if h.strip()}
        if not self.is_production:
            hosts |= {"127.0.0.1", "localhost", "::1"}
        return frozenset(hosts)

    @model_validator(mode="after")
    def _check(self) -> Self:
        parts = urlsplit(self.public_host)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"PUBLIC_HOST must be an absolute URL, got {self.public_host!r}")
        if parts.path not in ("", "/") or parts.query:
            raise ValueError("PUBLIC_HOST must be an origin (scheme://host[:port]) with no path")
        if not self.is_production:
            return self
        if parts.scheme != "https":
            raise ValueError("PUBLIC_HOST must be https in production")
        for name, value in (
            ("TWILIO_AUTH_TOKEN", self.twilio_auth_token.get_secret_value()),
            ("SECRET_KEY", self.secret_key.get_secret_value()),
            ("TWILIO_ACCOUNT_SID", self.twilio_account_sid.removeprefix("AC").strip("0")),
        ):
            if _is_placeholder(value):
                raise ValueError(f"{name} is missing or a placeholder; set a real secret")
        if "@" in self.database_url and ":change" in self.database_url.lower():
            raise ValueError("DATABASE_URL carries a placeholder password")
        if urlsplit(self.smtp_url).scheme not in ("smtps", "smtp+starttls"):
            raise ValueError("SMTP_URL must be smtps:// or smtp+starttls:// in production")
        return self

    def require_auth_token(self) -> str:
        token = self.twilio_auth_token.get_secret_value()
        if not token:
            raise ConfigurationError("TWILIO_AUTH_TOKEN is not set")
        return token


def default_port(name: str) -> int:
    """The default of the `name` setting (`webhooks_port` → 8001): a container's port."""
    value = Settings.model_fields[name].default
    if not name.endswith("_port") or not isinstance(value, int):
        raise KeyError(f"{name} is not a port setting")
    return value


ENV_FILE_VARIABLE = "MOKED_ENV_FILE"
"""Names the dotenv file to read (the native stack's rendered one); default `.env`."""


def load_settings(**overrides: object) -> Settings:
    """Build settings; raise ConfigurationError with one readable line when invalid."""
    env_file = os.environ.get(ENV_FILE_VARIABLE, ".env")
    try:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[arg-type,call-arg]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())).upper()
        message = str(first.get("msg", exc)).removeprefix("Value error, ")
        prefix = f"{where}: " if where else ""
        raise ConfigurationError(f"invalid configuration: {prefix}{message}") from None


@functools.cache
def get_settings() -> Settings:
    return load_settings()


def to_env(settings: Settings) -> dict[str, str]:
    """Every setting as an environment variable, secrets included (for the stack's env file)."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[name.upper()] = str(value)
    return env


def write_env_file(path: Path, env: dict[str, str]) -> None:
    def quote(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    body = "".join(f"{key}={quote(value)}\n" for key, value in sorted(env.items()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    path.chmod(0o600)
