/// Which of several endpoints calls go to, and how long to wait before the
/// next attempt after one failed. A value with no I/O and no clock: the
/// failover clients (`RPCFailoverClient`, FuseboxEtcd's `EtcdClient`) keep it
/// behind a lock and do the sleeping.
///
/// Calls use `current` until a call fails there in a way that is the
/// endpoint's fault (`failed`); then `current` moves to the next endpoint,
/// round-robin. Concurrent calls that fail on the same endpoint move it on
/// once: a failure reported for an endpoint that is no longer current is
/// stale and changes nothing. The delay grows with the failures in a row
/// (`RPCBackoff`) and starts again after a call succeeds.
public struct RPCEndpointRotation: Sendable, Hashable {
    /// The number of endpoints (at least 1).
    public let count: Int
    /// The index of the endpoint calls go to now.
    public private(set) var current = 0
    /// Failures in a row since the last success, across endpoints.
    public private(set) var consecutiveFailures = 0
    /// The delays.
    public let backoff: RPCBackoff

    /// A rotation over `count` endpoints (at least 1), starting with the first.
    public init(count: Int, backoff: RPCBackoff) {
        self.count = max(count, 1)
        self.backoff = backoff
    }

    /// A call on endpoint `index` failed because of the endpoint (unreachable,
    /// connection lost, GOAWAY, UNAVAILABLE): moves on to the next endpoint,
    /// unless another call already did, and returns the delay to wait before
    /// the next attempt.
    public mutating func failed(_ index: Int, using random: inout some RandomNumberGenerator) -> Duration {
        if index == current {
            current = (current + 1) % count
            consecutiveFailures += 1
        }
        return backoff.delay(attempt: max(consecutiveFailures, 1), using: &random)
    }

    /// Endpoint `index` answered: the failures in a row end, if it is still current.
    public mutating func succeeded(_ index: Int) {
        if index == current { consecutiveFailures = 0 }
    }
}
