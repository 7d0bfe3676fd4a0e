"""A mixed fleet against one real fuseboxd: two Swift example services and
two Python ones (python -m fusebox.example) share the breaker
"orders-upstream" of the flaky upstream."""
from __future__ import annotations

import time

from fleet import eventually, first_seen

SWIFT = ["swift-a", "swift-b"]
PYTHON = ["py-a", "py-b"]
ALL = SWIFT + PYTHON


def start_mixed(fleet):
    for id in SWIFT:
        fleet.start_swift_service(id)
    for id in PYTHON:
        fleet.start_python_service(id)
    for id in ALL:
        started = fleet.wait_started(id)
        assert started.get("source") == "server", f"{id}: {started}\n{fleet.report()}"
    assert eventually(10, lambda: fleet.upstream_calls() > 40), "the services are not calling the upstream"


def test_swift_and_python_services_trip_probe_within_the_permits_and_close_together(fleet):
    start_mixed(fleet)

    # The upstream fails: all four trip at the same generation, within a second of each other.
    fleet.upstream_request("POST", "/fail")
    assert eventually(15, lambda: len(first_seen(fleet, "OPEN", ALL, 0)) == 4), \
        f"not every service saw OPEN: {[fleet.transitions(i) for i in ALL]}\n{fleet.report()}"
    opened = first_seen(fleet, "OPEN", ALL, 0)
    assert len({t.generation for t in opened.values()}) == 1, f"services opened at different generations: {opened}"
    times = [t.at_ms for t in opened.values()]
    print(f"mixed fleet: OPEN seen by all 4 within {max(times) - min(times)} ms, generation {next(iter(opened.values())).generation}")
    assert max(times) - min(times) <= 1_000, opened

    # While it keeps failing, each HALF_OPEN period lets at most 2 probes (the policy's permits) through, fleet-wide.
    time.sleep(0.15)
    before = fleet.upstream_calls()
    assert eventually(25, lambda: all(
        len([t for t in fleet.transitions(i) if t.to == "HALF_OPEN"]) >= 2 and fleet.transitions(i)[-1].to == "OPEN"
        for i in ALL)), f"no two failing HALF_OPEN periods: {[fleet.transitions(i) for i in ALL]}\n{fleet.report()}"
    time.sleep(0.15)
    after = fleet.upstream_calls()
    periods = len({t.generation for i in ALL for t in fleet.transitions(i) if t.to == "HALF_OPEN"})
    print(f"mixed fleet: {after - before} calls reached the failing upstream over {periods} HALF_OPEN periods (limit {2 * periods})")
    assert periods >= 2
    assert 1 <= after - before <= 2 * periods, f"{after - before} calls over {periods} periods"

    # It recovers: the probes pass and all four close together, at one generation.
    last = max(t.generation for i in ALL for t in fleet.transitions(i))
    fleet.upstream_request("POST", "/recover")
    assert eventually(15, lambda: len(first_seen(fleet, "CLOSED", ALL, last)) == 4), \
        f"not every service closed: {[fleet.transitions(i) for i in ALL]}\n{fleet.report()}"
    closed = first_seen(fleet, "CLOSED", ALL, last)
    assert len({t.generation for t in closed.values()}) == 1, f"closed at different generations: {closed}"
    times = [t.at_ms for t in closed.values()]
    assert max(times) - min(times) <= 1_000, closed
    assert fleet.server_breaker("orders-upstream")[0] == "CLOSED"


