#!/usr/bin/env python3
"""A grpcio client of a running fuseboxd, with stubs generated from Protos/.

Fetches registry "default", watches breakers, reports outcomes that trip a
breaker bound to the "api" preset (5 consecutive failures), and prints what
it saw: "policies a,b,c", "transition stripe OPEN <generation>", "ok".
Usage: fuseboxd_client.py --port P --protos DIR --work DIR --ca F --cert F --key F
"""
import argparse
import pathlib
import sys
import threading

import grpc

ap = argparse.ArgumentParser()
for flag in ("--port", "--protos", "--work", "--ca", "--cert", "--key"):
    ap.add_argument(flag, required=True)
args = ap.parse_args()

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from fusebox_protos import compile_protos  # noqa: E402

compile_protos(args.protos, pathlib.Path(args.work) / "stubs", grpc_stubs=True)
from fusebox.v1 import breaker_pb2, breaker_pb2_grpc, common_pb2, registry_pb2, registry_pb2_grpc  # noqa: E402

creds = grpc.ssl_channel_credentials(open(args.ca, "rb").read(), open(args.key, "rb").read(), open(args.cert, "rb").read())
channel = grpc.secure_channel(f"127.0.0.1:{args.port}", creds)
registry = registry_pb2_grpc.RegistryServiceStub(channel)
breakers = breaker_pb2_grpc.BreakerServiceStub(channel)

snapshot = registry.GetRegistry(registry_pb2.GetRegistryRequest(registry="default"), timeout=10)
print("policies " + ",".join(r.policy.name for r in snapshot.policies), flush=True)

seen = threading.Event()
subscribed = threading.Event()


def watch():
    for event in breakers.WatchBreakers(breaker_pb2.WatchBreakersRequest(registry="default"), timeout=20):
        if event.HasField("snapshot"):
            subscribed.set()
        elif event.HasField("transition"):
            status = event.transition.status
            print(f"transition {status.breaker.name} {breaker_pb2.BreakerState.Name(status.state)} {status.generation}", flush=True)
            seen.set()
            return


thread = threading.Thread(target=watch, daemon=True)
thread.start()
if not subscribed.wait(10):
    sys.exit("no snapshot from WatchBreakers")
batch = breaker_pb2.OutcomeBatch(client_id="python-client", sequence=1, breakers=[breaker_pb2.BreakerOutcomes(
    breaker=common_pb2.BreakerRef(registry="default", name="stripe"), policy="api", generation=0,
    counts=breaker_pb2.OutcomeCounts(failure=5), trailing_consecutive_failures=5)])
response = breakers.ReportOutcomes(batch, timeout=10)
print(f"accepted {response.accepted} state {breaker_pb2.BreakerState.Name(response.states[0].state)}", flush=True)
if not seen.wait(10):
    sys.exit("no transition seen")
print("ok", flush=True)
