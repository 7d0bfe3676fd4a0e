import Testing

@testable import FuseboxCore

@Suite struct ResultCacheTests {
    @Test func freshThenExpiredAfterTTL() {
        var clock = ManualClock()
        var cache = ResultCache<String, Int>(policy: CachePolicy(ttlMs: 100))
        guard case .miss(load: true) = cache.lookup("a", at: clock.now) else { Issue.record("first lookup loads"); return }
        cache.store("a", 1, at: clock.now)
        guard case .fresh(1) = cache.lookup("a", at: clock.advance(by: 99)) else { Issue.record("fresh"); return }
        guard case .miss(load: true) = cache.lookup("a", at: clock.advance(by: 1)) else { Issue.record("expired"); return }
    }

    @Test func evictsLeastRecentlyUsed() {
        let clock = ManualClock()
        var cache = ResultCache<String, Int>(policy: CachePolicy(ttlMs: 1_000, maxEntries: 2))
        cache.store("a", 1, at: clock.now)
        cache.store("b", 2, at: clock.now)
        _ = cache.lookup("a", at: clock.now)  // a is now the most recent
        #expect(cache.store("c", 3, at: clock.now) == ["b"])
        #expect(cache.count == 2)
        #expect(cache.lastValue("a") == 1 && cache.lastValue("b") == nil)
    }

    @Test func invalidateDropsOneKeyAndRemoveAllEveryKeyKeepingLRUOrderSound() {
        let clock = ManualClock()
        var cache = ResultCache<String, Int>(policy: CachePolicy(ttlMs: 1_000, maxEntries: 2))
        cache.store("a", 1, at: clock.now)
        cache.store("b", 2, at: clock.now)
        cache.invalidate("a")
        #expect(cache.count == 1 && cache.lastValue("a") == nil && cache.lastValue("b") == 2)
        guard case .miss(load: true) = cache.lookup("a", at: clock.now) else { Issue.record("invalidated: loads again"); return }
        // The LRU list survived the removal: storing past the limit evicts b, the oldest.
        cache.store("a", 10, at: clock.now)
        #expect(cache.store("c", 3, at: clock.now) == ["b"])
        cache.removeAll()
        #expect(cache.count == 0 && cache.lastValue("a") == nil && cache.lastValue("c") == nil)
        cache.store("d", 4, at: clock.now)
        cache.store("e", 5, at: clock.now)
        #expect(cache.store("f", 6, at: clock.now) == ["d"], "after removeAll the LRU order starts afresh")
    }

    @Test func staleWhileRevalidateServesStaleAndRefreshesOnce() {
        var clock = ManualClock()
        var cache = ResultCache<String, Int>(policy: CachePolicy(ttlMs: 100, staleWhileRevalidateMs: 50))
        cache.store("k", 7, at: clock.now)
        guard case .stale(7, refresh: true) = cache.lookup("k", at: clock.advance(by: 120)) else { Issue.record("leader refreshes"); return }
        guard case .stale(7, refresh: false) = cache.lookup("k", at: clock.now) else { Issue.record("others get stale"); return }
        cache.store("k", 8, at: clock.now)
        guard case .fresh(8) = cache.lookup("k", at: clock.now) else { Issue.record("refreshed"); return }
        guard case .miss = cache.lookup("k", at: clock.advance(by: 151)) else { Issue.record("past the window"); return }
    }

    @Test func concurrentIdenticalLoadsAreCoalesced() {
        let clock = ManualClock()
        var cache = ResultCache<String, Int>(policy: CachePolicy(ttlMs: 100))
        let first = cache.lookup("k", at: clock.now)
        let second = cache.lookup("k", at: clock.now)
        guard case .miss(load: true) = first, case .miss(load: false) = second else { Issue.record("one loader"); return }
        #expect(cache.inFlight == ["k"])
        cache.loadFailed("k")
        guard case .miss(load: true) = cache.lookup("k", at: clock.now) else { Issue.record("retry after failure"); return }
    }

    /// An expired value is not served, but it is still there for a
    /// stale-cache fallback when the load that should replace it fails.
    @Test func anExpiredValueOutlivesAFailedReload() {
        var clock = ManualClock()
        var cache = ResultCache<String, Int>(policy: CachePolicy(ttlMs: 100, staleWhileRevalidateMs: 50))
        cache.store("k", 7, at: clock.now)
        guard case .miss(load: true) = cache.lookup("k", at: clock.advance(by: 500)) else { Issue.record("expired: reload"); return }
        cache.loadFailed("k")
        #expect(cache.lastValue("k") == 7)
        cache.store("k", 8, at: clock.now)
        #expect(cache.lastValue("k") == 8)
        #expect(cache.count == 1)
    }
}
