import Testing

@testable import FuseboxCore

@Suite struct TokenBucketTests {
    @Test func burstThenRefillAtTheConfiguredRate() {
        var clock = ManualClock()
        var bucket = TokenBucket(policy: RateLimitPolicy(limitPerPeriod: 10, periodMs: 1_000, burst: 3), at: clock.now)
        #expect((0..<3).map { _ in bucket.acquire(at: clock.now) } == [.granted, .granted, .granted])
        #expect(bucket.acquire(at: clock.now) == .rejected(retryAfterMs: 100))
        #expect(bucket.acquire(at: clock.advance(by: 100)) == .granted)
        // Refill never exceeds the burst.
        _ = clock.advance(by: 10_000)
        #expect((0..<4).map { _ in bucket.acquire(at: clock.now) } == [.granted, .granted, .granted, .rejected(retryAfterMs: 100)])
    }

    @Test func waitingReservesTheNextTokens() {
        let clock = ManualClock()
        var bucket = TokenBucket(policy: RateLimitPolicy(limitPerPeriod: 10, periodMs: 1_000, burst: 1, maxWaitMs: 250), at: clock.now)
        #expect(bucket.acquire(at: clock.now) == .granted)
        #expect(bucket.acquire(at: clock.now) == .delayed(ms: 100))
        #expect(bucket.acquire(at: clock.now) == .delayed(ms: 200))
        #expect(bucket.acquire(at: clock.now) == .rejected(retryAfterMs: 300))
    }
}
