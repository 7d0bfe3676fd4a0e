#!/usr/bin/env python3
"""Wire interoperability between FuseboxWire (protobuf-c) and Python's protobuf.

Compiles Protos/ for Python with grpcio-tools, then for every message type of
the API and every sample variant:
  1. decodes the bytes Swift wrote to DIR/swift/<type>.<variant>.bin and checks
     they equal the sample built here;
  2. writes Python's own encoding of the sample to DIR/python/<type>.<variant>.bin
     for the Swift side to decode and check.

The samples follow the rule documented in scripts/protoc-gen-fbswift, built here
independently through protobuf's reflection API.

Usage: wire_interop.py --protos PROTOS_DIR --dir WORK_DIR
Exit status 0 when every type matched; otherwise each mismatch is printed.
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import fusebox_protos  # noqa: E402

from google.protobuf.descriptor import FieldDescriptor as FD


def compile_protos(protos, out):
    return list(fusebox_protos.compile_protos(protos, out).values())


def all_messages(modules):
    def walk(desc):
        if desc.GetOptions().map_entry:
            return
        yield desc
        for nested in desc.nested_types:
            yield from walk(nested)
    for module in modules:
        for desc in module.DESCRIPTOR.message_types_by_name.values():
            yield from walk(desc)


def is_repeated(field):
    # protobuf >= 5 has is_repeated; older releases only `label`.
    if hasattr(field, "is_repeated"):
        return field.is_repeated
    return field.label == FD.LABEL_REPEATED


def variant_count(desc):
    return max([1] + [len(o.fields) for o in desc.oneofs])


def scalar(field, v, i):
    n, t = field.number, field.type
    if t in (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32):
        return -(n * 3 + 1 + i)
    if t in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64):
        return -(n * 1000000007 + i)
    if t in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
        return 4000000000 - n - i
    if t in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
        return n * 1000000000000 + 1 + i
    if t in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        return n + 0.5 + i
    if t == FD.TYPE_BOOL:
        return i == 0
    if t == FD.TYPE_STRING:
        return f"{field.name}-{v}-{i}-é✓"
    if t == FD.TYPE_BYTES:
        return bytes([0, 255, n, i])
    if t == FD.TYPE_ENUM:
        values = [x for x in field.enum_type.values if x.number != 0]
        return values[-1 - (i % len(values))].number
    raise ValueError(f"unexpected type {t} of {field.full_name}")


def sample(cls_of, desc, v):
    msg = cls_of(desc)()
    chosen = {o.name: o.fields[v % len(o.fields)].name for o in desc.oneofs}
    for field in desc.fields:
        if field.containing_oneof is not None and chosen[field.containing_oneof.name] != field.name:
            continue
        is_map = field.type == FD.TYPE_MESSAGE and field.message_type.GetOptions().map_entry
        if is_map:
            key_f = field.message_type.fields_by_name["key"]
            val_f = field.message_type.fields_by_name["value"]
            for i in (0, 1):
                target = getattr(msg, field.name)
                if val_f.type == FD.TYPE_MESSAGE:
                    target[scalar(key_f, v, i)].CopyFrom(sample(cls_of, val_f.message_type, v % variant_count(val_f.message_type)))
                else:
                    target[scalar(key_f, v, i)] = scalar(val_f, v, i)
        elif field.type == FD.TYPE_MESSAGE:
            sub = sample(cls_of, field.message_type, v % variant_count(field.message_type))
            if is_repeated(field):
                getattr(msg, field.name).add().CopyFrom(sub)
                getattr(msg, field.name).add().CopyFrom(sub)
            else:
                getattr(msg, field.name).CopyFrom(sub)
        elif is_repeated(field):
            getattr(msg, field.name).extend([scalar(field, v, 0), scalar(field, v, 1)])
        else:
            setattr(msg, field.name, scalar(field, v, 0))
    return msg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--protos", required=True, type=pathlib.Path)
    ap.add_argument("--dir", required=True, type=pathlib.Path)
    args = ap.parse_args()

    modules = compile_protos(args.protos.resolve(), args.dir / "py")
    from google.protobuf import message_factory

    def cls_of(desc):
        return message_factory.GetMessageClass(desc)

    (args.dir / "python").mkdir(exist_ok=True)
    problems, checked = [], 0
    for desc in all_messages(modules):
        for v in range(variant_count(desc)):
            expected = sample(cls_of, desc, v)
            if desc.fields and expected == cls_of(desc)():
                problems.append(f"{desc.full_name}.{v}: the sample is all defaults")
            name = f"{desc.full_name}.{v}.bin"
            swift_file = args.dir / "swift" / name
            if not swift_file.exists():
                problems.append(f"{desc.full_name}.{v}: Swift wrote no encoding (type missing in FuseboxWire?)")
            else:
                got = cls_of(desc)()
                try:
                    got.ParseFromString(swift_file.read_bytes())
                except Exception as e:  # noqa: BLE001 - report any parse failure
                    problems.append(f"{desc.full_name}.{v}: Python could not parse Swift's bytes: {e}")
                else:
                    if got != expected:
                        problems.append(f"{desc.full_name}.{v}: Swift's bytes decode to\n{got}\nexpected\n{expected}")
            (args.dir / "python" / name).write_bytes(expected.SerializeToString())
            checked += 1
    print(f"wire_interop: {checked} message samples checked, {len(problems)} problems")
    for p in problems:
        print("  " + p.replace("\n", "\n    "))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
