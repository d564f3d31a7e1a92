"""Who may do what: THE access-control table of sitenet.

One row per RPC of every service, one column per kind of caller; each cell is the
status code the caller gets. tests/integration/test_access_matrix.py calls every RPC
as every caller against a small world and checks the answers against this table, and
fails when the services have an RPC the table does not list (it reads the methods from
the proto descriptors). docs/access-control.md is rendered from it:

    .venv/bin/python -m tests.support.access > docs/access-control.md

The world the requests run in:
- sites X and Y in the registry (both in KR);
- study S of organisation A with X and Y in it; a subscription of sponsor A on S;
- calls that change something get fresh resources of their own (a new site, a new
  study of organisation A, a new study-site of X in a new study, a new subscription
  of sponsor A), so the order of the calls does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

# The callers, in column order.
CALLERS: tuple[str, ...] = ("admin", "sponsor_a", "sponsor_b", "site_x", "site_y", "ops",
                            "expired", "foreign_key", "no_token")
CALLER_TEXT: dict[str, str] = {
    "admin": "admin",
    "sponsor_a": "sponsor of org A (owns study S)",
    "sponsor_b": "sponsor of org B",
    "site_x": "site user of site X",
    "site_y": "site user of site Y",
    "ops": "ops",
    "expired": "expired token (admin claims)",
    "foreign_key": "token signed with another key (admin claims)",
    "no_token": "no token",
}

OK = grpc.StatusCode.OK
PD = grpc.StatusCode.PERMISSION_DENIED
NF = grpc.StatusCode.NOT_FOUND
UA = grpc.StatusCode.UNAUTHENTICATED
_SHORT = {OK: "OK", PD: "PERMISSION_DENIED", NF: "NOT_FOUND", UA: "UNAUTHENTICATED"}

# No valid token: nothing is served, whatever the RPC.
_NOBODY = (UA, UA, UA)


@dataclass(frozen=True)
class Rule:
    call: str  # what the request of the matrix test asks
    expect: tuple[grpc.StatusCode, ...]  # one code per CALLERS entry

    def code(self, caller: str) -> grpc.StatusCode:
        return self.expect[CALLERS.index(caller)]


def _row(call: str, admin: grpc.StatusCode, sponsor_a: grpc.StatusCode,
         sponsor_b: grpc.StatusCode, site_x: grpc.StatusCode, site_y: grpc.StatusCode,
         ops: grpc.StatusCode) -> Rule:
    return Rule(call, (admin, sponsor_a, sponsor_b, site_x, site_y, ops, *_NOBODY))


#                                                          admin spA  spB  siteX siteY ops
ACCESS: dict[str, Rule] = {
    # --- sitenet.registry.v1.SiteRegistry: read by every role, changed by admin only ---
    "sitenet.registry.v1.SiteRegistry/CreateSite":
        _row("create a new site", OK, PD, PD, PD, PD, PD),
    "sitenet.registry.v1.SiteRegistry/GetSite":
        _row("get site X", OK, OK, OK, OK, OK, OK),
    "sitenet.registry.v1.SiteRegistry/ListSites":
        _row("list sites", OK, OK, OK, OK, OK, OK),
    "sitenet.registry.v1.SiteRegistry/UpdateSite":
        _row("update a new site's city", OK, PD, PD, PD, PD, PD),
    "sitenet.registry.v1.SiteRegistry/SuspendSite":
        _row("suspend a new site", OK, PD, PD, PD, PD, PD),
    "sitenet.registry.v1.SiteRegistry/ReactivateSite":
        _row("reactivate a new suspended site", OK, PD, PD, PD, PD, PD),
    "sitenet.registry.v1.SiteRegistry/CloseSite":
        _row("close a new site", OK, PD, PD, PD, PD, PD),
    "sitenet.registry.v1.SiteRegistry/ImportSites":
        _row("import one new site (JSONL)", OK, PD, PD, PD, PD, PD),
    "sitenet.registry.v1.SiteRegistry/ListSiteAuditEntries":
        _row("list the audit entries of site X", OK, OK, OK, OK, OK, OK),
    # --- sitenet.startup.v1.StartupTracker: a study is its sponsor's; a study-site is
    # also its site's; another's study is NOT_FOUND (never a hint it exists) ---
    "sitenet.startup.v1.StartupTracker/CreateStudy":
        _row("create a new study of org A", OK, OK, PD, PD, PD, PD),
    "sitenet.startup.v1.StartupTracker/GetStudy":
        _row("get study S", OK, OK, NF, OK, OK, OK),
    "sitenet.startup.v1.StartupTracker/ListStudies":
        _row("list studies (each sees only its own)", OK, OK, OK, OK, OK, OK),
    "sitenet.startup.v1.StartupTracker/AddStudySite":
        _row("add site X to a new study of org A", OK, OK, NF, NF, NF, PD),
    "sitenet.startup.v1.StartupTracker/GetStudySite":
        _row("get study-site S/X", OK, OK, NF, OK, NF, OK),
    "sitenet.startup.v1.StartupTracker/ListStudySites":
        _row("list the study-sites of S (a site user sees its own)", OK, OK, NF, OK, OK, OK),
    "sitenet.startup.v1.StartupTracker/RecordMilestone":
        _row("record site-selected on X in a new study of org A", OK, OK, NF, OK, NF, PD),
    "sitenet.startup.v1.StartupTracker/UpdateStudy":
        _row("change the title of a new study of org A", OK, OK, NF, NF, NF, PD),
    "sitenet.startup.v1.StartupTracker/RecordCountryApproval":
        _row("record KR approval of a new study of org A", OK, OK, NF, NF, NF, PD),
    "sitenet.startup.v1.StartupTracker/ListMilestoneHistory":
        _row("list the milestone history of S/X", OK, OK, NF, OK, NF, OK),
    "sitenet.startup.v1.StartupTracker/GetActivationSummary":
        _row("activation summary of S (a site user's: its own sites)", OK, OK, NF, OK, OK, OK),
    "sitenet.startup.v1.StartupTracker/ListSiteDocuments":
        _row("list the document checklist of S/X", OK, OK, NF, OK, NF, OK),
    "sitenet.startup.v1.StartupTracker/RecordDocumentStatus":
        _row("record X's signed protocol page RECEIVED in a new study of org A",
             OK, OK, NF, OK, NF, PD),
    "sitenet.startup.v1.StartupTracker/GetDocumentSummary":
        _row("document summary of S", OK, OK, NF, OK, OK, OK),
    # --- sitenet.notifications.v1.Notifications: a subscription is its owner's (and
    # admin's); a caller subscribes and streams only what it may read ---
    "sitenet.notifications.v1.Notifications/CreateSubscription":
        _row("subscribe to S at X", OK, OK, PD, OK, PD, OK),
    "sitenet.notifications.v1.Notifications/GetSubscription":
        _row("get sponsor A's subscription", OK, OK, NF, NF, NF, NF),
    "sitenet.notifications.v1.Notifications/ListSubscriptions":
        _row("list subscriptions (each sees its own)", OK, OK, OK, OK, OK, OK),
    "sitenet.notifications.v1.Notifications/DeleteSubscription":
        _row("delete a new subscription of sponsor A", OK, OK, NF, NF, NF, NF),
    "sitenet.notifications.v1.Notifications/StreamNotifications":
        _row("stream S at X (no subscription)", OK, OK, PD, OK, PD, OK),
    "sitenet.notifications.v1.Notifications/ListNotifications":
        _row("list notifications of sponsor A's subscription", OK, OK, NF, NF, NF, NF),
    "sitenet.notifications.v1.Notifications/ListDeliveries":
        _row("list deliveries of a new webhook subscription of sponsor A", OK, OK, NF, NF, NF, NF),
}


def render() -> str:
    """The table as Markdown: docs/access-control.md."""
    lines = [
        "# Access control",
        "",
        "<!-- Generated from tests/support/access.py by "
        "`.venv/bin/python -m tests.support.access > docs/access-control.md`; "
        "do not edit by hand. -->",
        "",
        "Who may call what, and what anybody else gets. This table is checked: "
        "`tests/integration/test_access_matrix.py` calls every RPC of every service as "
        "every caller below and compares the status with the table, and fails when a "
        "service has an RPC the table does not list.",
        "",
        "The world of the test: sites X and Y; study S of organisation A with X and Y in "
        "it; a subscription of sponsor A on S. Calls that change something act on fresh "
        "resources (a new site, a new study of A, site X in a new study of A, a new "
        "subscription of sponsor A).",
        "",
        "Callers: " + "; ".join(f"`{c}` = {CALLER_TEXT[c]}" for c in CALLERS) + ".",
        "",
        "`NOT_FOUND` is the answer for a resource the caller may not see (it gives no hint "
        "that it exists); `PERMISSION_DENIED` for one it may see but not change, or for "
        "a request outside its scope.",
        "",
        "| RPC | request | " + " | ".join(f"`{c}`" for c in CALLERS) + " |",
        "| --- | --- | " + " | ".join("---" for _ in CALLERS) + " |",
    ]
    for method, rule in ACCESS.items():
        service, name = method.rsplit("/", 1)
        cells = " | ".join(_SHORT[c] for c in rule.expect)
        lines.append(f"| `{service.rsplit('.', 1)[-1]}.{name}` | {rule.call} | {cells} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
