"""Milestone templates: the steps of site start-up and the graph of their dependencies.

The default follows the Korean parallel path: after the CDA, IRB review runs
alongside budget and contract negotiation (and the country's regulatory review),
and activation waits for all of them.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace

KEY = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


@dataclass(frozen=True)
class MilestoneDefinition:
    key: str
    display_name: str
    display_name_ko: str
    prerequisites: tuple[str, ...] = ()
    target_days: int | None = None  # days after site selection it should be done by
    irb_decision: bool = False  # may be approved with conditions or rejected


@dataclass(frozen=True)
class MilestoneTemplate:
    key: str
    milestones: tuple[MilestoneDefinition, ...]

    def get(self, key: str) -> MilestoneDefinition | None:
        return next((m for m in self.milestones if m.key == key), None)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(m.key for m in self.milestones)

    def order(self, key: str) -> int:
        return self.keys.index(key)

    def dependents(self, key: str) -> tuple[str, ...]:
        return tuple(m.key for m in self.milestones if key in m.prerequisites)

    def edges(self) -> tuple[tuple[str, str], ...]:
        """(prerequisite, milestone) pairs: the steps cycle times are measured on."""
        return tuple((p, m.key) for m in self.milestones for p in m.prerequisites)


M = MilestoneDefinition

DEFAULT_TEMPLATE = MilestoneTemplate(
    key="default-startup",
    milestones=(
        M("site-selected", "Site selected", "기관 선정", (), 0),
        M("cda-executed", "CDA executed", "비밀유지계약 체결", ("site-selected",), 14),
        M("site-qualification-visit", "Site qualification visit", "기관 적격성 방문",
          ("cda-executed",), 30),
        M("budget-agreed", "Budget agreed", "예산 합의", ("site-qualification-visit",), 45),
        M("contract-executed", "Contract (CTA) executed", "임상시험계약 체결",
          ("budget-agreed",), 60),
        M("irb-submitted", "IRB submitted", "IRB 제출", ("cda-executed",), 30),
        M("irb-approved", "IRB approved", "IRB 승인", ("irb-submitted",), 60, irb_decision=True),
        M("essential-documents-complete", "Essential documents complete", "필수문서 완비",
          ("irb-approved", "contract-executed"), 75),
        M("site-initiation-visit", "Site initiation visit", "개시 방문(SIV)",
          ("irb-approved", "contract-executed"), 85),
        M("site-activated", "Site activated (greenlight)", "기관 개시(그린라이트)",
          ("irb-approved", "contract-executed", "essential-documents-complete",
           "site-initiation-visit"), 90),
        M("first-patient-in", "First patient in", "첫 환자 등록", ("site-activated",), 120),
    ),
)

# Activation waits for the country's regulatory approval (e.g. MFDS IND approval for KR),
# recorded once per study and country rather than per site.
COUNTRY_GATED = frozenset({"site-activated"})

# Spans sponsors ask for besides the template's own edges (cycle times).
HEADLINE_SPANS = (("site-selected", "site-activated"), ("site-selected", "first-patient-in"))

REGULATORS = {"KR": "MFDS", "JP": "PMDA", "US": "FDA", "CN": "NMPA", "TW": "TFDA",
              "AU": "TGA", "GB": "MHRA", "CA": "Health Canada", "SG": "HSA"}


def regulator_of(country_code: str) -> str:
    """The default regulatory authority of a country (EU members: the national authority)."""
    return REGULATORS.get(country_code, f"{country_code} national authority")


@dataclass(frozen=True)
class TemplateChoice:
    """How one study adjusts the default: skip milestones, move targets, add milestones."""

    skip: tuple[str, ...] = ()
    target_days: tuple[tuple[str, int], ...] = ()
    extra: tuple[MilestoneDefinition, ...] = ()
    skip_documents: tuple[str, ...] = ()  # essential documents this study does not ask for

    @property
    def is_default(self) -> bool:
        return not (self.skip or self.target_days or self.extra)


def build_template(choice: TemplateChoice,
                   base: MilestoneTemplate = DEFAULT_TEMPLATE) -> MilestoneTemplate:
    """The study's template, or ValueError naming what is wrong with the choice.

    A skipped milestone's prerequisites pass on to the milestones that needed it,
    so the graph stays connected (skipping the SQV makes budget wait for the CDA).
    """
    errors = []
    unknown = [k for k in choice.skip if base.get(k) is None]
    if unknown:
        errors.append(f"skip_milestones: not default milestones: {', '.join(unknown)}")
    essential = {"site-selected", "site-activated"} & set(choice.skip)
    if essential:
        errors.append(f"skip_milestones: {', '.join(sorted(essential))} cannot be skipped")
    skipped = set(choice.skip)

    def inherited(prereqs: tuple[str, ...]) -> tuple[str, ...]:
        out: list[str] = []
        for p in prereqs:
            definition = base.get(p)
            if p in skipped and definition is not None:
                out.extend(inherited(definition.prerequisites))
            else:
                out.append(p)
        return tuple(dict.fromkeys(out))

    milestones = [replace(m, prerequisites=inherited(m.prerequisites))
                  for m in base.milestones if m.key not in skipped]
    for extra in choice.extra:
        keys = [m.key for m in milestones]
        if extra.key in keys or base.get(extra.key) is not None:
            errors.append(f"extra_milestones: {extra.key!r} already exists")
            continue
        if not KEY.match(extra.key):
            errors.append(f"extra_milestones: {extra.key!r} must be lower-case letters, digits "
                          "and '-'")
            continue
        if not extra.display_name.strip():
            errors.append(f"extra_milestones: {extra.key!r} needs a display_name")
        missing = [p for p in extra.prerequisites if p not in keys]
        if missing or not extra.prerequisites:
            errors.append(f"extra_milestones: {extra.key!r} needs prerequisites among earlier "
                          f"milestones (unknown: {', '.join(missing) or 'none given'})")
            continue
        at = max(keys.index(p) for p in extra.prerequisites) + 1
        milestones.insert(at, extra)
    keys = [m.key for m in milestones]
    targets = dict(choice.target_days)
    for key, days in targets.items():
        if key not in keys:
            errors.append(f"target_days: {key!r} is not a milestone of this study")
        elif not 0 <= days <= 3650:
            errors.append(f"target_days: {key} must be 0 to 3650 days, not {days}")
    if errors:
        raise ValueError("; ".join(errors))
    milestones = [replace(m, target_days=targets.get(m.key, m.target_days)) for m in milestones]
    key = base.key if choice.is_default else f"{base.key}+custom"
    return MilestoneTemplate(key=key, milestones=tuple(milestones))


@functools.lru_cache(maxsize=256)
def template_for(choice: TemplateChoice) -> MilestoneTemplate:
    """`build_template` on the default template, remembered: every milestone a study
    records needs its template, and templates are immutable."""
    return build_template(choice)
