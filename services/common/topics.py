"""The topic catalog: every topic, declared once.

Services create their topics from here at start, the Kubernetes `KafkaTopic`
resources are checked against it, and the README's event catalog is generated
from it (`sitenet catalog`), so none of them can drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    owner: str  # the only service that writes it
    key: str  # what the record key is, in words
    partitions: int
    config: dict[str, str]
    event_types: tuple[str, ...]
    description: str
    replication_factor: int = 1  # raised for real clusters by the deployment, not here
    consumers: tuple[str, ...] = field(default=())


SITES = TopicSpec(
    name="sitenet.registry.site.v1",
    owner="site-registry",
    key="site id (e.g. `snuh`): a site's events stay in order",
    partitions=3,
    # Every event carries the whole site, so the latest per key is enough to
    # rebuild a replica; compaction keeps the topic bounded.
    config={"cleanup.policy": "compact", "min.compaction.lag.ms": str(DAY_MS)},
    event_types=("sitenet.events.v1.SiteRegistered", "sitenet.events.v1.SiteUpdated",
                 "sitenet.events.v1.SiteStatusChanged"),
    description="Changes to the site registry (event-carried state of each site)",
    consumers=("startup-tracker", "notifications"),
)

STUDIES = TopicSpec(
    name="sitenet.startup.study.v1",
    owner="startup-tracker",
    key="study id (e.g. `onc-301`): a study's events stay in order",
    partitions=6,
    config={"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)},
    event_types=(
        "sitenet.events.v1.StudyCreated",
        "sitenet.events.v1.StudySiteAdded",
        "sitenet.events.v1.MilestoneRecorded",
        "sitenet.events.v1.StudyUpdated",
        "sitenet.events.v1.CountryApprovalRecorded",
        "sitenet.events.v1.StudySiteActivated",
        "sitenet.events.v1.StudySiteFlagged",
        "sitenet.events.v1.DocumentStatusRecorded",
        "sitenet.events.v1.GreenlightChanged",
        "sitenet.events.v1.DocumentReminder",
    ),
    description="Study start-up: studies, their sites, every milestone and essential "
                "document recorded",
    consumers=("notifications",),
)

CATALOG: tuple[TopicSpec, ...] = (SITES, STUDIES)


def by_name(name: str) -> TopicSpec:
    for spec in CATALOG:
        if spec.name == name:
            return spec
    raise KeyError(name)


def catalog_markdown() -> str:
    """The event catalog as a Markdown table, for the README."""
    lines = [
        "| topic | key | partitions | retention | event types (`ce_type`) | written by | read by |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for spec in CATALOG:
        if spec.config.get("cleanup.policy") == "compact":
            retention = "compacted"
        else:
            retention = f"{int(spec.config['retention.ms']) // DAY_MS} days"
        types = "<br>".join(f"`{t}`" for t in spec.event_types)
        lines.append(
            f"| `{spec.name}` | {spec.key} | {spec.partitions} | {retention} | {types} "
            f"| {spec.owner} | {', '.join(spec.consumers)} |"
        )
    return "\n".join(lines)
