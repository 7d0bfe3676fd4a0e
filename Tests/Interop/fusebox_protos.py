"""Compiles Protos/ for Python (grpcio-tools) and imports the modules.

The grpc/health/v1 module is loaded by path: as a package name, "grpc" would
resolve to grpcio itself.
"""
import importlib
import importlib.util
import pathlib
import sys

from grpc_tools import protoc


def compile_protos(protos, out, grpc_stubs=False):
    """Compiles every proto (and, with `grpc_stubs`, the grpcio service stubs
    of fusebox.v1) into `out` and returns the message modules by file."""
    protos = pathlib.Path(protos).resolve()
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(str(p.relative_to(protos)) for p in protos.rglob("*.proto"))
    status = protoc.main(["protoc", f"-I{protos}", f"--python_out={out}", *files])
    if status == 0 and grpc_stubs:
        fusebox = [f for f in files if f.startswith("fusebox/")]
        status = protoc.main(["protoc", f"-I{protos}", f"--grpc_python_out={out}", *fusebox])
    if status != 0:
        sys.exit(f"protoc failed for {files}")
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    return {f: _load(out, f) for f in files}


def _load(out, proto):
    name = proto[:-len(".proto")].replace("/", ".") + "_pb2"
    if not proto.startswith("grpc/"):
        return importlib.import_module(name)
    path = out / (proto[:-len(".proto")] + "_pb2.py")
    spec = importlib.util.spec_from_file_location("interop_" + name.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
