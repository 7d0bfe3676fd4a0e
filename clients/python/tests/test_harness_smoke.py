"""Smoke test of the fleet harness with the Swift services only."""

from __future__ import annotations

from fleet import eventually, first_seen


def test_two_swift_services_trip_and_close_together(fleet):
    ids = ["svc-a", "svc-b"]
    for id in ids:
        fleet.start_swift_service(id)
    for id in ids:
        started = fleet.wait_started(id)
        assert started.get("source") == "server", started
    assert eventually(10, lambda: fleet.upstream_calls() > 10), "the services are not calling the upstream"

    fleet.upstream_request("POST", "/fail")
    assert eventually(15, lambda: len(first_seen(fleet, "OPEN", ids, 0)) == 2), \
        f"not every service saw OPEN: {[fleet.transitions(i) for i in ids]}\n{fleet.report()}"
    opened = first_seen(fleet, "OPEN", ids, 0)
    assert len({t.generation for t in opened.values()}) == 1, f"opened at different generations: {opened}"

    last = max(t.generation for i in ids for t in fleet.transitions(i))
    fleet.upstream_request("POST", "/recover")
    assert eventually(15, lambda: len(first_seen(fleet, "CLOSED", ids, last)) == 2), \
        f"not every service closed: {[fleet.transitions(i) for i in ids]}\n{fleet.report()}"
    closed = first_seen(fleet, "CLOSED", ids, last)
    assert len({t.generation for t in closed.values()}) == 1, f"closed at different generations: {closed}"
    assert eventually(5, lambda: (fleet.server_breaker() or ("", 0))[0] == "CLOSED"), fleet.server_breaker()


def test_server_killed_then_restarted_on_the_same_port(fleet):
    fleet.start_swift_service("svc-a")
    assert fleet.wait_started("svc-a").get("source") == "server"
    port = fleet.server.port
    assert eventually(5, lambda: fleet.server_breaker() is not None), "the server never saw the breaker"

    assert fleet.kill_server() == -9
    assert fleet.server_breaker() is None
    fleet.restart_server()
    assert fleet.server.port == port
    # Same data directory: the policy applied before the kill is still there.
    r = fleet.cli(["policies", "get", "fleet-test"], identity="reader")
    assert r.returncode == 0, r.stdout + r.stderr
    assert eventually(10, lambda: fleet.server_breaker() is not None), fleet.report()

    # The service reconnected: a trip now is the server's, at the generation the server reports.
    fleet.upstream_request("POST", "/fail")
    assert eventually(15, lambda: any(t.to == "OPEN" for t in fleet.transitions("svc-a"))), \
        f"{fleet.transitions('svc-a')}\n{fleet.report()}"
    opened = next(t for t in fleet.transitions("svc-a") if t.to == "OPEN")
    assert eventually(5, lambda: fleet.server_breaker() == ("OPEN", opened.generation)), \
        (fleet.server_breaker(), opened)
    assert (fleet.last_status("svc-a") or {}).get("mode") == "fleet", fleet.last_status("svc-a")
