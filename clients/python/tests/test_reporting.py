"""What the SDK puts on the wire when it reports, against a stand-in for
fuseboxd written with grpcio's own server: every batch names the process's
incarnation, sequences run 1, 2, 3… without gaps, a failure's trip below
quorum comes back within 2 s (not after the 5 s stream rotation), and
shutdown says goodbye once, by unary call, after everything else."""
from __future__ import annotations

import asyncio
import threading
import time
from concurrent import futures

import grpc
import pytest

import fusebox
from fusebox.v1 import breaker_pb2 as bpb
from fusebox.v1 import breaker_pb2_grpc as bgrpc
from fusebox.v1 import policy_pb2 as ppb
from fusebox.v1 import registry_pb2_grpc as rgrpc

REASON = "1 consecutive failures ≥ 1 from 1 client; only 1 of 2 required clients failing"


class StandIn(bgrpc.BreakerServiceServicer, rgrpc.RegistryServiceServicer):
    """Records every batch; answers each breaker with failures as below quorum."""

    def __init__(self):
        self.lock = threading.Lock()
        self.batches = []  # (batch, unary)
        self.stream_responses = 0
        self.stopping = threading.Event()

    def _answer(self, batches) -> bpb.ReportOutcomesResponse:
        r = bpb.ReportOutcomesResponse(accepted=sum(len(b.breakers) for b in batches))
        for b in batches:
            for e in b.breakers:
                if e.counts.failure:
                    r.below_quorum.add(breaker=e.breaker, reason=REASON, open_ms=60_000, generation=e.generation)
        return r

    def ReportOutcomes(self, request, context):
        with self.lock:
            self.batches.append((request, True))
        return self._answer([request])

    def StreamOutcomes(self, request_iterator, context):
        got = []
        for batch in request_iterator:
            with self.lock:
                self.batches.append((batch, False))
            got.append(batch)
        with self.lock:
            self.stream_responses += 1
        return self._answer(got)

    def AcquirePermit(self, request, context):
        return bpb.AcquirePermitResponse(granted=False, reason="stand-in grants none")

    refuse_watches = False

    def WatchBreakers(self, request, context):
        if self.refuse_watches:
            context.abort(grpc.StatusCode.UNAVAILABLE, "stand-in: no breaker watches")
        yield bpb.BreakerEvent(snapshot=bpb.BreakerSnapshot())
        while not self.stopping.wait(0.05) and context.is_active():
            pass

    def GetRegistry(self, request, context):
        policy = ppb.Policy(name="quorum")
        policy.circuit_breaker.consecutive_failures_threshold = 1
        policy.circuit_breaker.minimum_clients = 2
        return ppb.RegistrySnapshot(name=request.registry, version=1, policies=[ppb.PolicyRecord(policy=policy, version=1)])

    def WatchRegistry(self, request, context):
        while not self.stopping.wait(0.05) and context.is_active():
            pass
        return
        yield  # a generator that sends nothing


@pytest.fixture
def stand_in(certs):
    service = StandIn()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    bgrpc.add_BreakerServiceServicer_to_server(service, server)
    rgrpc.add_RegistryServiceServicer_to_server(service, server)
    credentials = grpc.ssl_server_credentials(
        [((certs / "server.key").read_bytes(), (certs / "server.pem").read_bytes())],
        root_certificates=(certs / "ca.pem").read_bytes(), require_client_auth=True)
    service.port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    yield service
    service.stopping.set()
    server.stop(grace=None).wait(5)


def config(certs, stand_in, tmp_path, client_id, **kw):
    return fusebox.FuseboxConfig(
        endpoints=f"127.0.0.1:{stand_in.port}", ca=str(certs / "ca.pem"), cert=str(certs / "reporter.pem"),
        key=str(certs / "reporter.key"), client_id=client_id, cache_dir=str(tmp_path / "cache"), **kw)


def wait_until(what, condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.005)


class Boom(Exception):
    pass


