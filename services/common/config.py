"""Configuration from `SITENET_*` environment variables, loaded at start-up only."""

from __future__ import annotations

import ipaddress
import secrets
from enum import StrEnum
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceName(StrEnum):
    SITE_REGISTRY = "site-registry"
    STARTUP_TRACKER = "startup-tracker"
    NOTIFICATIONS = "notifications"


class Settings(BaseSettings):
    """Every setting of every service; each process reads the ones it needs."""

    model_config = SettingsConfigDict(env_prefix="SITENET_", extra="ignore")

    data_dir: Path = Field(Path("data"), description="SQLite databases, JWT key, broker state")
    host: str = Field("127.0.0.1", description="Address the services and embedded broker bind")
    registry_port: int = 50051
    tracker_port: int = 50052
    notifications_port: int = 50053
    broker_port: int = Field(9092, description="Port of the embedded broker")
    kafka_bootstrap: str | None = Field(
        None, description="External Kafka bootstrap servers; unset runs the embedded broker"
    )
    topic_prefix: str = Field("", description="Prefix for topic names and consumer groups")
    topic_replication_factor: int | None = Field(
        None, description="Replicas of topics a service creates; unset uses the catalog's (1)"
    )
    registry_database_url: str | None = None
    tracker_database_url: str | None = None
    notifications_database_url: str | None = None
    jwt_secret: str | None = Field(
        None, description="HS256 key; unset uses (and creates) <data_dir>/jwt-secret"
    )
    jwt_issuer: str = "sitenet"
    jwt_audience: str = "sitenet"
    jwt_previous_secrets: str = Field(
        "", description="Comma-separated HS256 keys still accepted (not signed with) in a rotation"
    )
    jwt_leeway_s: float = Field(30.0, description="Clock skew allowed when checking exp and nbf")
    jwt_jwks_file: Path | None = Field(
        None, description="JWKS of RS256 public keys; when set only RS256 tokens are accepted"
    )
    jwt_private_key_file: Path | None = Field(
        None, description="PEM RSA key that signs RS256 tokens (CLI, tests); needs the JWKS"
    )
    jwt_key_id: str | None = Field(None, description="`kid` put in RS256 tokens signed here")
    tls_cert_file: Path | None = Field(None, description="Server certificate (PEM): turns on TLS")
    tls_key_file: Path | None = Field(None, description="Private key of tls_cert_file (PEM)")
    tls_client_ca_file: Path | None = Field(
        None, description="CA that signs client certificates: turns on mutual TLS"
    )
    tls_ca_file: Path | None = Field(None, description="Clients: CA trusted for the servers")
    tls_client_cert_file: Path | None = Field(None, description="Clients: certificate for mTLS")
    tls_client_key_file: Path | None = Field(None, description="Clients: key for mTLS")
    kafka_session_timeout_s: float = Field(
        3.0, description="Consumer group session timeout; group join takes about half of it"
    )
    kafka_fetch_max_wait_ms: int = Field(20, description="Consumer fetch wait; sets latency")
    relay_poll_interval_s: float = Field(0.5, description="Outbox relay poll when not woken")
    metrics_port: int | None = Field(
        None, description="Port of the Prometheus /metrics endpoint; unset or 0 serves none"
    )
    metrics_host: str | None = Field(
        None, description="Address the metrics endpoint binds; unset uses `host`"
    )
    webhook_max_attempts: int = Field(
        8, ge=1, description="Webhook attempts per notification before it is dead-lettered")
    webhook_backoff_base_s: float = Field(
        1.0, gt=0, description="Wait before the 2nd webhook attempt; doubles each time, jittered")
    webhook_backoff_max_s: float = Field(600.0, gt=0, description="Longest wait between attempts")
    webhook_timeout_s: float = Field(5.0, gt=0, description="Timeout of one webhook POST")
    webhook_poll_interval_s: float = Field(
        0.5, gt=0, description="Webhook worker poll for due retries when not woken")
    webhook_concurrency: int = Field(16, ge=1, description="Webhook POSTs in flight at once")
    webhook_allowed_networks: str = Field(
        "127.0.0.0/8,::1/128",
        description="Non-public networks (CIDRs, comma-separated) webhooks may reach; others "
        "are refused. The default lets a receiver on this machine work; set it empty (or to "
        "your receivers' network) in production")
    alert_check_interval_s: float = Field(
        60.0, gt=0, description="How often overdue milestones and blocked study-sites are checked")
    alert_blocked_after_s: float = Field(
        14 * 86400.0, ge=0, description="A study-site blocked this long raises an alert")
    subscription_study_wait_s: float = Field(
        5.0, ge=0, description="How long a sponsor's subscription waits for a study not yet "
        "known to the notification service (it arrives by event) before it is refused")
    log_level: str = "INFO"
    log_json: bool = True
    # Essential documents (the start-up tracker's periodic check).
    document_expiry_warning_days: int = Field(
        30, ge=1, le=366, description="Remind of an approved document expiring within N days"
    )
    document_outstanding_days: int = Field(
        30, ge=1, le=3650, description="Remind of a document expected (or rejected) this long"
    )
    document_check_interval_s: float = Field(
        3600.0, gt=0, description="How often the tracker checks document expiry and reminders"
    )

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)  # ValueError says which
        return value

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"{self.host}:{self.broker_port}"

    @property
    def embedded_broker(self) -> bool:
        return self.kafka_bootstrap is None

    def port(self, service: ServiceName) -> int:
        return {
            ServiceName.SITE_REGISTRY: self.registry_port,
            ServiceName.STARTUP_TRACKER: self.tracker_port,
            ServiceName.NOTIFICATIONS: self.notifications_port,
        }[service]

    def address(self, service: ServiceName) -> str:
        return f"{self.host}:{self.port(service)}"

    def database_url(self, service: ServiceName) -> str:
        explicit = {
            ServiceName.SITE_REGISTRY: self.registry_database_url,
            ServiceName.STARTUP_TRACKER: self.tracker_database_url,
            ServiceName.NOTIFICATIONS: self.notifications_database_url,
        }[service]
        if explicit:
            return explicit
        path = self.data_dir.resolve() / f"{service.value.replace('-', '_')}.db"
        return f"sqlite+aiosqlite:///{path}"

    def signing_secret(self) -> str:
        """The HS256 key: configured, or kept in the data dir so the CLI and services agree."""
        if self.jwt_secret:
            return self.jwt_secret
        path = self.data_dir / "jwt-secret"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def consumer_group(self, service: ServiceName) -> str:
        return f"{self.topic_prefix}sitenet.{service.value}"
