/// The logic of a result cache: TTL, LRU eviction at `maxEntries`,
/// stale-while-revalidate, and coalescing of identical concurrent loads (only
/// one caller per key loads; the others wait for it). The owner holds the
/// values' waiters and runs the loads; this decides who loads and what is served.
public struct ResultCache<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    /// The answer to `lookup`.
    public enum Lookup: Sendable {
        /// A fresh value.
        case fresh(Value)
        /// An expired value inside the stale-while-revalidate window. When
        /// `refresh` is true this caller should reload it (in the background).
        case stale(Value, refresh: Bool)
        /// No usable value. When `load` is true this caller loads it and calls
        /// `store` or `loadFailed`; otherwise another caller is already loading.
        case miss(load: Bool)
    }

    private struct Entry: Sendable {
        var value: Value
        var expiresAt: Timestamp
        var newer: Key?
        var older: Key?
    }

    /// The policy.
    public private(set) var policy: CachePolicy
    private var entries: [Key: Entry] = [:]
    private var newest: Key?
    private var oldest: Key?
    private var loading: Set<Key> = []

    /// An empty cache.
    public init(policy: CachePolicy) {
        self.policy = policy
    }

    /// Entries held.
    public var count: Int { entries.count }
    /// Keys being loaded now.
    public var inFlight: Set<Key> { loading }

    /// Looks `key` up at `now`; a hit becomes the most recently used.
    public mutating func lookup(_ key: Key, at now: Timestamp) -> Lookup {
        if let entry = entries[key] {
            if now < entry.expiresAt {
                touch(key)
                return .fresh(entry.value)
            }
            if now < entry.expiresAt.adding(milliseconds: policy.staleWhileRevalidateMs) {
                touch(key)
                return .stale(entry.value, refresh: loading.insert(key).inserted)
            }
            // Past its window the value is not served, but it stays (until
            // the load replaces it, or LRU eviction): if that load fails, a
            // stale-cache fallback answers with it.
        }
        return .miss(load: loading.insert(key).inserted)
    }

    /// Stores a loaded value; returns the keys evicted to make room.
    @discardableResult
    public mutating func store(_ key: Key, _ value: Value, at now: Timestamp) -> [Key] {
        loading.remove(key)
        if entries[key] != nil { remove(key) }
        entries[key] = Entry(value: value, expiresAt: now.adding(milliseconds: policy.ttlMs), newer: nil, older: newest)
        if let newest { entries[newest]?.newer = key }
        newest = key
        if oldest == nil { oldest = key }
        var evicted: [Key] = []
        while entries.count > max(policy.maxEntries, 1), let victim = oldest {
            remove(victim)
            evicted.append(victim)
        }
        return evicted
    }

    /// A load failed; the next lookup may load again. A stale value stays.
    public mutating func loadFailed(_ key: Key) {
        loading.remove(key)
    }

    /// The last value for `key`, expired or not (for a stale-cache fallback):
    /// expired values stay until replaced or evicted.
    public func lastValue(_ key: Key) -> Value? {
        entries[key]?.value
    }

    /// Drops `key`'s value, fresh or not: the next lookup loads it again. A
    /// load already running for it still stores what it gets.
    public mutating func invalidate(_ key: Key) {
        remove(key)
    }

    /// Drops every value (loads already running still store theirs).
    public mutating func removeAll() {
        entries.removeAll()
        newest = nil
        oldest = nil
    }

    private mutating func touch(_ key: Key) {
        guard newest != key, let entry = entries[key] else { return }
        unlink(key, entry)
        entries[key]?.older = newest
        entries[key]?.newer = nil
        if let newest { entries[newest]?.newer = key }
        newest = key
        if oldest == nil { oldest = key }
    }

    private mutating func remove(_ key: Key) {
        guard let entry = entries[key] else { return }
        unlink(key, entry)
        entries[key] = nil
    }

    private mutating func unlink(_ key: Key, _ entry: Entry) {
        if let newer = entry.newer { entries[newer]?.older = entry.older } else { newest = entry.older }
        if let older = entry.older { entries[older]?.newer = entry.newer } else { oldest = entry.newer }
    }
}
