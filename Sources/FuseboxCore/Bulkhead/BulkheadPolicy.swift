/// Concurrency limit with a bounded queue.
public struct BulkheadPolicy: Sendable, Hashable {
    /// Calls running at once.
    public var maxConcurrent: Int
    /// Calls waiting for a slot; more are rejected. 0: no queue.
    public var maxQueued: Int = 0
    /// How long a queued call waits before it is rejected. Default 1,000 ms.
    public var maxWaitMs: Int64 = 1_000

    /// A bulkhead.
    public init(maxConcurrent: Int, maxQueued: Int = 0, maxWaitMs: Int64 = 1_000) {
        self.maxConcurrent = maxConcurrent
        self.maxQueued = maxQueued
        self.maxWaitMs = maxWaitMs
    }
}
