/// gRPC status codes (grpc/grpc doc/statuscodes.md).
public enum RPCStatusCode: Int, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case ok = 0
    case cancelled = 1
    case unknown = 2
    case invalidArgument = 3
    case deadlineExceeded = 4
    case notFound = 5
    case alreadyExists = 6
    case permissionDenied = 7
    case resourceExhausted = 8
    case failedPrecondition = 9
    case aborted = 10
    case outOfRange = 11
    case unimplemented = 12
    case `internal` = 13
    case unavailable = 14
    case dataLoss = 15
    case unauthenticated = 16

    /// The wire name, e.g. `DEADLINE_EXCEEDED`.
    public var description: String {
        switch self {
        case .ok: return "OK"
        case .cancelled: return "CANCELLED"
        case .unknown: return "UNKNOWN"
        case .invalidArgument: return "INVALID_ARGUMENT"
        case .deadlineExceeded: return "DEADLINE_EXCEEDED"
        case .notFound: return "NOT_FOUND"
        case .alreadyExists: return "ALREADY_EXISTS"
        case .permissionDenied: return "PERMISSION_DENIED"
        case .resourceExhausted: return "RESOURCE_EXHAUSTED"
        case .failedPrecondition: return "FAILED_PRECONDITION"
        case .aborted: return "ABORTED"
        case .outOfRange: return "OUT_OF_RANGE"
        case .unimplemented: return "UNIMPLEMENTED"
        case .internal: return "INTERNAL"
        case .unavailable: return "UNAVAILABLE"
        case .dataLoss: return "DATA_LOSS"
        case .unauthenticated: return "UNAUTHENTICATED"
        }
    }
}

/// A call that ended with a status other than OK: its code, its message, and
/// any trailing metadata. Handlers throw it to choose the status; clients
/// receive it. Any other error a handler throws becomes UNKNOWN.
public struct RPCError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The status code.
    public var code: RPCStatusCode
    /// The status message, for people.
    public var message: String
    /// Trailing metadata sent with the status.
    public var metadata: RPCMetadata

    /// An error.
    public init(_ code: RPCStatusCode, _ message: String, metadata: RPCMetadata = RPCMetadata()) {
        self.code = code
        self.message = message
        self.metadata = metadata
    }

    /// `CODE: message`.
    public var description: String { message.isEmpty ? "\(code)" : "\(code): \(message)" }
}