def check_goodbye(stand_in, fb, client_id, successes, failures):
    received = list(stand_in.batches)
    assert fb.incarnation > 1_700_000_000_000_000
    assert all(b.incarnation == fb.incarnation for b, _ in received), [b.incarnation for b, _ in received]
    assert all(b.client_id == client_id for b, _ in received)
    assert sorted(b.sequence for b, _ in received) == list(range(1, len(received) + 1))
    last, unary = received[-1]
    assert last.final and unary and not last.breakers
    assert last.sequence == len(received)
    assert sum(1 for b, _ in received if b.final) == 1
    assert sum(e.counts.failure for b, _ in received for e in b.breakers) == failures
    assert sum(e.counts.success for b, _ in received for e in b.breakers) == successes
    assert all(b.mode == bpb.CLIENT_MODE_FLEET for b, _ in received)


def test_threads_report_a_trip_below_quorum_comes_back_soon_and_shutdown_says_goodbye(certs, stand_in, tmp_path):
    changes = []
    fb = fusebox.Fusebox.start(config(certs, stand_in, tmp_path, "reporting-test", staleness_bound=60,
                                      on_state_change=changes.append))
    assert fb.policy_source == "server"
    payments = fb.guard("payments", policy="quorum")
    for i in range(5):
        assert payments.call(lambda: i) == i
    wait_until("the first batch reaches the stand-in", lambda: stand_in.batches)
    time.sleep(0.4)
    assert stand_in.stream_responses == 0, "the stream ended without a failure to report"

    failed = time.monotonic()
    with pytest.raises(Boom):
        payments.call(lambda: (_ for _ in ()).throw(Boom()))
    wait_until("the trip below quorum comes back", lambda: payments.local_open_until is not None, timeout=4)
    took = time.monotonic() - failed
    print(f"reporting: a failure came back as a local open after {took * 1000:.0f} ms")
    assert took < 2.0, "the trip below quorum waited for the 5 s stream rotation"
    with pytest.raises(fusebox.CircuitOpenError) as rejected:
        payments.call(lambda: 1)
    assert rejected.value.retry_after > 50 and rejected.value.trigger == "circuitOpen" and rejected.value.guard == "payments"
    assert payments.breaker_state.state == "CLOSED", "the fleet's breaker stays as it is"
    wait_until("the local open is announced", lambda: changes)
    assert changes[-1].client_only and changes[-1].to_state == "OPEN"
    assert changes[-1].reason == f"local open below quorum: {REASON}"

    fb.shutdown()
    check_goodbye(stand_in, fb, "reporting-test", successes=5, failures=1)


def test_asyncio_guards_report_the_same_way(certs, stand_in, tmp_path):
    async def main():
        fb = await fusebox.AsyncFusebox.start(config(certs, stand_in, tmp_path, "async-test", staleness_bound=60))
        assert fb.policy_source == "server"
        payments = fb.guard("payments", policy="quorum")

        async def ok(i):
            await asyncio.sleep(0)
            return i

        for i in range(7):
            assert await payments.run(ok, i) == i

        @payments
        async def decorated():
            return "decorated"

        assert await decorated() == "decorated"
        async with payments:
            pass
        deadline = time.monotonic() + 5
        while not stand_in.batches and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await fb.shutdown()
        return fb

    fb = asyncio.run(main())
    check_goodbye(stand_in, fb, "async-test", successes=9, failures=0)


def test_a_client_in_local_mode_says_so_without_outcomes(certs, stand_in, tmp_path):
    """Here no breaker watch ever opens (the stand-in refuses it) and the staleness bound is 300 ms."""
    stand_in.refuse_watches = True
    fb = fusebox.Fusebox.start(config(certs, stand_in, tmp_path, "mode-test", staleness_bound=0.3))
    g = fb.guard("payments", policy="quorum")
    assert g.call(lambda: 1) == 1
    wait_until("a LOCAL batch reaches the stand-in",
               lambda: any(b.mode == bpb.CLIENT_MODE_LOCAL for b, _ in stand_in.batches), timeout=10)
    assert fb.mode == "local"
    local = [b for b, _ in stand_in.batches if b.mode == bpb.CLIENT_MODE_LOCAL]
    assert all(not b.breakers for b in local)
    # In local mode the guard's own breaker decides: one failure trips it (the policy's rule), locally.
    with pytest.raises(Boom):
        g.call(lambda: (_ for _ in ()).throw(Boom()))
    assert g.breaker_state.state == "OPEN"
    with pytest.raises(fusebox.CircuitOpenError):
        g.call(lambda: 1)
    fb.shutdown()
    assert not any(b.final for b, _ in stand_in.batches), "no goodbye in local mode"
