#!/usr/bin/env python3
"""Writes the seed corpora under Fuzz/Corpus/ (committed; run again after the
Protos or the input layouts in Sources/FuseboxFuzzing change).

Usage: python3 Fuzz/make_seeds.py   (from the repository root)
Needs grpcio-tools, protobuf and h2 (scripts/install-deps installs them).
"""
import pathlib
import re
import ssl
import struct
import sys
import tempfile

root = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(root / "Tests" / "Interop"))
import fusebox_protos  # noqa: E402

corpus = root / "Fuzz" / "Corpus"


def write(target, name, data):
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


# wire-decode: byte 0 picks allWireMessageTypes[i]; each type gets a message
# with every field set (one level of nesting), as the Python protobuf encodes it.
def fill(msg, depth):
    from google.protobuf.descriptor import FieldDescriptor as F
    for f in msg.DESCRIPTOR.fields:
        if f.message_type and f.message_type.GetOptions().map_entry:
            kind = f.message_type.fields_by_name["value"].type
            if kind == F.TYPE_STRING:
                getattr(msg, f.name)["k"] = "v"
            elif kind != F.TYPE_MESSAGE:
                getattr(msg, f.name)["k"] = 1
            continue
        repeated = f.is_repeated if hasattr(f, "is_repeated") else f.label == F.LABEL_REPEATED
        if f.type == F.TYPE_MESSAGE:
            if depth > 1:
                continue
            sub = getattr(msg, f.name).add() if repeated else getattr(msg, f.name)
            fill(sub, depth + 1)
            if not repeated:
                sub.SetInParent()
            continue
        value = {F.TYPE_STRING: "x-1", F.TYPE_BYTES: b"\x00\xff", F.TYPE_BOOL: True,
                 F.TYPE_DOUBLE: 0.5, F.TYPE_FLOAT: 0.5}.get(f.type)
        if f.type == F.TYPE_ENUM:
            value = f.enum_type.values[-1].number
        if value is None:
            value = 300
        if repeated:
            getattr(msg, f.name).append(value)
        elif f.containing_oneof is None or not msg.WhichOneof(f.containing_oneof.name):
            setattr(msg, f.name, value)


def swift_name(full):
    parts = full.split(".")
    out, i = [], 0
    while i < len(parts) and parts[i][:1].islower():
        out.append(parts[i][:1].upper() + parts[i][1:])
        i += 1
    return "_".join(out + parts[i:])


with tempfile.TemporaryDirectory() as tmp:
    modules = fusebox_protos.compile_protos(root / "Protos", tmp)
    classes = {}

    def collect(descriptors, module):
        for d in descriptors:
            classes[swift_name(d.full_name)] = d
            collect(d.nested_types, module)

    from google.protobuf import message_factory
    for module in modules.values():
        collect(module.DESCRIPTOR.message_types_by_name.values(), module)
    order = re.findall(r"^\s+(\w+)\.self,", (root / "Sources/FuseboxWire/Generated/AllWireMessageTypes.swift").read_text(), re.M)
    for i, name in enumerate(order):
        msg = message_factory.GetMessageClass(classes[name])()
        fill(msg, 0)
        write("wire-decode", f"{i:03d}-{name}", bytes([i]) + msg.SerializeToString())
    write("wire-decode", "empty-policy", bytes([order.index("Fusebox_V1_Policy")]))


# grpc-deframer: limit (2 bytes), chunk seed, then frames.
def frame(body, flag=0):
    return bytes([flag]) + struct.pack(">I", len(body)) + body

write("grpc-deframer", "two-messages", struct.pack(">H", 1024) + b"\x07" + frame(b"hello") + frame(b""))
write("grpc-deframer", "one-piece", struct.pack(">H", 64) + b"\x00" + frame(b"a" * 40) + frame(b"b" * 3)[:4])
write("grpc-deframer", "over-limit", struct.pack(">H", 4) + b"\x03" + frame(b"too large"))
write("grpc-deframer", "compressed", struct.pack(">H", 100) + b"\x01" + frame(b"x", flag=1))
write("grpc-deframer", "bad-flag", struct.pack(">H", 100) + b"\x09" + frame(b"x") + frame(b"y", flag=7))

# http2-server: chunk seed, then what a grpc client sends after the preface.
import h2.config  # noqa: E402
import h2.connection  # noqa: E402


def client(build):
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    c.initiate_connection()
    build(c)
    data = c.data_to_send()
    assert data.startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    return data[24:]


grpc_headers = [(":method", "POST"), (":scheme", "https"), (":path", "/fusebox.v1.PolicyService/GetPolicy"),
                (":authority", "localhost"), ("content-type", "application/grpc"), ("te", "trailers"),
                ("grpc-timeout", "5S")]


def unary(c):
    c.send_headers(1, grpc_headers)
    c.send_data(1, frame(b"\x0a\x03abc"), end_stream=True)


