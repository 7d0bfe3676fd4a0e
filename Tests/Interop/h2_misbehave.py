#!/usr/bin/env python3
"""A raw HTTP/2 peer (hyper-h2 over Python's ssl) that misbehaves on purpose.

Prints what the server answered, one fact per line, e.g. "goaway 1",
"reset 1 7", "grpc-status 12", "refused 50", "closed".
Usage: h2_misbehave.py CASE --port P --ca F --cert F --key F
Cases: garbage-after-preface, no-path, unknown-method, oversized-length,
       too-many-streams, abrupt-disconnect, compressed-flag, ping-flood, slow-reader, listen (LISTEN_SECONDS),
       slow-watcher (against fuseboxd, with --admin-port, --admin-cert, --admin-key and --protos DIR --work DIR)
"""
import argparse
import socket
import ssl
import struct
import time

import h2.config
import h2.connection
import h2.events

ap = argparse.ArgumentParser()
ap.add_argument("case")
for flag in ("--port", "--ca", "--cert", "--key"):
    ap.add_argument(flag, required=True)
for flag in ("--admin-cert", "--admin-key", "--protos", "--work"):
    ap.add_argument(flag)
args = ap.parse_args()

ctx = ssl.create_default_context(cafile=args.ca)
ctx.load_cert_chain(args.cert, args.key)
ctx.set_alpn_protocols(["h2"])
raw = socket.create_connection(("127.0.0.1", int(args.port)), timeout=5)
sock = ctx.wrap_socket(raw, server_hostname="localhost")
conn = h2.connection.H2Connection(config=h2.config.H2Configuration(
    client_side=True, header_encoding="utf-8", validate_outbound_headers=False, normalize_outbound_headers=False,
    validate_inbound_headers=False))
conn.initiate_connection()
sock.sendall(conn.data_to_send())


def request_headers(path="/fusebox.testing.Echo/Unary"):
    headers = [(":method", "POST"), (":scheme", "https"), (":authority", "localhost")]
    if path is not None:
        headers.append((":path", path))
    return headers + [("content-type", "application/grpc"), ("te", "trailers")]


def pump(seconds=2.0, until=None):
    """Reads and reports events until `until(events)` or the time is up."""
    deadline = time.time() + seconds
    seen = []
    while time.time() < deadline:
        try:
            sock.settimeout(max(0.05, deadline - time.time()))
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except (ssl.SSLError, OSError):
            data = b""
        if not data:
            print("closed")
            return seen
        for event in conn.receive_data(data):
            seen.append(event)
            if isinstance(event, h2.events.PingReceived):
                print("ping")
            elif isinstance(event, h2.events.ConnectionTerminated):
                print(f"goaway {int(event.error_code)}")
            elif isinstance(event, h2.events.StreamReset):
                print(f"reset {event.stream_id} {int(event.error_code)}")
            elif isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                for name, value in event.headers:
                    if name == "grpc-status":
                        print(f"grpc-status {value}")
                    if name == ":status" and value != "200":
                        print(f"http-status {value}")
        out = conn.data_to_send()
        if out:
            try:
                sock.sendall(out)
            except (ssl.SSLError, OSError):
                pass  # the server may already have hung up; keep reading what it sent
        if until and until(seen):
            return seen
    return seen


def message(payload):
    return b"\x00" + struct.pack(">I", len(payload)) + payload


case = args.case
if case == "garbage-after-preface":
    sock.sendall(b"\x00\x00\x04\xff\xff\xff\xff\xff\xffgarbage-garbage")
    pump()
elif case == "no-path":
    conn.send_headers(1, request_headers(path=None), end_stream=True)
    sock.sendall(conn.data_to_send())
    pump(until=lambda ev: any(isinstance(e, (h2.events.StreamReset, h2.events.ConnectionTerminated)) for e in ev))
