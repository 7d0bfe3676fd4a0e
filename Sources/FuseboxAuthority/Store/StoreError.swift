/// Why the store could not do something.
public struct StoreError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// A short name.
        public let description: String
        private init(_ name: String) { self.description = name }

        /// The database file is damaged or not a database.
        public static let corrupt = Code("corrupt")
        /// The database was written by a newer fuseboxd.
        public static let newerSchema = Code("newer schema")
        /// The database could not be reached (busy, read-only, I/O error, disk full).
        public static let unavailable = Code("unavailable")
        /// The expected version did not match (optimistic concurrency).
        public static let versionConflict = Code("version conflict")
        /// The thing asked for does not exist.
        public static let notFound = Code("not found")
        /// Anything else.
        public static let `internal` = Code("internal")
        /// A replicated store refused a decider's write because another
        /// replica has taken over the decisions: this one must step down.
        public static let fenced = Code("fenced")
        /// A limit on what the store holds was reached (`AuthorityLimits`).
        public static let resourceExhausted = Code("resource exhausted")
    }

    /// The kind of failure.
    public var code: Code
    /// What happened and what to do.
    public var message: String
    /// For a version conflict: the version the store holds.
    public var currentVersion: UInt64?

    /// An error.
    public init(_ code: Code, _ message: String, currentVersion: UInt64? = nil) {
        self.code = code
        self.message = message
        self.currentVersion = currentVersion
    }

    /// `store <code>: <message>`.
    public var description: String { "store \(code): \(message)" }
}

extension StoreError {
    /// A write's `expectedVersion` that is not the policy's current version
    /// (`exists`: whether the policy exists; 0 is its version if not).
    public static func staleVersion(registry: String, name: String, expected: UInt64, current: UInt64, exists: Bool) -> StoreError {
        StoreError(
            .versionConflict,
            exists
                ? "policy \(registry)/\(name) is at version \(current), not \(expected); read it again and retry"
                : "policy \(registry)/\(name) does not exist (expected version \(expected))",
            currentVersion: current)
    }
}
