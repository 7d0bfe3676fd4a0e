import Foundation
import FuseboxCore

/// Decides alerts from observations of the fleet: which rules fire for which
/// breaker, with a cooldown and deduplication per (rule, breaker), and a
/// "resolved" when a condition ends. A value with no I/O and no clock: the
/// owner passes each observation with its time, and sends what comes back.
///
/// Per (rule, subject), an alert is one episode:
/// - the condition starts to hold: a `firing` notification, unless an episode
///   is open already, which it then joins (counted as a suppressed trigger);
/// - the episode stays open for at least the rule's cooldown, whatever the
///   condition does meanwhile: 20 trips in the cooldown give one alert;
/// - once the condition no longer holds and the cooldown has passed, a
///   `resolved` notification closes it.
public struct AlertEngine: Sendable {
    private struct Episode: Sendable {
        var firingID: UInt64
        var startedAtMs: Int64
        var firedAtMs: Int64
        var activeAtLastLook: Bool
        var suppressed: Int
        var registry: String
        var breaker: String
    }

    private struct Key: Hashable, Sendable {
        var rule: String
        var subject: String
    }

    public private(set) var rules: [AlertRule]
    /// Every sink's name, for rules that name none.
    public let allSinks: [String]
    private var episodes: [Key: Episode] = [:]
    private var nextID: UInt64 = 1
    /// Each breaker's trip count at the previous look: a trip since counts as
    /// "opened" even if the breaker closed again before this look.
    private var tripCounts: [String: Int] = [:]
    /// Triggers merged into open alerts, per rule (for metrics).
    public private(set) var suppressedByRule: [String: Int] = [:]

    public init(rules: [AlertRule], sinks: [String]) {
        self.rules = rules
        self.allSinks = sinks
    }

    /// Alerts open now, as (rule, subject).
    public var openAlerts: [(rule: String, subject: String)] {
        episodes.keys.map { ($0.rule, $0.subject) }.sorted { ($0.rule, $0.subject) < ($1.rule, $1.subject) }
    }

    /// Looks at the fleet: returns the notifications to send, in order. Only
    /// the rules `evaluating` lets through are looked at; the others' alerts
    /// stay as they are (a replica that does not lead evaluates only the store rule).
    public mutating func observe(_ fleet: FleetObservation, evaluating: (AlertRule) -> Bool = { _ in true }) -> [AlertNotification] {
        var out: [AlertNotification] = []
        for rule in rules where evaluating(rule) {
            var active: [String: (registry: String, breaker: String, startedAtMs: Int64, summary: String, triggers: Int)] = [:]
            if rule.condition.perBreaker {
                for b in fleet.breakers where rule.registries.isEmpty || rule.registries.contains(b.registry) {
                    // A breaker may trip and close more than once between two looks: each trip is a trigger.
                    let trips = max(b.tripCount - (tripCounts[b.subject] ?? 0), 0)
                    if let (started, summary) = Self.holds(rule.condition, b, at: fleet.atMs, newTrips: trips) {
                        active[b.subject] = (b.registry, b.name, started, summary, rule.condition == .breakerOpened ? trips : 0)
                    }
                }
            } else if let (started, summary) = Self.holds(rule.condition, fleet) {
                active["fleet"] = ("", "", started, summary, 0)
            }
            // Conditions that started to hold.
            for (subject, a) in active.sorted(by: { $0.key < $1.key }) {
                let key = Key(rule: rule.name, subject: subject)
                let edge = !(episodes[key]?.activeAtLastLook ?? false)
                let triggers = max(a.triggers, edge ? 1 : 0)
                if var episode = episodes[key] {
                    episode.suppressed += triggers
                    suppressedByRule[rule.name, default: 0] += triggers
                    episode.activeAtLastLook = true
                    episodes[key] = episode
                    continue
                }
                let id = take()
                // The first trigger fires; others in the same look join it.
                suppressedByRule[rule.name, default: 0] += triggers - 1
                episodes[key] = Episode(
                    firingID: id, startedAtMs: a.startedAtMs, firedAtMs: fleet.atMs, activeAtLastLook: true, suppressed: triggers - 1,
                    registry: a.registry, breaker: a.breaker)
                out.append(AlertNotification(
                    id: id, status: .firing, rule: rule.name, kind: rule.condition.kind, severity: rule.severity, registry: a.registry,
                    breaker: a.breaker, summary: a.summary, startedAtMs: a.startedAtMs, atMs: fleet.atMs, suppressedTriggers: 0,
                    sinks: rule.sinks.isEmpty ? allSinks : rule.sinks))
            }
            // Open alerts whose condition no longer holds.
            for (key, var episode) in episodes where key.rule == rule.name && active[key.subject] == nil {
                episode.activeAtLastLook = false
                guard fleet.atMs - episode.firedAtMs >= rule.cooldownMs else {
                    episodes[key] = episode
                    continue
                }
                episodes[key] = nil
                out.append(AlertNotification(
                    id: take(), status: .resolved, rule: rule.name, kind: rule.condition.kind, severity: rule.severity,
                    registry: episode.registry, breaker: episode.breaker,
                    summary: Self.resolvedSummary(rule.condition, subject: key.subject), startedAtMs: episode.startedAtMs,
                    atMs: fleet.atMs, suppressedTriggers: episode.suppressed, sinks: rule.sinks.isEmpty ? allSinks : rule.sinks))
            }
        }
        // Rules removed by a reload leave no alert open for ever.
        let names = Set(rules.map(\.name))
        for key in episodes.keys where !names.contains(key.rule) { episodes[key] = nil }
        for b in fleet.breakers { tripCounts[b.subject] = b.tripCount }
        return out
    }