elif case == "unknown-method":
    conn.send_headers(1, request_headers("/fusebox.testing.Nope/Nothing"))
    conn.send_data(1, message(b""), end_stream=True)
    sock.sendall(conn.data_to_send())
    pump(until=lambda ev: any(isinstance(e, h2.events.StreamEnded) for e in ev))
elif case == "oversized-length":
    conn.send_headers(1, request_headers())
    conn.send_data(1, b"\x00" + struct.pack(">I", 64 * 1024 * 1024) + b"x" * 100)
    sock.sendall(conn.data_to_send())
    pump(until=lambda ev: any(isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) for e in ev))
elif case == "too-many-streams":
    conn.update_settings({})  # make sure we have the server's settings first
    sock.sendall(conn.data_to_send())
    pump(0.5)
    type(conn).open_outbound_streams = property(lambda self: 0)  # let h2 exceed the server's limit
    for i in range(150):
        conn.send_headers(1 + 2 * i, request_headers("/fusebox.testing.Echo/Sleep"))
        conn.send_data(1 + 2 * i, message(b"\x12\x0530000"), end_stream=True)  # each sleeps 30 s
    sock.sendall(conn.data_to_send())
    events = pump(3.0)
    refused = sum(1 for e in events if isinstance(e, h2.events.StreamReset) and int(e.error_code) == 7)
    print(f"refused {refused}")
elif case == "abrupt-disconnect":
    conn.send_headers(1, request_headers("/fusebox.testing.Echo/Sleep"))
    # FieldViolation{description: "30000"}: the handler sleeps 30 s, then the socket vanishes.
    conn.send_data(1, message(b"\x12\x0530000"), end_stream=True)
    sock.sendall(conn.data_to_send())
    time.sleep(0.3)
    sock.close()
    print("disconnected")
elif case == "compressed-flag":
    conn.send_headers(1, request_headers())
    conn.send_data(1, b"\x01" + struct.pack(">I", 3) + b"abc", end_stream=True)
    sock.sendall(conn.data_to_send())
    pump(until=lambda ev: any(isinstance(e, h2.events.StreamEnded) for e in ev))
elif case == "unary-shapes":
    # Unary calls whose request is not exactly one whole message, each on its
    # own stream; prints "status <stream> <grpc-status> <grpc-message>" and
    # "reset <stream> <code>".
    one = message(b"\x0a\x01x")
    conn.send_headers(1, request_headers())
    conn.send_data(1, one + one, end_stream=True)         # two messages
    conn.send_headers(3, request_headers(), end_stream=True)  # none
    conn.send_headers(5, request_headers())
    conn.send_data(5, one[:4], end_stream=True)           # cut inside the prefix
    conn.send_headers(7, request_headers())
    conn.send_data(7, one + one)                          # two, and still sending
    conn.send_headers(9, request_headers())
    conn.send_data(9, one[:2])
    conn.send_data(9, one[2:], end_stream=True)           # one, over two DATA frames
    sock.sendall(conn.data_to_send())
    ended = set()
    deadline = time.time() + 5
    while time.time() < deadline and len(ended) < 5:
        try:
            sock.settimeout(0.2)
            data = sock.recv(65536)
        except socket.timeout:
            continue
        if not data:
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.StreamReset):
                print(f"reset {event.stream_id} {int(event.error_code)}")
                ended.add(event.stream_id)
            elif isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                fields = dict(event.headers)
                if "grpc-status" in fields:
                    print(f"status {event.stream_id} {fields['grpc-status']} {fields.get('grpc-message', '')}")
            elif isinstance(event, h2.events.StreamEnded):
                ended.add(event.stream_id)
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
elif case == "ping-flood":
    terminated = lambda ev: any(isinstance(e, h2.events.ConnectionTerminated) for e in ev)  # noqa: E731
    for i in range(10):
        conn.ping(struct.pack(">Q", i))
        try:
            sock.sendall(conn.data_to_send())
        except (ssl.SSLError, OSError):
            break  # the server hung up
        # Read between pings, so the server's GOAWAY is seen before a write to a closed socket.
        if terminated(pump(0.1, until=terminated)):
            break
