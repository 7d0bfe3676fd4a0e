/// Guarded calls timed against their attempt timeout: how many there were,
/// the longest, and how many took longer than the attempt timeout allowed.
/// (The upstream answers in milliseconds, so only something else, such as
/// the SDK waiting on fuseboxd, can make a call that long.)
struct CallDurations {
    var calls = 0
    var overAttempt = 0
    var maxMs: Int64 = 0

    /// Counts one call of `duration`; returns its milliseconds and the limit
    /// when it ran past `attemptMs` + `graceMs` (the time a timed-out attempt
    /// takes to wind up); nil as well when the policy sets no attempt timeout.
    mutating func record(_ duration: Duration, attemptMs: Int64?, graceMs: Int64) -> (ms: Int64, attemptMs: Int64)? {
        let ms = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        calls += 1
        maxMs = max(maxMs, ms)
        guard let attemptMs, ms > attemptMs + graceMs else { return nil }
        overAttempt += 1
        return (ms, attemptMs)
    }
}
