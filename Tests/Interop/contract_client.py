#!/usr/bin/env python3
"""An independent client of fuseboxd, written only from Protos/ and docs/.

Checks what the contract promises a client can see: field paths of
violations in proto names, error details with every INVALID_ARGUMENT and
PERMISSION_DENIED, audit entries (roles, denials, invalid calls, expiry),
breaker reads and paging, duplicates, below-quorum trips, cluster status. Prints
"ok <check>" per check and "FAIL <check>: <why>" for each failure; exits 1
if any failed.

Usage: contract_client.py --port P --protos DIR --work DIR --certs DIR
(the directory holding ca.pem and admin/reporter .pem/.key)
"""
import argparse
import pathlib
import sys
import time

import grpc

ap = argparse.ArgumentParser()
for flag in ("--port", "--protos", "--work", "--certs"):
    ap.add_argument(flag, required=True)
args = ap.parse_args()

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from fusebox_protos import compile_protos  # noqa: E402

compile_protos(args.protos, pathlib.Path(args.work) / "stubs", grpc_stubs=True)
from fusebox.v1 import (admin_pb2, admin_pb2_grpc, breaker_pb2, breaker_pb2_grpc, common_pb2,  # noqa: E402
                        policy_pb2, registry_pb2, registry_pb2_grpc)

certs = pathlib.Path(args.certs)


def channel(identity):
    creds = grpc.ssl_channel_credentials(
        (certs / "ca.pem").read_bytes(), (certs / f"{identity}.key").read_bytes(), (certs / f"{identity}.pem").read_bytes())
    return grpc.secure_channel(f"127.0.0.1:{args.port}", creds)


admin_ch, reporter_ch = channel("admin"), channel("reporter")
registry = registry_pb2_grpc.RegistryServiceStub(admin_ch)
admin = admin_pb2_grpc.AdminServiceStub(admin_ch)
breakers = breaker_pb2_grpc.BreakerServiceStub(admin_ch)
reporter_registry = registry_pb2_grpc.RegistryServiceStub(reporter_ch)
reporter_admin = admin_pb2_grpc.AdminServiceStub(reporter_ch)
reporter_breakers = breaker_pb2_grpc.BreakerServiceStub(reporter_ch)

failures = []


def check(name):
    def wrap(fn):
        try:
            fn()
            print(f"ok {name}", flush=True)
        except AssertionError as e:
            failures.append(name)
            print(f"FAIL {name}: {e}", flush=True)
        except grpc.RpcError as e:
            failures.append(name)
            print(f"FAIL {name}: unexpected {e.code()}: {e.details()}", flush=True)
        return fn
    return wrap


def details(error):
    for key, value in error.trailing_metadata() or ():
        if key == "fusebox-error-details-bin":
            return common_pb2.ErrorDetails.FromString(value)
    return None


def expect_error(code, call, *a, **kw):
    try:
        call(*a, timeout=10, **kw)
    except grpc.RpcError as e:
        assert e.code() == code, f"expected {code}, got {e.code()}: {e.details()}"
        return e
    raise AssertionError(f"expected {code}, the call succeeded")


def ref(name, registry="default"):
    return common_pb2.BreakerRef(registry=registry, name=name)


def breaker_policy(name, minimum_clients=1):
    return policy_pb2.Policy(name=name, circuit_breaker=policy_pb2.CircuitBreakerPolicy(
        failure_rate_threshold_percent=50, minimum_calls=10, minimum_clients=minimum_clients,
        open_duration=policy_pb2.OpenDuration(base_ms=60000)))


def put(policy, registry_name="default"):
    return registry.PutPolicy(registry_pb2.PutPolicyRequest(registry=registry_name, policy=policy, reason="contract"), timeout=10)


put(breaker_policy("contract"))


