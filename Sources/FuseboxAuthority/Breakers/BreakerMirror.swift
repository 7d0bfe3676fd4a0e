import FuseboxCore
import NIOConcurrencyHelpers

/// The breakers as a replicated store holds them, kept from the store's own
/// change feed (etcd's watch) on every replica, leader or not: what replicas
/// serve reads and watches from, so that all of them publish the same
/// generations with the same states.
///
/// It decides nothing. A change is published to its watchers when it gives a
/// breaker a new generation, or creates one in a state other than CLOSED
/// (created by an override); an older or equal generation than the one held
/// is ignored, so a watcher never sees a generation go backwards or one
/// generation with two states, whatever order the feed is re-read in.
public final class BreakerMirror: Sendable {
    private struct Held {
        var policy: String
        var status: BreakerStatus
    }

    private struct State {
        var breakers: [BreakerKey: Held] = [:]
        var published: UInt64 = 0
        var revision: Int64 = 0
    }

    private let state = NIOLockedValueBox(State())
    /// Watches of this replica.
    public let hub = WatchHub<BreakerWatchEvent>()

    /// An empty mirror.
    public init() {}

    /// Replaces everything with `breakers`, read at `revision` (start, or a
    /// re-read after the feed's position was compacted away). Every watcher
    /// gets a fresh snapshot.
    public func reset(_ breakers: [StoredBreaker], revision: Int64) {
        state.withLockedValue { s in
            var held: [BreakerKey: Held] = [:]
            for b in breakers {
                let key = BreakerKey(registry: b.registry, name: b.name)
                // A re-read never takes a breaker back to an older generation.
                if let old = s.breakers[key], old.status.generation > b.status.generation {
                    held[key] = old
                } else {
                    held[key] = Held(policy: b.policy, status: b.status)
                }
            }
            s.breakers = held
            s.revision = revision
            for (key, h) in held { AuthorityMetrics.state(key, h.status) }
        }
        hub.resnapshotAll()
    }

    /// A breaker as stored at `revision`.
    public func apply(_ b: StoredBreaker, revision: Int64) {
        let key = BreakerKey(registry: b.registry, name: b.name)
        hub.publish(events(for: b, key: key)) {
            state.withLockedValue { s in
                s.revision = max(s.revision, revision)
                if let old = s.breakers[key], old.status.generation > b.status.generation { return }
                s.breakers[key] = Held(policy: b.policy, status: b.status)
                // Every replica exports every breaker's state, not only the leader.
                AuthorityMetrics.state(key, b.status)
            }
        }
    }

    private func events(for b: StoredBreaker, key: BreakerKey) -> [BreakerWatchEvent] {
        state.withLockedValue { s -> [BreakerWatchEvent] in
            let old = s.breakers[key]
            if let old, b.status.generation <= old.status.generation { return [] }
            if old == nil, b.status.state == .closed { return [] }
            s.published += 1
            let transition = BreakerTransition(from: old?.status.state ?? .closed, status: b.status)
            return [.transition(BreakerTransitionEvent(sequence: s.published, key: key, policy: b.policy, transition: transition))]
        }
    }

    /// A breaker deleted (evicted) at `revision`.
    public func remove(_ key: BreakerKey, revision: Int64) {
        state.withLockedValue { s in
            s.revision = max(s.revision, revision)
            s.breakers[key] = nil
        }
    }

    /// The store revision applied last.
    public var revision: Int64 { state.withLockedValue { $0.revision } }

    /// Breakers held.
    public var count: Int { state.withLockedValue { $0.breakers.count } }

    // MARK: Reads

    /// The selected breakers, sorted.
    public func views(_ selector: BreakerSelector) -> [BreakerView] {
        state.withLockedValue { s in
            s.breakers.filter { selector.selects($0.key) }.sorted { $0.key < $1.key }
                .map { BreakerView(key: $0.key, policy: $0.value.policy, status: $0.value.status) }
        }
    }

    /// The named breakers that exist, sorted.
    public func views(of keys: Set<BreakerKey>) -> [BreakerView] {
        state.withLockedValue { s in
            keys.sorted().compactMap { key in s.breakers[key].map { BreakerView(key: key, policy: $0.policy, status: $0.status) } }
        }
    }

    /// One breaker.
    public func view(_ key: BreakerKey) -> BreakerView? {
        state.withLockedValue { s in s.breakers[key].map { BreakerView(key: key, policy: $0.policy, status: $0.status) } }
    }

    /// Starts a watch: a snapshot of the selection, then its transitions.
    public func watch(_ selector: BreakerSelector, sink: any WatchSink<BreakerWatchEvent>) -> UInt64 {
        hub.subscribe(sink, accepts: { event in
            if case .transition(let t) = event { return selector.selects(t.key) }
            return false
        }, snapshot: { [self] in .snapshot(views(selector)) })
    }

    /// Ends a watch.
    public func unwatch(_ id: UInt64) { hub.unsubscribe(id) }
}
