import CProtobufC

/// The steps every generated message shares: decoding through protobuf-c with
/// our checks in front, and reading C values back into Swift.
enum WireRuntime {
    /// Decodes `bytes` as the protoc-c message type `C` and converts it to Swift.
    ///
    /// Order: the size limit; `WireScanner` (structure, wire types, strings),
    /// so that errors name the field; protobuf-c's unpack; the conversion. The
    /// unpacked C message is freed exactly once, whether conversion succeeds or not.
    static func decode<C, Message>(
        _ bytes: UnsafeRawBufferPointer,
        limits: WireLimits,
        messageType: String,
        initialize: (UnsafeMutablePointer<C>?) -> Void,
        unpack: (UnsafeMutablePointer<ProtobufCAllocator>?, Int, UnsafePointer<UInt8>?) -> UnsafeMutablePointer<C>?,
        free: (UnsafeMutablePointer<C>?, UnsafeMutablePointer<ProtobufCAllocator>?) -> Void,
        convert: (UnsafePointer<C>) -> Message
    ) throws(WireError) -> Message {
        guard bytes.count <= limits.maxMessageBytes else {
            throw WireError(
                code: .messageTooLarge, messageType: messageType,
                message: "\(bytes.count) bytes exceed the limit of \(limits.maxMessageBytes) bytes"
            )
        }
        guard let descriptor = descriptorOf(initialize) else {
            throw WireError(code: .rejectedByProtobufC, messageType: messageType, message: "no protobuf-c descriptor")
        }
        let input = bytes.bindMemory(to: UInt8.self)
        try WireScanner(messageType: messageType).scan(input, descriptor: descriptor, path: { nil })
        guard let message = unpack(nil, input.count, input.baseAddress) else {
            throw WireError(
                code: .rejectedByProtobufC, messageType: messageType,
                message: "protobuf-c could not unpack the \(bytes.count) bytes"
            )
        }
        defer { free(message, nil) }
        return convert(message)
    }

    /// The protobuf-c descriptor of a message type, read from a freshly
    /// initialised struct in stack space (no heap allocation per decode).
    private static func descriptorOf<C>(
        _ initialize: (UnsafeMutablePointer<C>?) -> Void
    ) -> UnsafePointer<ProtobufCMessageDescriptor>? {
        withUnsafeTemporaryAllocation(of: C.self, capacity: 1) { scratch in
            guard let base = scratch.baseAddress else { return nil }
            initialize(base)
            return UnsafeMutableRawPointer(base).assumingMemoryBound(to: ProtobufCMessage.self).pointee.descriptor
        }
    }

    /// A C string as Swift (already checked for UTF-8 by `WireScanner`).
    @inline(__always)
    static func string(_ p: UnsafeMutablePointer<CChar>?) -> String {
        guard let p else { return "" }
        return String(cString: p)
    }

    /// protobuf-c binary data as bytes.
    @inline(__always)
    static func bytes(_ b: ProtobufCBinaryData) -> [UInt8] {
        guard let data = b.data, b.len > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: b.len))
    }
}