@check("violations name fields as sent, in proto names")
def _():
    bad = policy_pb2.Policy(
        name="bad",
        retry=policy_pb2.RetryPolicy(max_attempts=3, backoff=policy_pb2.Backoff(initial_ms=500, max_ms=100)),
        circuit_breaker=policy_pb2.CircuitBreakerPolicy(failure_rate_threshold_percent=150))
    e = expect_error(grpc.StatusCode.INVALID_ARGUMENT, registry.PutPolicy, registry_pb2.PutPolicyRequest(registry="default", policy=bad))
    d = details(e)
    assert d is not None, "no fusebox-error-details-bin trailer"
    fields = [v.field for v in d.violations]
    for expected in ("policy.retry.backoff.max_ms", "policy.circuit_breaker.failure_rate_threshold_percent"):
        assert expected in fields, f"{expected} not among {fields}"
    response = registry.ValidatePolicy(registry_pb2.ValidatePolicyRequest(policy=bad), timeout=10)
    relative = [v.field for v in response.violations]
    assert not response.valid and "retry.backoff.max_ms" in relative, f"ValidatePolicy paths are relative to the policy: {relative}"


@check("a rate limit's burst of 0 is the default, not a violation")
def _():
    ok = policy_pb2.Policy(name="burst-default", rate_limit=policy_pb2.RateLimitPolicy(limit_per_period=10, burst=0))
    put(ok)
    response = registry.ValidatePolicy(registry_pb2.ValidatePolicyRequest(policy=ok), timeout=10)
    assert response.valid, [f"{v.field}: {v.description}" for v in response.violations]


@check("every INVALID_ARGUMENT carries error details naming the field")
def _():
    cases = [
        ("client_id", reporter_breakers.ReportOutcomes, breaker_pb2.OutcomeBatch(client_id="")),
        ("breaker.name", breakers.GetBreaker, breaker_pb2.GetBreakerRequest(breaker=ref("has space"))),
        ("breaker.name", breakers.GetBreaker, breaker_pb2.GetBreakerRequest(breaker=ref("x" * 254))),
        ("breaker.registry", breakers.GetBreaker, breaker_pb2.GetBreakerRequest(breaker=ref("ok", registry="no/slash"))),
        # Letters outside ASCII are not in the documented sets (A-Z a-z), for either name.
        ("breaker.name", breakers.GetBreaker, breaker_pb2.GetBreakerRequest(breaker=ref("caf\u00e9"))),
        ("breaker.registry", breakers.GetBreaker, breaker_pb2.GetBreakerRequest(breaker=ref("ok", registry="\u00fcber"))),
        ("reason", admin.ForceOpen, admin_pb2.OverrideRequest(breaker=ref("contract-a"), policy="contract", reason="r" * 1025)),
        ("reason", admin.ForceOpen, admin_pb2.OverrideRequest(breaker=ref("contract-a"), policy="contract", reason="")),
        ("registry", registry.GetRegistry, registry_pb2.GetRegistryRequest(registry="")),
        ("page_size", breakers.ListBreakers, breaker_pb2.ListBreakersRequest(page_size=5000)),
    ]
    for field, call, request in cases:
        e = expect_error(grpc.StatusCode.INVALID_ARGUMENT, call, request)
        d = details(e)
        assert d is not None, f"{field}: no error details ({e.details()})"
        assert [v.field for v in d.violations] == [field], f"{field}: details name {[v.field for v in d.violations]}"
    # A request that does not decode at all gets details too (about the message as a whole).
    raw = admin_ch.unary_unary("/fusebox.v1.BreakerService/GetBreaker", request_serializer=lambda b: b, response_deserializer=lambda b: b)
    e = expect_error(grpc.StatusCode.INVALID_ARGUMENT, raw, b"\x0a\xff\xff\xff")
    d = details(e)
    assert d is not None and len(d.violations) == 1 and d.violations[0].field == "", f"malformed request: {d} ({e.details()})"
    # A breaker name of 253 characters of the documented set is fine.
    name = ("a.b_c:d/e-" * 26)[:253]
    admin.ForceClose(admin_pb2.OverrideRequest(breaker=ref(name), policy="contract", reason="long name"), timeout=10)


