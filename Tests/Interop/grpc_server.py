#!/usr/bin/env python3
"""grpcio as a server of the test Echo service, for Fusebox's RPC client.

Listens on 127.0.0.1 port 0 with mutual TLS (or, with --plaintext, cleartext
HTTP/2), prints "PORT <n>", and serves until its standard input closes. Methods mirror Tests/FuseboxRPCTests/EchoService.swift;
"Stats" answers with the number of calls it saw cancelled.
Usage: grpc_server.py --protos DIR --work DIR (--ca F --cert F --key F | --plaintext)
"""
import argparse
import pathlib
import sys
import threading
import time
from concurrent import futures

import grpc

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import fusebox_protos  # noqa: E402

ap = argparse.ArgumentParser()
for flag in ("--protos", "--work"):
    ap.add_argument(flag, required=True)
for flag in ("--ca", "--cert", "--key"):
    ap.add_argument(flag)
ap.add_argument("--plaintext", action="store_true")
args = ap.parse_args()
if not args.plaintext and not (args.ca and args.cert and args.key):
    ap.error("--ca, --cert and --key are required without --plaintext")
mods = fusebox_protos.compile_protos(args.protos, pathlib.Path(args.work) / "py")
Msg = mods["fusebox/v1/common.proto"].FieldViolation
Static = mods["fusebox/v1/policy.proto"].StaticResponse
cancelled = [0]
lock = threading.Lock()


def unary(request, context):
    md = dict(context.invocation_metadata())
    field = f"x-test={md.get('x-test', '')}"
    if "x-bin-test-bin" in md:
        field += f";bin={list(md['x-bin-test-bin'])}"
    context.set_trailing_metadata([("x-echo-trailer", "t")])
    return Msg(description="echo: " + request.description, field=field)


def count(request, context):
    context.send_initial_metadata([("x-stream", "yes")])
    for i in range(int(request.description or "3")):
        yield Msg(description=str(i))


def join(requests, context):
    return Msg(description=",".join(r.description for r in requests))


def chat(requests, context):
    for r in requests:
        yield Msg(description=r.description.upper())


def sleep(request, context):
    end = time.time() + int(request.description or "1000") / 1000
    while time.time() < end:
        if not context.is_active():
            with lock:
                cancelled[0] += 1
            return Msg()
        time.sleep(0.01)
    return Msg(description="slept")


def fail(request, context):
    context.set_trailing_metadata([("x-detail", "trailer value")])
    context.abort(grpc.StatusCode(next(c for c in grpc.StatusCode if c.value[0] == int(request.field))), request.description)


def size(request, context):
    return Static(content_type=f"size={len(request.body)}")


def big(request, context):
    return Static(body=b"\x02" * int(request.description))


def stats(request, context):
    with lock:
        return Msg(description=str(cancelled[0]))


def h(kind, fn, req=Msg, resp=Msg):
    return getattr(grpc, kind)(fn, request_deserializer=req.FromString, response_serializer=resp.SerializeToString)


handlers = {
    "Unary": h("unary_unary_rpc_method_handler", unary),
    "Count": h("unary_stream_rpc_method_handler", count),
    "Join": h("stream_unary_rpc_method_handler", join),
    "Chat": h("stream_stream_rpc_method_handler", chat),
    "Sleep": h("unary_unary_rpc_method_handler", sleep),
    "Fail": h("unary_unary_rpc_method_handler", fail),
    "Size": h("unary_unary_rpc_method_handler", size, Static, Static),
    "Big": h("unary_unary_rpc_method_handler", big, Msg, Static),
    "Stats": h("unary_unary_rpc_method_handler", stats),
}
server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("fusebox.testing.Echo", handlers),))
if args.plaintext:
    port = server.add_insecure_port("127.0.0.1:0")
else:
    creds = grpc.ssl_server_credentials(
        [(open(args.key, "rb").read(), open(args.cert, "rb").read())],
        root_certificates=open(args.ca, "rb").read(), require_client_auth=True)
    port = server.add_secure_port("127.0.0.1:0", creds)
server.start()
print(f"PORT {port}", flush=True)
sys.stdin.read()
server.stop(grace=1)
