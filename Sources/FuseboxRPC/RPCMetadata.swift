import Foundation

/// gRPC metadata: ordered key/value pairs. Keys are lowercase ASCII; keys
/// ending in `-bin` carry binary values (base64 on the wire), others ASCII.
public struct RPCMetadata: Sendable, Hashable, Sequence {
    /// One value.
    public enum Value: Sendable, Hashable {
        /// Printable ASCII.
        case string(String)
        /// Bytes (key ends in `-bin`).
        case binary([UInt8])
    }

    private var entries: [(key: String, value: Value)] = []

    /// Empty metadata.
    public init() {}

    /// Appends a string value (for a non `-bin` key).
    public mutating func add(_ key: String, _ value: String) {
        entries.append((key.lowercased(), .string(value)))
    }

    /// Appends a binary value; the key must end in `-bin`.
    public mutating func add(_ key: String, binary value: [UInt8]) {
        entries.append((key.lowercased(), .binary(value)))
    }

    /// All values of `key`.
    public subscript(key: String) -> [Value] {
        let k = key.lowercased()
        return entries.filter { $0.key == k }.map(\.value)
    }

    /// The first string value of `key`.
    public func first(_ key: String) -> String? {
        for case .string(let s) in self[key] { return s }
        return nil
    }

    /// The first binary value of `key`.
    public func firstBinary(_ key: String) -> [UInt8]? {
        for case .binary(let b) in self[key] { return b }
        return nil
    }

    /// Number of entries.
    public var count: Int { entries.count }

    public func makeIterator() -> some IteratorProtocol<(key: String, value: Value)> {
        entries.makeIterator()
    }

    public static func == (lhs: RPCMetadata, rhs: RPCMetadata) -> Bool {
        lhs.entries.elementsEqual(rhs.entries) { $0.key == $1.key && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for (key, value) in entries {
            hasher.combine(key)
            hasher.combine(value)
        }
    }

    /// Headers that are the protocol's own and never metadata.
    static let reserved: Set<String> = [
        "content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "grpc-status", "grpc-message",
        "grpc-status-details-bin", "user-agent", "content-length", "host", "connection",
    ]

    /// Metadata from HTTP/2 headers: pseudo-headers and reserved ones are
    /// skipped; `-bin` values are base64-decoded (padded or not).
    init(headers: some Sequence<(name: String, value: String)>) throws(RPCError) {
        for (name, value) in headers where !name.hasPrefix(":") && !Self.reserved.contains(name) {
            if name.hasSuffix("-bin") {
                guard let bytes = Self.base64Decode(value) else {
                    throw RPCError(.internal, "metadata \(name) is not valid base64")
                }
                entries.append((name, .binary(bytes)))
            } else {
                entries.append((name, .string(value)))
            }
        }
    }

    /// As HTTP/2 header fields.
    var headerFields: [(String, String)] {
        entries.map { entry in
            switch entry.value {
            case .string(let s): return (entry.key, s)
            case .binary(let b): return (entry.key, Data(b).base64EncodedString())
            }
        }
    }

    static func base64Decode(_ text: String) -> [UInt8]? {
        var padded = text.trimmingCharacters(in: .whitespaces)
        while padded.count % 4 != 0 { padded += "=" }
        return Data(base64Encoded: padded).map { [UInt8]($0) }
    }
}