def test_python_services_go_local_when_fuseboxd_dies_and_resync_after_its_restart(fleet):
    for id in PYTHON:
        fleet.start_python_service(id, staleness=1.5)
    for id in PYTHON:
        assert fleet.wait_started(id).get("source") == "server"
    assert eventually(10, lambda: fleet.server_breaker("orders-upstream") is not None)

    fleet.kill_server()
    assert eventually(15, lambda: all(any(e.get("event") == "mode" and e.get("mode") == "local" for e in fleet.events(i))
                                      for i in PYTHON)), f"the Python services did not go local\n{fleet.report()}"
    # Local breakers work: the failing upstream trips each service's own breaker.
    fleet.upstream_request("POST", "/fail")
    assert eventually(15, lambda: all(any(t.to == "OPEN" for t in fleet.transitions(i)) for i in PYTHON)), \
        f"local breakers did not open: {[fleet.transitions(i) for i in PYTHON]}\n{fleet.report()}"
    fleet.upstream_request("POST", "/recover")

    # fuseboxd comes back on the same port and data: the clients go back to fleet mode and take its state.
    fleet.restart_server()
    assert eventually(20, lambda: all(fleet.events(i) and [e for e in fleet.events(i) if e.get("event") == "mode"][-1].get("mode") == "fleet"
                                      for i in PYTHON)), f"the Python services did not resync\n{fleet.report()}"
    server_generation = lambda: (fleet.server_breaker("orders-upstream") or ("", -1))[1]  # noqa: E731
    assert eventually(10, lambda: all(
        (s := fleet.last_status(i)) is not None and s.get("mode") == "fleet" and s.get("generation") == server_generation()
        for i in PYTHON)), f"statuses do not match the server's {fleet.server_breaker('orders-upstream')}: {[fleet.last_status(i) for i in PYTHON]}"
    # After the resync their reports count again: a new trip is the fleet's, at one generation, the server's.
    # (Only what they saw from here on: their local breakers' transitions carried local generations.)
    mark = {i: len(fleet.transitions(i)) for i in PYTHON}
    seen = lambda i: fleet.transitions(i)[mark[i]:]  # noqa: E731
    fleet.upstream_request("POST", "/fail")
    assert eventually(15, lambda: all(any(t.to == "OPEN" for t in seen(i)) for i in PYTHON)), \
        f"{[fleet.transitions(i) for i in PYTHON]}\n{fleet.report()}"
    opened = {i: next(t for t in seen(i) if t.to == "OPEN") for i in PYTHON}
    assert len({t.generation for t in opened.values()}) == 1, opened
    open_generation = next(iter(opened.values())).generation
    assert eventually(5, lambda: server_generation() >= open_generation)
    mark = {i: len(fleet.transitions(i)) for i in PYTHON}

    # Python alone through HALF_OPEN: each failing period lets at most the 2 permitted probes through, fleet-wide,
    # then the probes pass and both close together, at one generation.
    time.sleep(0.15)
    before = fleet.upstream_calls()
    assert eventually(25, lambda: all(
        len([t for t in seen(i) if t.to == "HALF_OPEN"]) >= 2 and fleet.transitions(i)[-1].to == "OPEN" for i in PYTHON)), \
        f"no two failing HALF_OPEN periods: {[fleet.transitions(i) for i in PYTHON]}\n{fleet.report()}"
    time.sleep(0.15)
    probes = fleet.upstream_calls() - before
    periods = len({t.generation for i in PYTHON for t in seen(i) if t.to == "HALF_OPEN"})
    print(f"python fleet: {probes} calls reached the failing upstream over {periods} HALF_OPEN periods (limit {2 * periods})")
    assert 1 <= probes <= 2 * periods, f"{probes} calls over {periods} periods"
    mark = {i: len(fleet.transitions(i)) for i in PYTHON}
    fleet.upstream_request("POST", "/recover")
    assert eventually(15, lambda: all(any(t.to == "CLOSED" for t in seen(i)) for i in PYTHON)), \
        f"{[fleet.transitions(i) for i in PYTHON]}\n{fleet.report()}"
    closed = {i: next(t for t in seen(i) if t.to == "CLOSED") for i in PYTHON}
    assert len({t.generation for t in closed.values()}) == 1
    assert eventually(5, lambda: fleet.server_breaker("orders-upstream") == ("CLOSED", next(iter(closed.values())).generation))