    private mutating func take() -> UInt64 {
        defer { nextID += 1 }
        return nextID
    }

    private static func notPassing(_ state: BreakerState) -> Bool {
        state == .open || state == .halfOpen || state == .forcedOpen
    }

    /// Whether a per-breaker condition holds, with since when and a summary.
    static func holds(_ condition: AlertRule.Condition, _ b: FleetObservation.Breaker, at now: Int64, newTrips: Int) -> (Int64, String)? {
        switch condition {
        case .breakerOpened:
            guard notPassing(b.state) || newTrips > 0 else { return nil }
            let started = b.notPassingSinceMs ?? b.tripsAtMs.max() ?? now
            return (started, "breaker \(b.subject) is \(b.state.displayName)")
        case .openLongerThan(let ms):
            guard notPassing(b.state), let started = b.notPassingSinceMs, now - started > ms else { return nil }
            return (started, "breaker \(b.subject) has not let calls through for \(duration(now - started)) (\(b.state.displayName))")
        case .flapping(let trips, let window):
            let recent = b.tripsAtMs.filter { now - $0 <= window }
            guard recent.count >= trips, let first = recent.min() else { return nil }
            return (first, "breaker \(b.subject) tripped \(recent.count) times in \(duration(window))")
        case .errorRateAbove(let percent, let minimumCalls):
            guard b.calls >= max(minimumCalls, 1), b.failureRate * 100 > percent else { return nil }
            return (now, "breaker \(b.subject): \(String(format: "%.1f", b.failureRate * 100)) % of \(b.calls) calls failed (above \(percent) %)")
        case .overrideExpiringWithin(let ms):
            guard let until = b.overrideUntilMs, until > now, until - now <= ms else { return nil }
            return (now, "the \(b.state.displayName) override of breaker \(b.subject) lifts in \(duration(until - now))")
        case .localModeClientsAbove, .storeUnavailable:
            return nil
        }
    }

    /// Whether a fleet-wide condition holds.
    static func holds(_ condition: AlertRule.Condition, _ fleet: FleetObservation) -> (Int64, String)? {
        switch condition {
        case .localModeClientsAbove(let n):
            guard fleet.localModeClients > n else { return nil }
            return (fleet.atMs, "\(fleet.localModeClients) clients run their breakers locally (above \(n))")
        case .storeUnavailable:
            guard !fleet.storeAvailable else { return nil }
            return (fleet.atMs, "the store is unavailable: \(fleet.storeProblem.isEmpty ? "no detail" : fleet.storeProblem)")
        default:
            return nil
        }
    }

    static func resolvedSummary(_ condition: AlertRule.Condition, subject: String) -> String {
        switch condition {
        case .breakerOpened, .openLongerThan: return "breaker \(subject) lets calls through again"
        case .flapping: return "breaker \(subject) no longer flaps"
        case .errorRateAbove: return "breaker \(subject)'s failure rate is back under the threshold"
        case .overrideExpiringWithin: return "the override of breaker \(subject) lifted or was renewed"
        case .localModeClientsAbove: return "clients in local mode are back under the threshold"
        case .storeUnavailable: return "the store is available again"
        }
    }

    /// "90 s", "15 min", "2 h".
    public static func durationText(_ ms: Int64) -> String { duration(ms) }

    static func duration(_ ms: Int64) -> String {
        if ms < 120_000 { return "\(max(ms, 0) / 1000) s" }
        if ms < 7_200_000 { return "\(ms / 60_000) min" }
        return "\(ms / 3_600_000) h"
    }
}
