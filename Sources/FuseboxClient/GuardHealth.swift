public import Foundation
import FuseboxCore
import NIOConcurrencyHelpers

/// When a guard's health report says warning or critical. The defaults are
/// the seeds': an error rate of 5 %, a latency of 5 s, an availability of 99 %.
public struct HealthThresholds: Sendable, Hashable {
    /// Over the last 100 calls, a larger share of failures (of the calls that
    /// reached the dependency) is a warning.
    public var errorRatePercent: Double = 5
    /// Over the last 100 calls, a slower p99 latency is a warning.
    public var latency: Duration = .seconds(5)
    /// Over the last hour, a smaller share of calls let through (not rejected
    /// by the breaker, the bulkhead or the rate limiter) is critical.
    public var availabilityPercent: Double = 99

    /// The seeds' defaults.
    public init() {}

    /// Thresholds of your own.
    public init(errorRatePercent: Double, latency: Duration, availabilityPercent: Double) {
        self.errorRatePercent = errorRatePercent
        self.latency = latency
        self.availabilityPercent = availabilityPercent
    }
}

/// Healthy, warning or critical, in that order of gravity.
public enum HealthStatus: String, Sendable, Hashable, Codable, Comparable {
    case healthy, warning, critical

    private var rank: Int {
        switch self {
        case .healthy: 0
        case .warning: 1
        case .critical: 2
        }
    }

    public static func < (a: HealthStatus, b: HealthStatus) -> Bool { a.rank < b.rank }
}

/// A guard's calls over a window (the last 100 calls, or the last hour).
public struct HealthWindow: Sendable, Hashable, Codable {
    /// Calls that reached the dependency.
    public var calls = 0
    /// Of those, the ones that failed.
    public var failures = 0
    /// Calls refused without calling the dependency: breaker open (or no
    /// probe permit), bulkhead full, rate limited.
    public var rejected = 0
    /// Successful calls in percent of `calls`; nil without calls.
    public var successRatePercent: Double?
    /// Calls let through in percent of all (`calls + rejected`); nil without any.
    public var availabilityPercent: Double?
    /// Latency of the calls that reached the dependency, in milliseconds; nil without calls.
    public var meanLatencyMs: Double?
    public var p95LatencyMs: Double?
    public var p99LatencyMs: Double?
}

/// One guard's health: its windows, its last errors, and the status its
/// thresholds give.
public struct GuardHealth: Sendable, Hashable, Codable {
    /// One error a call ended with.
    public struct ErrorRecord: Sendable, Hashable, Codable {
        /// When.
        public var at: Date
        /// The error, as text (at most 300 characters).
        public var error: String
    }

    public var registry: String
    public var name: String
    public var policy: String
    public var status: HealthStatus
    /// Why the status is not healthy, for people; empty when healthy.
    public var reasons: [String]
    /// The breaker's state as this client enforces it (nil without a breaker).
    public var breakerState: String?
    /// The last 100 calls (exact latency percentiles).
    public var lastCalls: HealthWindow
    /// The last hour (latency percentiles from a histogram: each is the upper
    /// bound of its bucket, 1 ms to 60 s, roughly doubling).
    public var lastHour: HealthWindow
    /// The last errors, newest first (at most 10).
    public var lastErrors: [ErrorRecord]
    /// When a call last failed; nil if none has.
    public var lastFailureAt: Date?
}

/// The health of every guard of this process, and the worst of them.
public struct FuseboxHealth: Sendable, Hashable, Codable {
    /// The worst status of any guard; warning too while the breakers run
    /// locally (fuseboxd out of reach).
    public var status: HealthStatus
    /// Why, for people: the client's own reasons, then each guard's.
    public var reasons: [String]
    /// `fleet` or `local`.
    public var mode: String
    /// How long fuseboxd has not confirmed this client's view, in seconds.
    public var stalenessSeconds: Double
    /// Every guard, by registry and name.
    public var guards: [GuardHealth]

    /// The report as JSON (sorted keys, dates in ISO 8601).
    public func json(pretty: Bool = false) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted] : [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        guard let data = try? encoder.encode(self) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}