elif case == "slow-reader":
    # Asks for 2,000 messages of 1 KiB and never acknowledges what arrives, so
    # the flow-control window closes after 64 KiB and the rest piles up on the server.
    conn.send_headers(1, request_headers("/fusebox.testing.Echo/Flood"))
    conn.send_data(1, message(b"\x12\x042000"), end_stream=True)
    sock.sendall(conn.data_to_send())
    events = pump(5.0, until=lambda ev: any(isinstance(e, h2.events.StreamReset) for e in ev))
    received = sum(len(e.data) for e in events if isinstance(e, h2.events.DataReceived))
    print(f"received {received}")
elif case == "slow-watcher":
    # Watches fuseboxd's breakers and stops reading (never acknowledges what
    # arrives) while another connection makes 400 transitions with long
    # reasons, far more than the stream's window and buffer hold. Then it
    # reads again, and reports the gRPC messages it got: the promise is a
    # fresh snapshot once it can take one, not a reset, not silence.
    import sys
    sys.path.insert(0, __import__("os").path.dirname(__file__))
    import grpc
    from fusebox_protos import compile_protos
    modules = compile_protos(args.protos, args.work)
    common, admin = modules["fusebox/v1/common.proto"], modules["fusebox/v1/admin.proto"]
    conn.send_headers(1, request_headers("/fusebox.v1.BreakerService/WatchBreakers"))
    conn.send_data(1, message(b""), end_stream=True)
    sock.sendall(conn.data_to_send())
    buffered, messages = b"", []

    def take(events):
        global buffered
        for e in events:
            if isinstance(e, h2.events.DataReceived):
                buffered += e.data
        while len(buffered) >= 5:
            length = struct.unpack(">I", buffered[1:5])[0]
            if len(buffered) < 5 + length:
                break
            body = buffered[5:5 + length]
            messages.append("snapshot" if body[:1] == b"\x0a" else "transition")
            buffered = buffered[5 + length:]

    take(pump(1.0, until=lambda ev: any(isinstance(e, h2.events.DataReceived) for e in ev)))
    print(f"first {messages[:1]}", flush=True)
    creds = grpc.ssl_channel_credentials(open(args.ca, "rb").read(), open(args.admin_key, "rb").read(), open(args.admin_cert, "rb").read())
    stub_channel = grpc.secure_channel(f"127.0.0.1:{args.port}", creds)
    force_open = stub_channel.unary_unary("/fusebox.v1.AdminService/ForceOpen", request_serializer=lambda m: m.SerializeToString(),
                                          response_deserializer=lambda b: b)
    force_close = stub_channel.unary_unary("/fusebox.v1.AdminService/ForceClose", request_serializer=lambda m: m.SerializeToString(),
                                           response_deserializer=lambda b: b)
    for i in range(400):
        request = admin.OverrideRequest(breaker=common.BreakerRef(registry="default", name=f"flood-{i % 4}"), policy="api",
                                        reason=f"flood {i} " + "x" * 1000)
        (force_open if i % 2 == 0 else force_close)(request, timeout=10)
    print("flooded", flush=True)
    # Read again, acknowledging everything, so the window opens.
    deadline = time.time() + 5
    while time.time() < deadline and messages.count("snapshot") < 2:
        events = pump(0.2)
        for e in events:
            if isinstance(e, h2.events.DataReceived):
                conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            if isinstance(e, h2.events.StreamReset):
                print(f"reset {e.stream_id} {int(e.error_code)}")
        sock.sendall(conn.data_to_send())
        take(events)
    print(f"snapshots {messages.count('snapshot')} transitions {messages.count('transition')}", flush=True)
elif case == "listen":
    pump(float(__import__("os").environ.get("LISTEN_SECONDS", "2")))
else:
    raise SystemExit(f"unknown case {case}")
