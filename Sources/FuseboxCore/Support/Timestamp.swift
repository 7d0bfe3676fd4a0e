/// A point in time in milliseconds, as the owner's clock gives it.
///
/// FuseboxCore never reads a clock: every state machine takes the current
/// `Timestamp` as an argument, so tests move time by hand and never sleep.
/// Whether it is wall-clock (the server, which persists deadlines) or
/// monotonic (the client) is the owner's choice; one machine must see one kind.
public struct Timestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Milliseconds since the owner's epoch.
    public var milliseconds: Int64

    /// Creates a timestamp.
    public init(milliseconds: Int64) {
        self.milliseconds = milliseconds
    }

    /// The timestamp `ms` milliseconds later (saturating).
    public func adding(milliseconds ms: Int64) -> Timestamp {
        Timestamp(milliseconds: milliseconds.addingReportingOverflow(ms).overflow ? .max : milliseconds + ms)
    }

    /// Milliseconds from `other` to `self` (negative if `other` is later).
    public func milliseconds(since other: Timestamp) -> Int64 {
        milliseconds &- other.milliseconds
    }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool {
        lhs.milliseconds < rhs.milliseconds
    }

    /// `"<n>ms"`.
    public var description: String { "\(milliseconds)ms" }
}
