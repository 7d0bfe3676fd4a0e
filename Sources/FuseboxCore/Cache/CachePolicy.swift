/// Caching of successful results.
public struct CachePolicy: Sendable, Hashable {
    /// How long a result is fresh.
    public var ttlMs: Int64
    /// Entries kept at most (least recently used evicted). Default 1,000.
    public var maxEntries: Int = 1_000
    /// How long after expiry a stale entry may be served while one refresh runs. Default 0.
    public var staleWhileRevalidateMs: Int64 = 0

    /// A cache policy.
    public init(ttlMs: Int64, maxEntries: Int = 1_000, staleWhileRevalidateMs: Int64 = 0) {
        self.ttlMs = ttlMs
        self.maxEntries = maxEntries
        self.staleWhileRevalidateMs = staleWhileRevalidateMs
    }
}