@check("PERMISSION_DENIED carries the missing role in error details")
def _():
    e = expect_error(grpc.StatusCode.PERMISSION_DENIED, reporter_registry.PutPolicy,
                     registry_pb2.PutPolicyRequest(registry="default", policy=breaker_policy("nope")))
    d = details(e)
    assert d is not None and d.missing_role == "admin", f"details: {d}"


@check("audit: roles, denials, invalid calls and expiry are all there")
def _():
    expect_error(grpc.StatusCode.PERMISSION_DENIED, reporter_admin.ForceOpen,
                 admin_pb2.OverrideRequest(breaker=ref("audited"), policy="contract", reason="not mine"))
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, admin.ForceOpen,
                 admin_pb2.OverrideRequest(breaker=ref("audited"), policy="contract", reason=""))
    done = admin.ForceOpen(admin_pb2.OverrideRequest(breaker=ref("audited"), policy="contract", reason="drill", duration_ms=300), timeout=10)
    assert done.after.state == breaker_pb2.BREAKER_STATE_FORCED_OPEN
    assert done.after.policy == "contract", f"AdminActionResponse.after.policy is {done.after.policy!r}"
    deadline = time.time() + 10
    entries = []
    while time.time() < deadline:
        entries = admin.ListAudit(admin_pb2.ListAuditRequest(breaker_prefix="audited"), timeout=10).entries
        if any(e.action == admin_pb2.AUDIT_ACTION_OVERRIDE_EXPIRED for e in entries):
            break
        time.sleep(0.1)
    actions = [(admin_pb2.AuditAction.Name(e.action), e.allowed) for e in entries]
    assert ("AUDIT_ACTION_OVERRIDE_EXPIRED", True) in actions, f"no OVERRIDE_EXPIRED entry: {actions}"
    allowed = [e for e in entries if e.action == admin_pb2.AUDIT_ACTION_FORCE_OPEN and e.allowed]
    assert allowed and allowed[0].id == done.audit_id, f"the action's entry: {actions}"
    assert "admin" in allowed[0].actor.roles, f"PeerIdentity.roles is {list(allowed[0].actor.roles)}"
    denied = [e for e in entries if e.action == admin_pb2.AUDIT_ACTION_FORCE_OPEN and not e.allowed]
    assert len(denied) == 2, f"one denied and one invalid attempt: {[(e.denied_reason) for e in denied]}"
    assert any("missing role admin" in e.denied_reason for e in denied)
    assert any(e.denied_reason.startswith("invalid") for e in denied)
    reporter_entry = next(e for e in denied if "missing role" in e.denied_reason)
    assert list(reporter_entry.actor.roles) == ["reader", "reporter"], f"roles {list(reporter_entry.actor.roles)}"
    # A denied read of the log is audited too.
    expect_error(grpc.StatusCode.PERMISSION_DENIED, reporter_admin.ListAudit, admin_pb2.ListAuditRequest())
    reads = admin.ListAudit(admin_pb2.ListAuditRequest(actions=[admin_pb2.AUDIT_ACTION_LIST_AUDIT], denied_only=True), timeout=10).entries
    assert reads and reads[0].actor.common_name == "fusebox-reporter", f"denied ListAudit entries: {reads}"
    # So are allowed reads: ListAudit (written after the read) and GetClusterStatus.
    reporter_admin.GetClusterStatus(admin_pb2.GetClusterStatusRequest(), timeout=10)
    logged = admin.ListAudit(admin_pb2.ListAuditRequest(
        actions=[admin_pb2.AUDIT_ACTION_LIST_AUDIT, admin_pb2.AUDIT_ACTION_GET_CLUSTER_STATUS]), timeout=10).entries
    assert any(e.action == admin_pb2.AUDIT_ACTION_LIST_AUDIT and e.allowed for e in logged), f"allowed ListAudit not audited: {logged}"
    assert any(e.action == admin_pb2.AUDIT_ACTION_GET_CLUSTER_STATUS and e.allowed and e.actor.common_name == "fusebox-reporter"
               for e in logged), f"GetClusterStatus not audited: {logged}"