def ping_and_window(c):
    c.ping(b"12345678")
    c.increment_flow_control_window(65535)
    c.send_headers(1, grpc_headers)
    c.reset_stream(1)


def many_streams(c):
    for sid in (1, 3, 5):
        c.send_headers(sid, grpc_headers, end_stream=sid == 5)
    c.close_connection()


def served(path):
    return [(name, path if name == ":path" else value) for name, value in grpc_headers]


def fuzz_unary(c):
    # The method the target serves on the event loop, a call it passes on
    # (closes), and a unary call with two messages.
    c.send_headers(1, served("/fuzz.Echo/Unary"))
    c.send_data(1, frame(b"\x0a\x03abc"), end_stream=True)
    c.send_headers(3, served("/fuzz.Echo/Watch"))
    c.send_data(3, frame(b"\x0a\x01w"), end_stream=True)
    c.send_headers(5, served("/fuzz.Echo/Unary"))
    c.send_data(5, frame(b"") + frame(b""), end_stream=True)


write("http2-server", "settings-only", b"\x00" + client(lambda c: None))
write("http2-server", "served-calls", b"\x00" + client(fuzz_unary))
write("http2-server", "served-calls-split", b"\x07" + client(fuzz_unary))
write("http2-server", "unary-call", b"\x00" + client(unary))
write("http2-server", "unary-call-split", b"\x05" + client(unary))
write("http2-server", "ping-window-rst", b"\x00" + client(ping_and_window))
write("http2-server", "streams-goaway", b"\x02" + client(many_streams))

# tls-server: mode, chunk seed, records.
def client_hello(**kw):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    for k, v in kw.items():
        setattr(ctx, k, v)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    s = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        s.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


write("tls-server", "client-hello-tls13", b"\x00\x00" + client_hello())
write("tls-server", "client-hello-tls12", b"\x00\x03" + client_hello(maximum_version=ssl.TLSVersion.TLSv1_2))
alert = b"\x15\x03\x03\x00\x02\x02\x28"
write("tls-server", "alert-mid-handshake", b"\x01\x00" + alert)
write("tls-server", "ccs-and-garbage", b"\x01\x00" + b"\x14\x03\x03\x00\x01\x01" + b"\x16\x03\x03\x00\x04\x14\x00\x00\x00")
write("tls-server", "app-data-after-handshake", b"\x02\x00" + b"\x17\x03\x03\x00\x20" + bytes(range(32)))
write("tls-server", "alert-after-handshake-eof", b"\x82\x00" + alert)
write("tls-server", "sslv2-hello", b"\x00\x00" + b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10" + bytes(37))

# policy-yaml: the documented example, a minimal one, several documents, errors.
cli_md = (root / "docs" / "CLI.md").read_text()
example = re.search(r"```yaml\n(name: checkout-payments.*?)```", cli_md, re.S).group(1)
write("policy-yaml", "documented-example.yaml", example.encode())
write("policy-yaml", "minimal.yaml", b"name: api\ncircuitBreaker: {failureRateThreshold: 50}\n")
write("policy-yaml", "two-documents.yaml", b"name: a\nretry: {maxAttempts: 2}\n---\nname: b\ntimeout: {attemptMs: 100}\n")
write("policy-yaml", "fallback-static.yaml",
      b"name: f\nfallback:\n  triggers: [timeout]\n  action: {staticResponse: {contentType: text/plain, body: \"busy\"}}\n")
write("policy-yaml", "anchors.yaml", b"name: &n x\nlabels: {a: *n, <<: {b: c}}\nretry: !!map {maxAttempts: 3}\n")
write("policy-yaml", "typo.yaml", b"name: a\ncircuitBreaker:\n  failureRateThresold: 50\nretry:\n  maxAttempts: three\n")

# server-config: the shipped example, small ones, errors.
write("server-config", "fusebox.example.yaml", (root / "deploy" / "fusebox.example.yaml").read_bytes())
write("server-config", "etcd.yaml",
      b"store:\n  kind: etcd\n  etcd:\n    endpoints: [https://10.0.0.1:2379, 10.0.0.2:2379]\n    prefix: /fusebox\n"
      b"    leaseSeconds: 10\ncluster: {replicaId: r-1, advertise: \"fusebox-1:7443\"}\n")
write("server-config", "flat.yaml", b"listen.port: 0\nlimits.maxMessageBytes: 1024\nstore.etcd.endpoints: a:1,b:2\n")
write("server-config", "dashboard.yaml",
      b"dashboard:\n  port: 0\n  tokens:\n    - {name: alice, role: admin, sha256: " + b"0" * 64 + b"}\n")
write("server-config", "roles.yaml", b"roles:\n  - {field: dns, pattern: \"*.internal\", role: reporter}\n")
write("server-config", "bad.yaml", b"listen: {port: 99999}\nunknown: 1\n")