/// What a guard remembers for its health report: the last 100 calls, one
/// bucket per minute of the last hour, the last 10 errors. One lock per
/// recorded call.
final class HealthRecorder: Sendable {
    /// Upper bounds of the hour's latency histogram, in milliseconds (the
    /// last bucket takes everything slower).
    static let boundsMs: [Double] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 60_000]
    static let recentCapacity = 100
    static let errorCapacity = 10

    private struct Recent {
        /// Latency in nanoseconds of a call that reached the dependency, nil when rejected.
        var latencyNs: Int64?
        var failed: Bool
    }

    private struct Minute {
        var minute: Int64 = -1
        var calls = 0
        var failures = 0
        var rejected = 0
        var latencySumNs: Double = 0
        var histogram = [Int](repeating: 0, count: HealthRecorder.boundsMs.count + 1)
    }

    private struct State {
        var recent: [Recent] = []
        var next = 0
        var minutes = [Minute](repeating: Minute(), count: 60)
        var errors: [GuardHealth.ErrorRecord] = []
        var lastFailureAt: Date?
    }

    private let state = NIOLockedValueBox(State())

    /// A call that reached the dependency.
    func record(latencyNs: Int64, failed: Bool, error: (any Error)?, at now: Date) {
        record(latencyNs: latencyNs, failed: failed, error: error, atMilliseconds: Int64((now.timeIntervalSince1970 * 1000).rounded()))
    }

    /// A call that reached the dependency, at `ms` milliseconds since 1970
    /// (now, by default).
    func record(latencyNs: Int64, failed: Bool, error: (any Error)?, atMilliseconds ms: Int64 = wallNow().milliseconds) {
        state.withLockedValue { s in
            push(Recent(latencyNs: latencyNs, failed: failed), &s)
            update(&s, ms) { m in
                m.calls += 1
                if failed { m.failures += 1 }
                m.latencySumNs += Double(latencyNs)
                m.histogram[Self.bucket(latencyNs)] += 1
            }
            if failed {
                let now = Date(timeIntervalSince1970: Double(ms) / 1000)
                s.lastFailureAt = now
                if let error {
                    s.errors.insert(GuardHealth.ErrorRecord(at: now, error: String(String(describing: error).prefix(300))), at: 0)
                    if s.errors.count > Self.errorCapacity { s.errors.removeLast() }
                }
            }
        }
    }

    /// A call refused without calling the dependency.
    func recordRejected(at now: Date) {
        recordRejected(atMilliseconds: Int64((now.timeIntervalSince1970 * 1000).rounded()))
    }

    /// A call refused without calling the dependency, at `ms` milliseconds since 1970.
    func recordRejected(atMilliseconds ms: Int64 = wallNow().milliseconds) {
        state.withLockedValue { s in
            push(Recent(latencyNs: nil, failed: false), &s)
            update(&s, ms) { $0.rejected += 1 }
        }
    }

    private func push(_ r: Recent, _ s: inout State) {
        if s.recent.count < Self.recentCapacity {
            s.recent.append(r)
        } else {
            s.recent[s.next] = r
        }
        s.next = (s.next + 1) % Self.recentCapacity
    }

    private func update(_ s: inout State, _ ms: Int64, _ change: (inout Minute) -> Void) {
        let minute = ms >= 0 ? ms / 60_000 : (ms - 59_999) / 60_000
        let slot = Int(minute % 60)
        if s.minutes[slot].minute != minute { s.minutes[slot] = Minute(minute: minute) }
        change(&s.minutes[slot])
    }

    /// `boundsMs` in nanoseconds.
    private static let boundsNs: [Int64] = boundsMs.map { Int64($0 * 1e6) }

    static func bucket(_ latencyNs: Int64) -> Int {
        boundsNs.firstIndex { latencyNs <= $0 } ?? boundsNs.count
    }

    /// The report of the guard, with `thresholds`.
    func report(
        registry: String, name: String, policy: String, breakerState: String?, thresholds: HealthThresholds, now: Date = Date()
    ) -> GuardHealth {
        let (recent, minutes, errors, lastFailureAt) = state.withLockedValue { s in (s.recent, s.minutes, s.errors, s.lastFailureAt) }
        let lastCalls = Self.window(recent)
        let current = Int64((now.timeIntervalSince1970 / 60).rounded(.down))
        let lastHour = Self.window(minutes.filter { $0.minute > current - 60 && $0.minute <= current })
        var status = HealthStatus.healthy
        var reasons: [String] = []
        func raise(_ to: HealthStatus, _ reason: String) {
            status = max(status, to)
            reasons.append(reason)
        }
        switch breakerState {
        case "OPEN", "FORCED_OPEN": raise(.critical, "breaker \(breakerState ?? ""): calls are rejected")
        case "HALF_OPEN": raise(.warning, "breaker HALF_OPEN: probing the dependency")
        default: break
        }
        if let availability = lastHour.availabilityPercent, availability < thresholds.availabilityPercent {
            raise(.critical, String(format: "availability %.1f%% over the last hour, below %.1f%%", availability, thresholds.availabilityPercent))
        }
        if let success = lastCalls.successRatePercent, 100 - success > thresholds.errorRatePercent {
            raise(.warning, String(format: "error rate %.1f%% over the last %d calls, above %.1f%%", 100 - success, lastCalls.calls, thresholds.errorRatePercent))
        }
        let latencyMs = Double(thresholds.latency.components.seconds) * 1_000 + Double(thresholds.latency.components.attoseconds) / 1e15
        if let p99 = lastCalls.p99LatencyMs, p99 > latencyMs {
            raise(.warning, String(format: "p99 latency %.0f ms over the last %d calls, above %.0f ms", p99, lastCalls.calls, latencyMs))
        }
        return GuardHealth(
            registry: registry, name: name, policy: policy, status: status, reasons: reasons, breakerState: breakerState,
            lastCalls: lastCalls, lastHour: lastHour, lastErrors: errors, lastFailureAt: lastFailureAt)
    }

    private static func window(_ recent: [Recent]) -> HealthWindow {
        var w = HealthWindow()
        var latencies: [Int64] = []
        for r in recent {
            if let l = r.latencyNs {
                w.calls += 1
                if r.failed { w.failures += 1 }
                latencies.append(l)
            } else {
                w.rejected += 1
            }
        }
        fill(&w)
        guard !latencies.isEmpty else { return w }
        latencies.sort()
        w.meanLatencyMs = Double(latencies.reduce(0, +)) / Double(latencies.count) / 1e6
        func percentile(_ p: Double) -> Double {
            let rank = Int((p * Double(latencies.count)).rounded(.up)) - 1
            return Double(latencies[min(max(rank, 0), latencies.count - 1)]) / 1e6
        }
        w.p95LatencyMs = percentile(0.95)
        w.p99LatencyMs = percentile(0.99)
        return w
    }

    private static func window(_ minutes: [Minute]) -> HealthWindow {
        var w = HealthWindow()
        var sum: Double = 0
        var histogram = [Int](repeating: 0, count: boundsMs.count + 1)
        for m in minutes {
            w.calls += m.calls
            w.failures += m.failures
            w.rejected += m.rejected
            sum += m.latencySumNs
            for (i, n) in m.histogram.enumerated() { histogram[i] += n }
        }
        fill(&w)
        guard w.calls > 0 else { return w }
        w.meanLatencyMs = sum / Double(w.calls) / 1e6
        func percentile(_ p: Double) -> Double {
            let rank = Int((p * Double(w.calls)).rounded(.up))
            var seen = 0
            for (i, n) in histogram.enumerated() {
                seen += n
                if seen >= rank { return i < boundsMs.count ? boundsMs[i] : (boundsMs.last ?? 0) }
            }
            return boundsMs.last ?? 0
        }
        w.p95LatencyMs = percentile(0.95)
        w.p99LatencyMs = percentile(0.99)
        return w
    }

    private static func fill(_ w: inout HealthWindow) {
        if w.calls > 0 { w.successRatePercent = Double(w.calls - w.failures) * 100 / Double(w.calls) }
        if w.calls + w.rejected > 0 { w.availabilityPercent = Double(w.calls) * 100 / Double(w.calls + w.rejected) }
    }
}
