/// Failures a fallback can answer.
public enum FallbackTrigger: String, Sendable, Hashable, CaseIterable {
    /// The breaker rejected the call.
    case circuitOpen
    /// The bulkhead was full.
    case bulkheadFull
    /// The rate limiter rejected the call.
    case rateLimited
    /// A timeout expired.
    case timeout
    /// The operation failed (after retries).
    case failure
}

/// What a client returns instead of an error.
public struct FallbackPolicy: Sendable, Hashable {
    /// The fallback to use.
    public enum Action: Sendable, Hashable {
        /// A fixed response body.
        case staticResponse(contentType: String, body: [UInt8])
        /// The last cached value, even if expired (needs a cache section).
        case staleCache
        /// A handler the service registered with the SDK, by name.
        case handler(String)
    }

    /// Which failures it answers; all of them when empty.
    public var triggers: Set<FallbackTrigger>
    /// The fallback.
    public var action: Action

    /// A fallback.
    public init(triggers: Set<FallbackTrigger> = [], action: Action) {
        self.triggers = triggers
        self.action = action
    }

    /// Whether it answers `trigger`.
    public func answers(_ trigger: FallbackTrigger) -> Bool {
        triggers.isEmpty || triggers.contains(trigger)
    }
}
