"""Milestone templates: the steps of site start-up and the graph of their dependencies.

The default follows the Korean parallel path: after the CDA, IRB review runs
alongside budget and contract negotiation (and the country's regulatory review),
and activation waits for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass


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
