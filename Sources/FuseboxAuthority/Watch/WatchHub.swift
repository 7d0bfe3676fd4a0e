import NIOConcurrencyHelpers

/// Where a watch's events go: a stream to a client, a dashboard's
/// Server-Sent Events, a test's collector. It never blocks the publisher.
public protocol WatchSink<Event>: Sendable {
    /// The events it takes.
    associatedtype Event: Sendable
    /// Hands `event` over without waiting. False when the watcher cannot take
    /// more now (its transport's buffer is full): the event is not delivered.
    func offer(_ event: Event) -> Bool
    /// Whether `offer` would take an event now.
    var canAccept: Bool { get }
    /// Ends the watch (the server shuts down).
    func finish()
    /// Whether it counts among the watchers `count` reports (and metrics and
    /// limits with it): false for the server's own followers, such as the fleet
    /// monitor. Default true.
    var countsAsWatcher: Bool { get }
}

extension WatchSink {
    public var countsAsWatcher: Bool { true }
}

/// Fans events out to watchers, each of which first gets a snapshot.
///
/// One type serves breaker and registry watches alike, with the promise the
/// Protos make for both: every watcher sees every event after its snapshot,
/// in publish order, or, if it fell behind (its transport could not take an
/// event), a fresh snapshot as soon as it can take one again, and then the
/// events after that. Nothing is dropped silently and nothing is buffered
/// without bound: a watcher that is behind costs one flag until it catches up.
///
/// Consistency: the owner changes the state snapshots are made from inside
/// `publish`'s `update`, under the hub's lock, and `subscribe` and `resync`
/// make snapshots under the same lock, so no event falls between a snapshot
/// and the events that follow it.
public final class WatchHub<Event: Sendable>: Sendable {
    private struct Watcher {
        var sink: any WatchSink<Event>
        var accepts: @Sendable (Event) -> Bool
        var snapshot: @Sendable () -> Event
        var behind = false
    }

    private struct State {
        var watchers: [UInt64: Watcher] = [:]
        /// Watchers whose sink does not count (`countsAsWatcher` false).
        var uncounted = 0
        var next: UInt64 = 0
        var behind = 0
        var resyncs: UInt64 = 0
    }

    private let state = NIOLockedValueBox(State())

    /// An empty hub.
    public init() {}

    /// Adds a watcher: `snapshot` is made and offered at once, then every
    /// published event that `accepts` lets through. Returns its id.
    public func subscribe(
        _ sink: any WatchSink<Event>, accepts: @escaping @Sendable (Event) -> Bool, snapshot: @escaping @Sendable () -> Event
    ) -> UInt64 {
        state.withLockedValue { s in
            s.next += 1
            var watcher = Watcher(sink: sink, accepts: accepts, snapshot: snapshot)
            if !sink.offer(snapshot()) {
                watcher.behind = true
                s.behind += 1
            }
            s.watchers[s.next] = watcher
            if !sink.countsAsWatcher { s.uncounted += 1 }
            return s.next
        }
    }

    /// Removes a watcher.
    public func unsubscribe(_ id: UInt64) {
        state.withLockedValue { s in
            if let w = s.watchers.removeValue(forKey: id) {
                if w.behind { s.behind -= 1 }
                if !w.sink.countsAsWatcher { s.uncounted -= 1 }
            }
        }
    }

    /// Runs `update` (the change the events describe), then offers `events`,
    /// in order, to every watcher that accepts them; all under the hub's lock.
    public func publish<T>(_ events: [Event], update: () -> T) -> T {
        state.withLockedValue { s in
            let result = update()
            guard !events.isEmpty else { return result }
            for id in s.watchers.keys {
                guard var w = s.watchers[id], !w.behind else { continue }
                for event in events where w.accepts(event) {
                    if !w.sink.offer(event) {
                        w.behind = true
                        s.behind += 1
                        break
                    }
                }
                if w.behind { s.watchers[id] = w }
            }
            return result
        }
    }

    /// Offers `events` without a state change.
    public func publish(_ events: [Event]) {
        publish(events) { () }
    }

    /// Sends a fresh snapshot to every watcher that fell behind and can take
    /// one now. Returns how many are still behind.
    @discardableResult
    public func resync() -> Int {
        state.withLockedValue { s in
            guard s.behind > 0 else { return 0 }
            for (id, w) in s.watchers where w.behind && w.sink.canAccept {
                if w.sink.offer(w.snapshot()) {
                    s.watchers[id]?.behind = false
                    s.behind -= 1
                    s.resyncs += 1
                }
            }
            return s.behind
        }
    }

    /// Sends every watcher a fresh snapshot (now, or once it can take one):
    /// after the state was replaced wholesale, as when a replica re-reads its
    /// store because its watch position was compacted away.
    public func resnapshotAll() {
        state.withLockedValue { s in
            for (id, w) in s.watchers where !w.behind {
                s.watchers[id]?.behind = true
                s.behind += 1
            }
        }
        resync()
    }

    /// Offers fresh snapshots to watchers that fell behind, every `period`,
    /// until cancelled: what keeps a slow watcher from stalling silently.
    public func runResync(every period: Duration = .milliseconds(100)) async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: period) } catch { return }
            resync()
        }
    }

    /// Watchers now.
    public var count: Int { state.withLockedValue { $0.watchers.count - $0.uncounted } }
    /// Watchers waiting for a fresh snapshot.
    public var behindCount: Int { state.withLockedValue { $0.behind } }
    /// Fresh snapshots sent to watchers that had fallen behind, since start.
    public var resyncCount: UInt64 { state.withLockedValue { $0.resyncs } }

    /// Ends every watch.
    public func finishAll() {
        let sinks = state.withLockedValue { s in
            defer { s.watchers = [:]; s.behind = 0; s.uncounted = 0 }
            return s.watchers.values.map(\.sink)
        }
        for sink in sinks { sink.finish() }
    }
}
