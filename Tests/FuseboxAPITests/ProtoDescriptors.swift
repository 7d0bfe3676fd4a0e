import CProtobufC
import FuseboxProtoC

/// What the protobuf-c descriptors compiled from `Protos/` say about field
/// paths of `fusebox.v1.Policy`: the ground truth the path table is checked
/// against, independent of the table.
enum ProtoDescriptors {
    /// How a path ends, as the descriptors declare the last field.
    enum Shape: Equatable {
        case singular
        case repeated
        case map
    }

    /// A path resolved field by field.
    struct Resolved: Equatable {
        /// Field numbers from `Policy` down, for request order.
        var numbers: [UInt32]
        /// The last field's shape.
        var shape: Shape
        /// Whether the path ends with `[index]` or `["key"]`.
        var subscripted: Bool
    }

    /// The descriptor of `fusebox.v1.Policy`, as protobuf-c's init sets it.
    static var policy: UnsafePointer<ProtobufCMessageDescriptor> {
        var message = Fusebox__V1__Policy()
        fusebox__v1__policy__init(&message)
        return message.base.descriptor
    }

    static func fields(of d: UnsafePointer<ProtobufCMessageDescriptor>) -> [ProtobufCFieldDescriptor] {
        (0..<Int(d.pointee.n_fields)).map { d.pointee.fields[$0] }
    }

    static func name(_ f: ProtobufCFieldDescriptor) -> String { String(cString: f.name) }

    static func messageType(_ f: ProtobufCFieldDescriptor) -> UnsafePointer<ProtobufCMessageDescriptor>? {
        guard f.type == PROTOBUF_C_TYPE_MESSAGE, let d = f.descriptor else { return nil }
        return d.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)
    }

    /// protoc-c turns `map<K, V>` into a repeated `…Entry` message of `key` and `value`.
    static func shape(_ f: ProtobufCFieldDescriptor) -> Shape {
        guard f.label == PROTOBUF_C_LABEL_REPEATED else { return .singular }
        if let entry = messageType(f), String(cString: entry.pointee.name).hasSuffix("Entry"),
            fields(of: entry).map(name) == ["key", "value"]
        {
            return .map
        }
        return .repeated
    }

    /// `path` (proto names, `.`-separated, an optional `[n]` or `["key"]`
    /// after a field) resolved against the descriptors; nil when a segment
    /// is not a field, a subscript does not fit the field, or a segment
    /// follows a field that is not a message.
    static func resolve(_ path: String) -> Resolved? {
        var descriptor: UnsafePointer<ProtobufCMessageDescriptor>? = policy
        var resolved = Resolved(numbers: [], shape: .singular, subscripted: false)
        var rest = Substring(path)
        while !rest.isEmpty {
            guard let current = descriptor else { return nil }
            let nameEnd = rest.firstIndex { $0 == "." || $0 == "[" } ?? rest.endIndex
            let segment = String(rest[..<nameEnd])
            rest = rest[nameEnd...]
            guard let field = fields(of: current).first(where: { name($0) == segment }) else { return nil }
            resolved.numbers.append(field.id)
            resolved.shape = shape(field)
            resolved.subscripted = false
            if rest.hasPrefix("[") {
                guard let close = subscriptEnd(rest) else { return nil }
                let inside = rest[rest.index(after: rest.startIndex)..<close]
                switch resolved.shape {
                case .repeated: guard Int(inside) != nil else { return nil }
                case .map: guard inside.hasPrefix("\""), inside.hasSuffix("\""), inside.count >= 2 else { return nil }
                case .singular: return nil
                }
                resolved.subscripted = true
                rest = rest[rest.index(after: close)...]
            }
            descriptor = resolved.shape == .map ? nil : messageType(field)
            if rest.hasPrefix(".") {
                rest = rest.dropFirst()
                if rest.isEmpty { return nil }
            } else if !rest.isEmpty {
                return nil
            }
        }
        return resolved.numbers.isEmpty ? nil : resolved
    }

    /// The `]` that closes the subscript `text` starts with, skipping quoted text.
    private static func subscriptEnd(_ text: Substring) -> Substring.Index? {
        var quoted = false
        var escaped = false
        for i in text.indices.dropFirst() {
            let c = text[i]
            if escaped {
                escaped = false
            } else if quoted, c == "\\" {
                escaped = true
            } else if c == "\"" {
                quoted.toggle()
            } else if !quoted, c == "]" {
                return i
            }
        }
        return nil
    }

    /// Every field path under `Policy`, a message before its fields, in
    /// field-number order; maps and repeated fields are not descended into.
    static func allPaths() -> [String] {
        var out: [String] = []
        func walk(_ d: UnsafePointer<ProtobufCMessageDescriptor>, _ prefix: String) {
            for f in fields(of: d).sorted(by: { $0.id < $1.id }) {
                let path = prefix.isEmpty ? name(f) : "\(prefix).\(name(f))"
                out.append(path)
                if shape(f) == .singular, let sub = messageType(f) { walk(sub, path) }
            }
        }
        walk(policy, "")
        return out
    }
}
