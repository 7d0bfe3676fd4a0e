"""The committed stubs in src/fusebox/v1 describe Protos/fusebox/v1 exactly:
each module's file descriptor equals the one protoc makes from Protos/ now,
and each service stub has every method. (Descriptors, not text, are compared:
another grpcio-tools version writes the same descriptors differently.)
Regenerate with scripts/gen-python-protos."""
from __future__ import annotations

import importlib
import pathlib

import pytest
from google.protobuf import descriptor_pb2

ROOT = pathlib.Path(__file__).resolve().parents[3]
PROTOS = ROOT / "Protos"
GENERATED = ROOT / "clients" / "python" / "src" / "fusebox" / "v1"


def fresh_descriptors(tmp_path) -> dict:
    from grpc_tools import protoc
    files = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "fusebox" / "v1").glob("*.proto"))
    out = tmp_path / "set.pb"
    status = protoc.main(["protoc", f"-I{PROTOS}", f"--descriptor_set_out={out}", *files])
    assert status == 0, f"protoc failed on {files}"
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    for f in fds.file:
        _drop_json_names(f.message_type)  # protoc adds them to descriptor sets, not to the Python modules
    return {f.name: f for f in fds.file}


def _drop_json_names(messages) -> None:
    for m in messages:
        for field in m.field:
            field.ClearField("json_name")
        _drop_json_names(m.nested_type)


def test_every_proto_has_a_committed_module_and_no_module_is_left_over(tmp_path):
    fresh = fresh_descriptors(tmp_path)
    expected = {pathlib.Path(name).stem + "_pb2.py" for name in fresh}
    committed = {p.name for p in GENERATED.glob("*_pb2.py")}
    assert committed == expected, "run scripts/gen-python-protos"


@pytest.mark.parametrize("proto", sorted(p.name for p in (PROTOS / "fusebox" / "v1").glob("*.proto")))
def test_committed_module_matches_the_proto(proto, tmp_path):
    fresh = fresh_descriptors(tmp_path)[f"fusebox/v1/{proto}"]
    module = importlib.import_module(f"fusebox.v1.{pathlib.Path(proto).stem}_pb2")
    committed = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
    assert committed == fresh, f"src/fusebox/v1 is stale for {proto}: run scripts/gen-python-protos"
    grpc_module = importlib.import_module(f"fusebox.v1.{pathlib.Path(proto).stem}_pb2_grpc")
    for service in fresh.service:
        stub = getattr(grpc_module, f"{service.name}Stub")
        source = pathlib.Path(grpc_module.__file__).read_text()
        for method in service.method:
            assert f"/{fresh.package}.{service.name}/{method.name}" in source, f"{service.name}.{method.name} has no stub: run scripts/gen-python-protos"
        assert stub is not None
