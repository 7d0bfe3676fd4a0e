import CProtobufC

/// Walks a Protobuf encoding against a protobuf-c descriptor before protobuf-c
/// unpacks it, for what protobuf-c does not check or does not explain:
///
/// - strings with a NUL byte (protobuf-c would silently cut them) or invalid UTF-8;
/// - where the input is broken: a truncated field, an over-long varint, a wrong
///   wire type for a known field, groups, field number 0 — named by field path.
///
/// Unknown fields are skipped, as Protobuf requires. The walk follows the
/// schema, which has no recursive messages, so its depth is bounded.
struct WireScanner {
    let messageType: String

    /// Checks `bytes` as one message described by `descriptor`; `path` gives the
    /// field path to it. Paths are built only when an error names one: a
    /// valid message costs no string work.
    func scan(
        _ bytes: UnsafeBufferPointer<UInt8>,
        descriptor: UnsafePointer<ProtobufCMessageDescriptor>,
        path: () -> String?
    ) throws(WireError) {
        var reader = Reader(bytes: bytes)
        while !reader.isAtEnd {
            let key = try reader.varint(or: fail(.truncated, path(), "a field key runs past the end of the input"))
            let number = key >> 3
            let wireType = Int(key & 7)
            guard number >= 1, number <= 536_870_911 else {
                throw fail(.invalidFieldNumber, path(), "field number \(number) is outside 1...536870911")
            }
            let field = protobuf_c_message_descriptor_get_field(descriptor, UInt32(number))
            func fieldPath() -> String {
                let name = field.map { String(cString: $0.pointee.name) } ?? "#\(number)"
                return path().map { $0 + "." + name } ?? name
            }
            switch wireType {
            case 0:
                try expect(field, allows: 0, fieldPath)
                _ = try reader.varint(or: fail(.truncated, fieldPath(), "the varint value runs past the end of the input"))
            case 1, 5:
                try expect(field, allows: wireType, fieldPath)
                let width = wireType == 1 ? 8 : 4
                guard reader.skip(width) else {
                    throw fail(.truncated, fieldPath(), "a \(width)-byte value needs \(width) bytes, \(reader.remaining) remain")
                }
            case 2:
                try expect(field, allows: 2, fieldPath)
                let length = try reader.varint(or: fail(.truncated, fieldPath(), "the length prefix runs past the end of the input"))
                guard length <= UInt64(reader.remaining) else {
                    throw fail(.truncated, fieldPath(), "the length prefix says \(length) bytes, \(reader.remaining) remain")
                }
                let payload = reader.take(Int(length))
                if let field {
                    try check(payload, field: field, fieldPath)
                }
            case 3, 4:
                throw fail(.unsupportedWireType, fieldPath(), "groups (wire type \(wireType)) are not used by this API")
            default:
                throw fail(.unsupportedWireType, fieldPath(), "wire type \(wireType) does not exist")
            }
        }
    }

    private func check(
        _ payload: UnsafeBufferPointer<UInt8>,
        field: UnsafePointer<ProtobufCFieldDescriptor>,
        _ fieldPath: () -> String
    ) throws(WireError) {
        switch field.pointee.type {
        case PROTOBUF_C_TYPE_STRING:
            // One pass finds NUL bytes and whether anything is beyond ASCII;
            // only then is the slower UTF-8 validation needed.
            var ascii = true
            for byte in payload {
                if byte == 0 {
                    throw fail(.embeddedNUL, fieldPath(), "the string holds a NUL byte, which protobuf-c would silently cut off")
                }
                if byte >= 0x80 { ascii = false }
            }
            if !ascii, String(validating: payload, as: UTF8.self) == nil {
                throw fail(.invalidUTF8, fieldPath(), "the string of \(payload.count) bytes is not valid UTF-8")
            }
        case PROTOBUF_C_TYPE_MESSAGE:
            guard let sub = field.pointee.descriptor else { return }
            try scan(payload, descriptor: sub.assumingMemoryBound(to: ProtobufCMessageDescriptor.self), path: { fieldPath() })
        default:
            break  // bytes, or a packed repeated scalar
        }
    }

    /// Throws when a known field cannot arrive with `wireType`.
    private func expect(
        _ field: UnsafePointer<ProtobufCFieldDescriptor>?,
        allows wireType: Int,
        _ fieldPath: () -> String
    ) throws(WireError) {
        guard let field else { return }
        let natural = Self.naturalWireType(field.pointee.type)
        let packable = natural != 2 && field.pointee.label == PROTOBUF_C_LABEL_REPEATED
        if wireType == natural || (wireType == 2 && packable) { return }
        throw fail(
            .wrongWireType, fieldPath(),
            "wire type \(wireType) arrived, but the field is declared with wire type \(natural)"
        )
    }

    private static func naturalWireType(_ type: ProtobufCType) -> Int {
        switch type {
        case PROTOBUF_C_TYPE_FIXED64, PROTOBUF_C_TYPE_SFIXED64, PROTOBUF_C_TYPE_DOUBLE: return 1
        case PROTOBUF_C_TYPE_FIXED32, PROTOBUF_C_TYPE_SFIXED32, PROTOBUF_C_TYPE_FLOAT: return 5
        case PROTOBUF_C_TYPE_STRING, PROTOBUF_C_TYPE_BYTES, PROTOBUF_C_TYPE_MESSAGE: return 2
        default: return 0
        }
    }

    private func fail(_ code: WireError.Code, _ fieldPath: String?, _ message: String) -> WireError {
        WireError(code: code, messageType: messageType, fieldPath: fieldPath, message: message)
    }
}

/// A bounds-checked cursor over input bytes.
private struct Reader {
    let bytes: UnsafeBufferPointer<UInt8>
    var offset = 0

    var isAtEnd: Bool { offset >= bytes.count }
    var remaining: Int { bytes.count - offset }

    /// A base-128 varint of at most 10 bytes.
    mutating func varint(or error: @autoclosure () -> WireError) throws(WireError) -> UInt64 {
        var value: UInt64 = 0
        for shift in stride(from: 0, to: 70, by: 7) {
            guard offset < bytes.count else { throw error() }
            let byte = bytes[offset]
            offset += 1
            value |= UInt64(byte & 0x7f) << UInt64(shift)
            if byte & 0x80 == 0 { return value }
        }
        var tooLong = error()
        tooLong.code = .malformedVarint
        tooLong.message = "a varint runs past 10 bytes"
        throw tooLong
    }

    mutating func skip(_ count: Int) -> Bool {
        guard count <= remaining else { return false }
        offset += count
        return true
    }

    mutating func take(_ count: Int) -> UnsafeBufferPointer<UInt8> {
        let slice = UnsafeBufferPointer(rebasing: bytes[offset..<offset + count])
        offset += count
        return slice
    }
}
