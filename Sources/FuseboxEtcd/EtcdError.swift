public import FuseboxRPC

/// Why an etcd operation failed: a code to switch on, a message for people,
/// and the endpoint that answered (or could not be reached).
public struct EtcdError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure; extensible, compare with the static members.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        /// The name, e.g. `unavailable`.
        public let name: String
        init(_ name: String) { self.name = name }
        /// The description is the name.
        public var description: String { name }

        /// No endpoint could be reached, or the connection was lost. Retried on another endpoint.
        public static let unavailable = Code("unavailable")
        /// etcd answered "etcdserver: leader changed". Retried.
        public static let leaderChanged = Code("leaderChanged")
        /// etcd answered "etcdserver: no leader": the member is cut off from a quorum. Retried.
        public static let noLeader = Code("noLeader")
        /// The requested revision has been compacted away; re-read at the latest revision.
        public static let compacted = Code("compacted")
        /// The requested revision is newer than the store's.
        public static let futureRevision = Code("futureRevision")
        /// The lease does not exist (it expired or was revoked).
        public static let leaseNotFound = Code("leaseNotFound")
        /// A lease could not be renewed before it expired, or etcd reported it gone.
        public static let leaseLost = Code("leaseLost")
        /// The request timed out (the client's own timeout).
        public static let deadlineExceeded = Code("deadlineExceeded")
        /// The request was malformed, or the configuration is unusable.
        public static let invalidArgument = Code("invalidArgument")
        /// The caller's task was cancelled.
        public static let cancelled = Code("cancelled")
        /// etcd ended a watch for a reason other than compaction.
        public static let watchCanceled = Code("watchCanceled")
        /// Anything else etcd or the transport reported.
        public static let other = Code("other")
    }

    /// What kind of failure.
    public var code: Code
    /// What happened, with the details etcd gave.
    public var message: String
    /// The endpoint ("host:port") involved, when one was.
    public var endpoint: String?
    /// The gRPC error underneath, when there was one.
    public var cause: RPCError?

    /// An error.
    public init(_ code: Code, _ message: String, endpoint: String? = nil, cause: RPCError? = nil) {
        self.code = code
        self.message = message
        self.endpoint = endpoint
        self.cause = cause
    }

    /// `code: message (endpoint host:port)`.
    public var description: String {
        "\(code): \(message)" + (endpoint.map { " (endpoint \($0))" } ?? "")
    }

    /// Classifies a gRPC failure by the status etcd sends (etcd 3.4 puts its
    /// reason in the status message, e.g. "etcdserver: leader changed").
    init(_ error: RPCError, endpoint: String) {
        let message = error.message
        let code: Code
        if message.contains("leader changed") {
            code = .leaderChanged
        } else if message.contains("no leader") {
            code = .noLeader
        } else if message.contains("required revision has been compacted") {
            code = .compacted
        } else if message.contains("required revision is a future revision") {
            code = .futureRevision
        } else if message.contains("requested lease not found") {
            code = .leaseNotFound
        } else {
            switch error.code {
            case .unavailable: code = .unavailable
            case .deadlineExceeded: code = .deadlineExceeded
            case .invalidArgument, .outOfRange, .failedPrecondition: code = .invalidArgument
            case .cancelled: code = .cancelled
            default: code = .other
            }
        }
        self.init(code, message.isEmpty ? "\(error.code)" : message, endpoint: endpoint, cause: error)
    }
}
