#!/usr/bin/env python3
"""A default grpcio channel making steady unary calls on one connection.

grpcio's defaults include BDP probing: after response data it sends PINGs.
A server that counts those as abuse answers GOAWAY ENHANCE_YOUR_CALM
"too_many_pings" and the channel reconnects. This peer makes CALLS unary Echo
calls GAP_MS apart and prints, one per line:
  "calls N", "errors N" (failed calls), "ready N" (times the channel became
  READY: 1 means it never had to reconnect), "error <code> <details>" per
  failure. GRPC_TRACE is left to the caller.
Usage: grpc_steady_calls.py --port P --protos DIR --work DIR --ca F --cert F --key F [--calls N] [--gap-ms N]
"""
import argparse
import pathlib
import sys
import threading
import time

import grpc

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import fusebox_protos  # noqa: E402

ap = argparse.ArgumentParser()
for flag in ("--port", "--protos", "--work", "--ca", "--cert", "--key"):
    ap.add_argument(flag, required=True)
ap.add_argument("--calls", type=int, default=200)
ap.add_argument("--gap-ms", type=int, default=20)
args = ap.parse_args()

mods = fusebox_protos.compile_protos(args.protos, pathlib.Path(args.work) / "py")
Msg = mods["fusebox/v1/common.proto"].FieldViolation

creds = grpc.ssl_channel_credentials(
    root_certificates=open(args.ca, "rb").read(),
    private_key=open(args.key, "rb").read(),
    certificate_chain=open(args.cert, "rb").read())
# No options: grpcio's defaults (BDP probing on, no client keepalive).
channel = grpc.secure_channel(f"127.0.0.1:{args.port}", creds)

lock = threading.Lock()
ready = 0
last = None


def on_state(state):
    global ready, last
    with lock:
        if state == grpc.ChannelConnectivity.READY and last != state:
            ready += 1
        last = state


channel.subscribe(on_state, try_to_connect=True)
unary = channel.unary_unary(
    "/fusebox.testing.Echo/Unary", request_serializer=Msg.SerializeToString, response_deserializer=Msg.FromString)

errors = 0
for i in range(args.calls):
    try:
        reply = unary(Msg(description=f"n{i}"), timeout=10)
        if reply.description != f"echo: n{i}":
            errors += 1
            print(f"error wrong-reply {reply.description!r}", flush=True)
    except grpc.RpcError as e:
        errors += 1
        print(f"error {e.code().name} {e.details()}", flush=True)
    time.sleep(args.gap_ms / 1000)

time.sleep(0.2)  # a GOAWAY after the last response still moves the state
with lock:
    seen_ready = ready
channel.unsubscribe(on_state)
channel.close()
print(f"calls {args.calls}")
print(f"errors {errors}")
print(f"ready {seen_ready}", flush=True)
