import FuseboxAuthority
import FuseboxCore
import NIOConcurrencyHelpers

/// What the dashboard remembers that the store does not keep: each
/// breaker's recent transitions (fed by the breakers' watch hub, as a
/// follower that does not count among the watchers) and its error rate,
/// sampled every 5 s. In memory, since this fuseboxd started; bounded.
final class BreakerActivity: WatchSink, Sendable {
    typealias Event = BreakerWatchEvent

    struct Transition: Encodable, Sendable {
        var atMs: Int64
        var from: String
        var to: String
        var generation: UInt64
        var reason: String
        var clients: [String]
    }

    static let transitionsPerBreaker = 100
    static let samplesPerBreaker = 60
    static let maxBreakers = 20_000

    private struct State {
        var transitions: [BreakerKey: [Transition]] = [:]
        var spark: [BreakerKey: [Double]] = [:]
        var rates: [String: [Double]] = [:]
        var ratesAtMs: Int64 = 0
    }

    private let state = NIOLockedValueBox(State())

    var countsAsWatcher: Bool { false }
    var canAccept: Bool { true }
    func finish() {}

    func offer(_ event: BreakerWatchEvent) -> Bool {
        guard case .transition(let e) = event else { return true }
        let t = Transition(
            atMs: e.transition.status.since.milliseconds, from: e.transition.from.displayName, to: e.transition.status.state.displayName,
            generation: e.transition.status.generation.value, reason: e.transition.status.reason, clients: e.transition.contributingClients)
        state.withLockedValue { s in
            if s.transitions[e.key] == nil, s.transitions.count >= Self.maxBreakers { s.transitions.removeAll(keepingCapacity: true) }
            s.transitions[e.key, default: []].append(t)
            if let count = s.transitions[e.key]?.count, count > Self.transitionsPerBreaker {
                s.transitions[e.key]?.removeFirst(count - Self.transitionsPerBreaker)
            }
        }
        return true
    }

    /// The transitions of `key`, newest first.
    func transitions(of key: BreakerKey) -> [Transition] {
        state.withLockedValue { $0.transitions[key] ?? [] }.reversed()
    }

    /// The sampled error rates of `key`, oldest first.
    func spark(of key: BreakerKey) -> [Double] {
        state.withLockedValue { $0.spark[key] ?? [] }
    }

    /// Every breaker's samples, for a list.
    func sparks() -> [BreakerKey: [Double]] {
        state.withLockedValue { $0.spark }
    }

    /// The last sample: `REGISTRY/NAME` → [error rate, calls], for breakers with calls.
    func lastRates() -> (atMs: Int64, rates: [String: [Double]]) {
        state.withLockedValue { ($0.ratesAtMs, $0.rates) }
    }

    /// Records one sample for every breaker in `keys` (0 without calls);
    /// breakers no longer there are forgotten.
    func sample(keys: [BreakerKey], counts: [BreakerKey: OutcomeCounts], atMs: Int64) {
        state.withLockedValue { s in
            var spark: [BreakerKey: [Double]] = [:]
            spark.reserveCapacity(keys.count)
            var rates: [String: [Double]] = [:]
            for key in keys.prefix(Self.maxBreakers) {
                var samples = s.spark[key] ?? []
                let c = counts[key] ?? OutcomeCounts()
                let calls = DashboardJSON.calls(c)
                let rate = DashboardJSON.percent(DashboardJSON.failures(c), of: calls)
                samples.append(rate)
                if samples.count > Self.samplesPerBreaker { samples.removeFirst(samples.count - Self.samplesPerBreaker) }
                spark[key] = samples
                if calls > 0 { rates[key.description] = [rate, Double(calls)] }
            }
            s.spark = spark
            s.rates = rates
            s.ratesAtMs = atMs
            let live = Set(keys)
            s.transitions = s.transitions.filter { live.contains($0.key) }
        }
    }
}

/// A browser's Server-Sent Events stream as a watcher of the breakers' hub:
/// events wait in a bounded queue that the connection's task empties. When
/// the queue is full the hub marks it behind and sends a fresh snapshot once
/// it has room again, so the page never misses a change silently.
final class EventStreamSink: WatchSink, Sendable {
    typealias Event = BreakerWatchEvent

    enum Item: Sendable {
        case watch(BreakerWatchEvent)
        case rates
        case keepalive
    }

    static let capacity = 4_096

    let items: AsyncStream<Item>
    private let continuation: AsyncStream<Item>.Continuation
    private let pending = NIOLockedValueBox(0)

    init() {
        (items, continuation) = AsyncStream<Item>.makeStream(bufferingPolicy: .unbounded)
    }

    func offer(_ event: BreakerWatchEvent) -> Bool {
        let admitted = pending.withLockedValue { count in
            guard count < Self.capacity else { return false }
            count += 1
            return true
        }
        guard admitted else { return false }
        if case .terminated = continuation.yield(.watch(event)) { return false }
        return true
    }

    var canAccept: Bool { pending.withLockedValue { $0 < Self.capacity } }

    func finish() { continuation.finish() }

    /// The connection took one watch event off the queue.
    func taken() { pending.withLockedValue { $0 = max(0, $0 - 1) } }

    /// A timer's tick (rates, keepalive) for the same stream.
    func tick(_ item: Item) { continuation.yield(item) }
}
