"""Hostile input: whatever a client sends, it gets a well-formed status, the service stays
up, and a refused call changes nothing.

Requests of every RPC are generated from the proto descriptors (hypothesis): random and
nasty strings (huge, unicode, NUL, SQL-ish), any ints and enum numbers, nested messages,
mixed with the real names of a small world so that calls reach past the parsers.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sitenet.notifications.v1 import notifications_pb2 as npb
from sitenet.registry.v1 import registry_pb2 as rpb
from sitenet.startup.v1 import startup_pb2 as spb
from tests.support.errors import field_violations
from tests.support.hostile import Fingerprint, messages
from tests.support.scenario import add_study_site, create_site, create_study, unique
from tests.support.system import RunningSystem, running_system

SERVICES = {"registry": rpb.DESCRIPTOR.services_by_name["SiteRegistry"],
            "tracker": spb.DESCRIPTOR.services_by_name["StartupTracker"],
            "notifications": npb.DESCRIPTOR.services_by_name["Notifications"]}
METHODS = [(service, m) for service, d in SERVICES.items() for m in d.methods]
NEVER = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL,
         grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.DATA_LOSS}
EXAMPLES = 30
pytestmark = [
    # The broker clients' threads use the `random` module while a request is drawn, which
    # hypothesis takes for randomness inside the strategy; the draws themselves use none.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
]
OVERSIZED = 5 * 1024 * 1024  # the services accept at most 4 MiB
# (method, status) of every generated call, to show what the barrage reached.
OUTCOMES: Counter[tuple[str, str]] = Counter()
INJECTIONS = ("'; DROP TABLE sites; --", "\"; DROP TABLE sites; --",
              "' OR 1=1 --", "x\" OR \"1\"=\"1", "%' OR '%'='")


@dataclass
class Hostile:
    system: RunningSystem
    fingerprint: Fingerprint
    names: dict[str, list[str]]  # per service: real names a request may use


@pytest.fixture(scope="module")
async def hostile(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
                  ) -> AsyncIterator[Hostile]:
    async with running_system("sqlite", kafka_bootstrap,
                              tmp_path_factory.mktemp("hostile")) as system:
        # The registry's names and the tracker's are kept apart, so that no generated
        # registry call (a suspension, say) changes the tracker's state behind its back.
        lonely = await create_site(system)
        x = await create_site(system)
        study = await create_study(system, unique("h"))
        study_site = await add_study_site(system, study.name, x.name)
        sub = await system.notifications.CreateSubscription(npb.CreateSubscriptionRequest(
            subscription=npb.Subscription(channel=npb.Channel(stream=npb.StreamChannel())),
            subscription_id=unique("sub")), metadata=system.admin)
        names = {
            "registry": [lonely.name, lonely.name.removeprefix("sites/")],
            "tracker": [study.name, study_site.name, f"{study.name}/countries/KR", x.name,
                        "site-selected", "irb-approved", "KR", "status = IN_STARTUP"],
            "notifications": [sub.name, study.name, x.name, "KR", "KR-11",
                              "sitenet.events.v1.MilestoneRecorded"],
        }
        fingerprint = Fingerprint(system)
        try:
            yield Hostile(system, fingerprint, names)
        finally:
            await fingerprint.close()


def _stub(system: RunningSystem, service: str) -> Any:
    return {"registry": system.registry, "tracker": system.tracker,
            "notifications": system.notifications}[service]


async def _status(system: RunningSystem, service: str, method: str,
                  request: Message) -> grpc.aio.AioRpcError | None:
    call = getattr(_stub(system, service), method)
    try:
        if method == "StreamNotifications":
            async for _ in call(request, metadata=system.admin, timeout=0.5):
                break
        else:
            await call(request, metadata=system.admin, timeout=30)
    except grpc.aio.AioRpcError as error:
        if method == "StreamNotifications" and \
                error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return None  # an open stream: accepted
        return error
    return None


@pytest.mark.parametrize(("service", "method"), METHODS,
                         ids=[f"{m.containing_service.name}.{m.name}" for _, m in METHODS])
@settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
async def test_any_request_gets_a_clean_status_and_a_refusal_changes_nothing(
        hostile: Hostile, service: str, method: Any, data: st.DataObject) -> None:
    request = data.draw(messages(method.input_type, hostile.names[service]), label="request")
    before = await hostile.fingerprint.take(service)
    error = await _status(hostile.system, service, method.name, request)
    OUTCOMES[method.name, "OK" if error is None else error.code().name] += 1
    if error is None:
        return
    assert error.code() not in NEVER, (error.code(), error.details(), request)
    # RESOURCE_EXHAUSTED only for what is too big to send; an error that quotes a long
    # input must still fit in the response headers a client accepts (8 KiB).
    assert error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED \
        or request.ByteSize() > 4 * 1024 * 1024, error.details()[:300]
    assert error.details(), "a refusal says why"
    if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
        assert await hostile.fingerprint.take(service) == before, (error.code(), request)


async def test_the_services_are_still_well_after_the_barrage(hostile: Hostile) -> None:
    s = hostile.system
    methods = {m for m, _ in OUTCOMES}
    print("hostile input outcomes:", sum(OUTCOMES.values()), "calls",
          dict(Counter(code for _, code in OUTCOMES.elements())))
    if len(methods) == len(METHODS):  # the whole barrage ran (not a -k selection)
        # It got past the parsers: some calls were served, others refused.
        assert sum(n for (_, code), n in OUTCOMES.items() if code == "OK") > len(METHODS)
        assert sum(n for (_, code), n in OUTCOMES.items() if code == "INVALID_ARGUMENT") \
            > len(METHODS)
    site = await create_site(s)
    assert (await s.registry.GetSite(rpb.GetSiteRequest(name=site.name),
                                     metadata=s.admin)).name == site.name
    await s.tracker.ListStudies(spb.ListStudiesRequest(), metadata=s.admin)
    await s.notifications.ListSubscriptions(npb.ListSubscriptionsRequest(), metadata=s.admin)


async def test_oversized_messages_are_refused_and_change_nothing(hostile: Hostile) -> None:
    s = hostile.system
    before = {svc: await hostile.fingerprint.take(svc) for svc in SERVICES}
    huge = "x" * OVERSIZED
    calls = [
        s.registry.CreateSite(rpb.CreateSiteRequest(site_id=unique("big"), site=rpb.Site(
            display_name_en=huge, country_code="KR")), metadata=s.admin),
        s.registry.ImportSites(rpb.ImportSitesRequest(content=huge.encode(),
                                                      format=rpb.ImportSitesRequest.CSV),
                               metadata=s.admin),
        s.registry.ListSites(rpb.ListSitesRequest(filter=huge), metadata=s.admin),
        s.tracker.CreateStudy(spb.CreateStudyRequest(study=spb.Study(title=huge)),
                              metadata=s.admin),
        s.notifications.CreateSubscription(npb.CreateSubscriptionRequest(
            subscription=npb.Subscription(display_name=huge)), metadata=s.admin),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert {svc: await hostile.fingerprint.take(svc) for svc in SERVICES} == before


@pytest.mark.parametrize("depth", [9, 50, 2000])
async def test_deeply_nested_filters_are_invalid_arguments(hostile: Hostile, depth: int
                                                           ) -> None:
    s = hostile.system
    nested = "(" * depth + 'country_code = "KR"' + ")" * depth
    study = hostile.names["tracker"][0]
    for call in (
        s.registry.ListSites(rpb.ListSitesRequest(filter=nested), metadata=s.admin),
        s.tracker.ListStudies(spb.ListStudiesRequest(filter=nested), metadata=s.admin),
        s.tracker.ListStudySites(spb.ListStudySitesRequest(parent=study, filter=nested),
                                 metadata=s.admin),
        s.registry.ListSites(rpb.ListSitesRequest(filter="NOT " * depth + "city = x"),
                             metadata=s.admin),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()


async def test_a_filter_nested_within_the_limit_is_served(hostile: Hostile) -> None:
    s = hostile.system
    nested = "(" * 7 + 'country_code = "KR"' + ")" * 7
    reply = await s.registry.ListSites(rpb.ListSitesRequest(filter=nested, page_size=1000),
                                       metadata=s.admin)
    assert reply.sites  # the limit refuses abuse, not ordinary filters


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_filter_strings_cannot_inject_sql(system: RunningSystem) -> None:
    s = system
    sites = [await create_site(s, name_en=f"Inj {i} {unique('n')}") for i in range(3)]
    study = await create_study(s, unique("inj"))
    await add_study_site(s, study.name, sites[0].name)

    async def counts() -> tuple[int, int, int]:
        a = await s.registry.ListSites(rpb.ListSitesRequest(page_size=1000), metadata=s.admin)
        b = await s.tracker.ListStudies(spb.ListStudiesRequest(page_size=1000),
                                        metadata=s.admin)
        c = await s.tracker.ListStudySites(spb.ListStudySitesRequest(parent=study.name),
                                           metadata=s.admin)
        return len(a.sites), len(b.studies), len(c.study_sites)

    before = await counts()
    assert before == (3, 1, 1)
    for text in INJECTIONS:
        quoted = text.replace("\\", "\\\\").replace('"', '\\"')
        filters = [f'city = "{quoted}"', f'therapeutic_areas:"{quoted}"', f'"{quoted}"',
                   text, f'country_code = "KR" OR city = "{quoted}"']
        for f in filters:
            try:
                reply = await s.registry.ListSites(rpb.ListSitesRequest(filter=f),
                                                   metadata=s.admin)
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (f, error.details())
            else:
                # Matched as a value, never as SQL: nothing is named like that, except
                # by the OR branch that is true for every site.
                expected = 3 if "OR city" in f else 0
                assert len(reply.sites) == expected, f
        for call in (
            s.tracker.ListStudies(spb.ListStudiesRequest(
                filter=f'sponsor_org = "{quoted}"'), metadata=s.admin),
            s.tracker.ListStudySites(spb.ListStudySitesRequest(
                parent=study.name, filter=f'country_code = "{quoted}"'), metadata=s.admin),
        ):
            reply2: Any = await call
            assert len(reply2.studies if hasattr(reply2, "studies")
                       else reply2.study_sites) == 0
    await asyncio.sleep(0)
    assert await counts() == before  # every table still there, every row still there


async def test_an_error_quoting_a_long_input_still_reaches_the_client(hostile: Hostile
                                                                      ) -> None:
    """Found by the barrage: a refusal that quoted a 5,000-character value made response
    headers larger than clients accept, so the caller saw RESOURCE_EXHAUSTED ("Stream
    removed") instead of the INVALID_ARGUMENT and its field violations."""
    s = hostile.system
    before = await hostile.fingerprint.take("tracker")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await s.tracker.CreateStudy(spb.CreateStudyRequest(study=spb.Study(
            protocol_number="P" * 5000, title="t", sponsor_org="acme",
            country_codes=["界" * 3000] * 4)), metadata=s.admin)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value)
    assert await hostile.fingerprint.take("tracker") == before

    rows = "\n".join(f"bad-{i}-{'x' * 100},,ZZ" for i in range(2000))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await s.registry.ImportSites(rpb.ImportSitesRequest(
            content=f"site_id,display_name_en,country_code\n{rows}".encode(),
            format=rpb.ImportSitesRequest.CSV), metadata=s.admin)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(caught.value)
    assert any("more problem" in d for d in violations.values())
