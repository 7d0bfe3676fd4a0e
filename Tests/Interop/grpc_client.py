#!/usr/bin/env python3
"""grpcio as a client of a Fusebox RPC server running the test Echo service.

Runs every check and prints one line per check: "ok NAME" or "FAIL NAME: why".
Usage: grpc_client.py --port P --protos DIR --work DIR --ca F --cert F --key F
"""
import argparse
import pathlib
import sys
import time

import grpc

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import fusebox_protos  # noqa: E402

ap = argparse.ArgumentParser()
for flag in ("--port", "--protos", "--work", "--ca", "--cert", "--key"):
    ap.add_argument(flag, required=True)
args = ap.parse_args()

mods = fusebox_protos.compile_protos(args.protos, pathlib.Path(args.work) / "py")
common = mods["fusebox/v1/common.proto"]
policy = mods["fusebox/v1/policy.proto"]
health = mods["grpc/health/v1/health.proto"]
Msg, Static = common.FieldViolation, policy.StaticResponse

creds = grpc.ssl_channel_credentials(
    root_certificates=open(args.ca, "rb").read(),
    private_key=open(args.key, "rb").read(),
    certificate_chain=open(args.cert, "rb").read())
channel = grpc.secure_channel(f"127.0.0.1:{args.port}", creds, options=[
    ("grpc.max_receive_message_length", 8 * 1024 * 1024), ("grpc.max_send_message_length", 8 * 1024 * 1024)])
E = "/fusebox.testing.Echo/"


def stub(kind, method, req=Msg, resp=Msg):
    make = getattr(channel, kind)
    return make(E + method, request_serializer=req.SerializeToString, response_deserializer=resp.FromString)


results = []


def check(name):
    def wrap(fn):
        try:
            fn()
            results.append(f"ok {name}")
        except AssertionError as e:
            results.append(f"FAIL {name}: {e}")
        except Exception as e:  # noqa: BLE001
            results.append(f"FAIL {name}: {type(e).__name__}: {e}")
        return fn
    return wrap


@check("unary-metadata")
def _():
    reply, call = stub("unary_unary", "Unary").with_call(
        Msg(description="hi"), metadata=[("x-test", "hello"), ("x-bin-test-bin", b"\x00\x01\xff")], timeout=10)
    assert reply.description == "echo: hi", reply
    assert reply.field == "x-test=hello;bin=[0, 1, 255]", reply.field


@check("server-streaming-initial-metadata")
def _():
    call = stub("unary_stream", "Count")(Msg(description="4"), timeout=10)
    got = [m.description for m in call]
    assert got == ["0", "1", "2", "3"], got
    assert ("x-stream", "yes") in call.initial_metadata(), call.initial_metadata()


@check("client-streaming")
def _():
    reply = stub("stream_unary", "Join")(iter([Msg(description=c) for c in "abc"]), timeout=10)
    assert reply.description == "a,b,c", reply


@check("bidirectional")
def _():
    got = [m.description for m in stub("stream_stream", "Chat")(iter([Msg(description="one"), Msg(description="two")]), timeout=10)]
    assert got == ["ONE", "TWO"], got


@check("deadline")
def _():
    try:
        stub("unary_unary", "Sleep")(Msg(description="5000"), timeout=0.3)
        raise AssertionError("no error")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e.code()


@check("cancellation")
def _():
    future = stub("unary_unary", "Sleep").future(Msg(description="5000"), timeout=10)
    time.sleep(0.3)
    assert future.cancel(), "could not cancel"
    assert future.cancelled()


@check("error-status-message-trailers")
def _():
    text = 'policy "x": retry.maxAttempts (0) must be between 1 and 10 — ✗ 100%'
    try:
        stub("unary_unary", "Fail")(Msg(field="5", description=text), timeout=10)
        raise AssertionError("no error")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND, e.code()
        assert e.details() == text, e.details()
        assert ("x-detail", "trailer value") in e.trailing_metadata(), e.trailing_metadata()


@check("unimplemented")
def _():
    try:
        stub("unary_unary", "NoSuchMethod")(Msg(), timeout=10)
        raise AssertionError("no error")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNIMPLEMENTED, e.code()


@check("size-at-limit")
def _():
    reply = stub("unary_unary", "Size", Static, Static)(Static(body=b"\x01" * (4 * 1024 * 1024 - 5)), timeout=30)
    assert reply.content_type == f"size={4 * 1024 * 1024 - 5}", reply.content_type


@check("size-over-limit")
def _():
    try:
        stub("unary_unary", "Size", Static, Static)(Static(body=b"\x01" * (4 * 1024 * 1024 - 4)), timeout=30)
        raise AssertionError("no error")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (e.code(), e.details())


@check("health")
def _():
    check_ = channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=health.HealthCheckRequest.SerializeToString,
                                 response_deserializer=health.HealthCheckResponse.FromString)
    assert check_(health.HealthCheckRequest(), timeout=10).status == health.HealthCheckResponse.SERVING


print("\n".join(results))
sys.exit(0 if all(r.startswith("ok") for r in results) else 1)
