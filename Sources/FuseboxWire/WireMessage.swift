/// A Protobuf message of the Fusebox API as a Swift value.
///
/// Every conforming type is generated from `Protos/` by `scripts/gen-protos`;
/// encoding and decoding go through the protobuf-c code generated from the
/// same files, so Swift and C cannot disagree about the wire format.
public protocol WireMessage: Sendable, Equatable {
    /// The full Protobuf name, e.g. `"fusebox.v1.Policy"`.
    static var protoName: String { get }

    /// Creates a message with every field at its default.
    init()

    /// Decodes the Protobuf encoding in `bytes`.
    ///
    /// - Throws: `WireError` naming the message type, the field path where
    ///   known, and what was wrong: too large, truncated, a wrong wire type,
    ///   a string with a NUL byte or invalid UTF-8, or input protobuf-c rejects.
    init(decoding bytes: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError)

    /// The Protobuf encoding of this message.
    ///
    /// - Throws: `WireError` with code `.embeddedNUL` when a string field holds
    ///   a NUL byte, which protobuf-c's C strings cannot carry.
    func encode() throws(WireError) -> [UInt8]
}

extension WireMessage {
    /// Decodes the Protobuf encoding in `bytes` (see `init(decoding:limits:)`).
    public init(decoding bytes: [UInt8], limits: WireLimits = .default) throws(WireError) {
        let result = bytes.withUnsafeBytes { buffer in
            Result { () throws(WireError) -> Self in try Self(decoding: buffer, limits: limits) }
        }
        self = try result.get()
    }
}
