"""What outside tools rely on: health and reflection without a token, rich errors
with field details for bad input, and nothing changed by a rejected call."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2
from google.rpc import error_details_pb2
from google.type import date_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from sitenet.registry.v1 import registry_pb2
from sitenet.startup.v1 import startup_pb2
from tests.support.errors import field_violations
from tests.support.scenario import create_site, create_study, day, unique
from tests.support.system import RunningSystem

SERVICES = {
    "registry": "sitenet.registry.v1.SiteRegistry",
    "tracker": "sitenet.startup.v1.StartupTracker",
    "notifications": "sitenet.notifications.v1.Notifications",
}


def _port(system: RunningSystem, which: str) -> int:
    app = {"registry": system.registry_app, "tracker": system.tracker_app,
           "notifications": system.notifications_app}[which]
    return app.server.port




@pytest.mark.parametrize("which", list(SERVICES))
async def test_health_and_reflection_need_no_token(shared_system: RunningSystem,
                                                   which: str) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{_port(shared_system, which)}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICES[which]):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                    reflection_pb2.ServerReflectionRequest(
                        file_containing_symbol="sitenet.events.v1.MilestoneRecorded")]
        replies = [r async for r in reflection.ServerReflectionInfo(iter(requests))]
        listed = {s.name for s in replies[0].list_services_response.service}
        assert SERVICES[which] in listed
        assert "grpc.health.v1.Health" in listed
        files = [descriptor_pb2.FileDescriptorProto.FromString(raw)
                 for raw in replies[1].file_descriptor_response.file_descriptor_proto]
        # grpcurl renders a notification's Any through this.
        assert any(f.package == "sitenet.events.v1" for f in files)


async def test_bad_site_gets_every_field_violation_and_creates_nothing(
        shared_system: RunningSystem) -> None:
    system = shared_system
    site_id = unique("bad")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.registry.CreateSite(registry_pb2.CreateSiteRequest(
            site_id=site_id,
            site=registry_pb2.Site(display_name_en="", country_code="XX", region_code="KR-99",
                                   city="x" * 201, therapeutic_areas=["Not A Tag!"])),
            metadata=system.admin)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(caught.value)
    assert {"site.display_name_en", "site.country_code", "site.city",
            "site.therapeutic_areas"} <= set(violations)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.registry.GetSite(registry_pb2.GetSiteRequest(name=f"sites/{site_id}"),
                                      metadata=system.admin)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(("request_", "field"), [
    (registry_pb2.CreateSiteRequest(site_id="Bad_Id", site=registry_pb2.Site(
        display_name_en="X", country_code="KR")), "site_id"),
    (registry_pb2.GetSiteRequest(name="site/abc"), "name"),
    (registry_pb2.ListSitesRequest(page_size=-1), "page_size"),
    (registry_pb2.ListSitesRequest(filter="country_code = "), "filter"),
    (registry_pb2.ListSitesRequest(page_token="garbage!"), "page_token"),
])
async def test_registry_bad_input_names_the_field(shared_system: RunningSystem,
                                                  request_: object, field: str) -> None:
    method = {registry_pb2.CreateSiteRequest: shared_system.registry.CreateSite,
              registry_pb2.GetSiteRequest: shared_system.registry.GetSite,
              registry_pb2.ListSitesRequest: shared_system.registry.ListSites}[type(request_)]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await method(request_, metadata=shared_system.admin)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(caught.value)


async def test_milestone_bad_input_changes_nothing(shared_system: RunningSystem) -> None:
    from tests.support.scenario import add_study_site

    system = shared_system
    site = await create_site(system)
    study = await create_study(system)
    study_site = await add_study_site(system, study.name, site.name)
    cases = [
        (startup_pb2.RecordMilestoneRequest(study_site=study_site.name, milestone="nope",
                                            status=startup_pb2.DONE,
                                            actual_date=day("2026-01-01")), "milestone"),
        (startup_pb2.RecordMilestoneRequest(study_site=study_site.name,
                                            milestone="site-selected"), "status"),
        (startup_pb2.RecordMilestoneRequest(study_site=study_site.name,
                                            milestone="site-selected",
                                            status=startup_pb2.DONE), "actual_date"),
        (startup_pb2.RecordMilestoneRequest(study_site=study_site.name,
                                            milestone="site-selected", status=startup_pb2.DONE,
                                            actual_date=day("2099-01-01")), "actual_date"),
        (startup_pb2.RecordMilestoneRequest(study_site=study_site.name,
                                            milestone="site-selected", status=startup_pb2.DONE,
                                            actual_date=date_pb2.Date(year=2026, month=2,
                                                                      day=30)), "actual_date"),
        (startup_pb2.RecordMilestoneRequest(study_site=study_site.name,
                                            milestone="site-selected",
                                            status=startup_pb2.REJECTED,
                                            actual_date=day("2026-01-01")), "status"),
        (startup_pb2.RecordMilestoneRequest(study_site="studies/x", milestone="site-selected",
                                            status=startup_pb2.DONE), "study_site"),
    ]
    for request, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await system.tracker.RecordMilestone(request, metadata=system.admin)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in field_violations(caught.value), (field, caught.value.details())
    after = await system.tracker.GetStudySite(
        startup_pb2.GetStudySiteRequest(name=study_site.name), metadata=system.admin)
    assert after.etag == study_site.etag
    assert all(m.status == startup_pb2.MILESTONE_STATUS_UNSPECIFIED for m in after.milestones)


async def test_prerequisites_are_named_in_a_precondition_failure(
        shared_system: RunningSystem) -> None:
    from tests.support.scenario import add_study_site, record

    system = shared_system
    site = await create_site(system)
    study = await create_study(system)
    study_site = await add_study_site(system, study.name, site.name)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await record(system, study_site.name, "irb-approved", "2026-01-10")
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    failure = error_details_pb2.PreconditionFailure()
    assert status is not None
    assert any(d.Unpack(failure) for d in status.details)
    assert [v.subject for v in failure.violations] == [
        f"{study_site.name}/milestones/irb-submitted"]


async def test_unknown_resources_are_not_found(shared_system: RunningSystem) -> None:
    system = shared_system
    calls = [
        system.registry.GetSite(registry_pb2.GetSiteRequest(name="sites/nowhere"),
                                metadata=system.admin),
        system.tracker.GetStudy(startup_pb2.GetStudyRequest(name="studies/nothing"),
                                metadata=system.admin),
        system.tracker.GetStudySite(
            startup_pb2.GetStudySiteRequest(name="studies/nothing/sites/nowhere"),
            metadata=system.admin),
        system.tracker.AddStudySite(startup_pb2.AddStudySiteRequest(
            parent="studies/nothing", site="sites/nowhere"), metadata=system.admin),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
