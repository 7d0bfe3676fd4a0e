/// Why a message could not be decoded or encoded.
///
/// `description` reads like `fusebox.v1.Policy.retry.backoff: truncated: …`:
/// the message type, the field path where known, then what was wrong.
public struct WireError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure. New codes may be added; switch with a default.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// A short name, e.g. `"truncated"`.
        public let description: String
        private init(_ name: String) { self.description = name }

        /// The input is larger than `WireLimits.maxMessageBytes`.
        public static let messageTooLarge = Code("message too large")
        /// The input ends inside a field (a varint, a fixed value or a length-delimited payload).
        public static let truncated = Code("truncated")
        /// A varint runs past 10 bytes.
        public static let malformedVarint = Code("malformed varint")
        /// A field number of 0 or above 2^29-1.
        public static let invalidFieldNumber = Code("invalid field number")
        /// A known field arrived with a wire type its declared type cannot have.
        public static let wrongWireType = Code("wrong wire type")
        /// Groups (wire types 3 and 4) or the undefined wire types 6 and 7.
        public static let unsupportedWireType = Code("unsupported wire type")
        /// A string field that is not valid UTF-8.
        public static let invalidUTF8 = Code("invalid UTF-8")
        /// A string field with a NUL byte: protobuf-c would silently cut it there.
        public static let embeddedNUL = Code("embedded NUL")
        /// protobuf-c refused the input for a reason the pre-checks did not find.
        public static let rejectedByProtobufC = Code("rejected by protobuf-c")
    }

    /// The kind of failure.
    public var code: Code
    /// Full Protobuf name of the message being decoded or encoded.
    public var messageType: String
    /// Dotted path of the field inside that message (`retry.backoff.max_ms`), if known.
    public var fieldPath: String?
    /// What was wrong, for a person.
    public var message: String

    /// Creates an error.
    public init(code: Code, messageType: String, fieldPath: String? = nil, message: String) {
        self.code = code
        self.messageType = messageType
        self.fieldPath = fieldPath
        self.message = message
    }

    /// `type.field: code: message`.
    public var description: String {
        let location = fieldPath.map { "\(messageType).\($0)" } ?? messageType
        return "\(location): \(code): \(message)"
    }
}