@check("reads: an empty registry means default; contributions say when each client reported")
def _():
    batch = breaker_pb2.OutcomeBatch(client_id="contract-client", incarnation=1, sequence=1, breakers=[breaker_pb2.BreakerOutcomes(
        breaker=common_pb2.BreakerRef(registry="", name="reads"), policy="contract", counts=breaker_pb2.OutcomeCounts(success=3))])
    reporter_breakers.ReportOutcomes(batch, timeout=10)
    before = int(time.time() * 1000)
    detail = breakers.GetBreaker(breaker_pb2.GetBreakerRequest(breaker=common_pb2.BreakerRef(registry="", name="reads")), timeout=10)
    assert detail.status.breaker.registry == "default", detail.status
    c = [x for x in detail.contributions if x.client_id == "contract-client"]
    assert c and 0 < c[0].last_report_at_ms <= before + 1000, f"last_report_at_ms: {[x.last_report_at_ms for x in c]}"
    again = reporter_breakers.ReportOutcomes(batch, timeout=10)
    assert again.duplicate and again.accepted == 0, f"a retransmission is answered as a duplicate: {again}"


@check("ListBreakers pages through registries a, a-b and a.b without skipping")
def _():
    expected = []
    for reg in ("a", "a-b", "a.b"):
        put(breaker_policy("contract"), reg)
        for name in ("x", "y"):
            admin.ForceClose(admin_pb2.OverrideRequest(breaker=ref(name, reg), policy="contract", reason="paging"), timeout=10)
            expected.append((reg, name))
    seen, token = [], ""
    for _ in range(100):
        page = breakers.ListBreakers(breaker_pb2.ListBreakersRequest(page_size=1, page_token=token), timeout=10)
        seen += [(b.breaker.registry, b.breaker.name) for b in page.breakers]
        token = page.next_page_token
        if not token:
            break
    listed = [s for s in seen if s[0] in ("a", "a-b", "a.b")]
    assert listed == sorted(expected), f"listed {listed}"
    assert len(seen) == len(set(seen)), "a breaker came twice"


@check("below the quorum, the reporting client is told to open its local breaker")
def _():
    put(breaker_policy("quorum2", minimum_clients=2))
    batch = breaker_pb2.OutcomeBatch(client_id="lonely", breakers=[breaker_pb2.BreakerOutcomes(
        breaker=ref("quorum-b"), policy="quorum2", counts=breaker_pb2.OutcomeCounts(failure=20), trailing_consecutive_failures=20)])
    response = reporter_breakers.ReportOutcomes(batch, timeout=10)
    assert response.states[0].state == breaker_pb2.BREAKER_STATE_CLOSED, response.states
    assert len(response.below_quorum) == 1 and response.below_quorum[0].breaker.name == "quorum-b", response
    assert response.below_quorum[0].open_ms == 60000 and "of 2" in response.below_quorum[0].reason, response.below_quorum


@check("a standalone server's cluster status: one replica, leading, on SQLite; a reporter may read it")
def _():
    status = reporter_admin.GetClusterStatus(admin_pb2.GetClusterStatusRequest(), timeout=10)
    assert (status.mode, status.store) == ("standalone", "sqlite"), status
    assert len(status.replicas) == 1 and status.replicas[0].leader and status.replicas[0].serving, status
    assert status.leader_id == status.replicas[0].id == status.answered_by != "", status
    assert status.replicas[0].address == f"127.0.0.1:{args.port}", status.replicas[0].address
    assert len(status.etcd_members) == 0 and status.at_ms > 0, status


sys.exit(1 if failures else 0)
