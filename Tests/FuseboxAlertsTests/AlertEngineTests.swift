import FuseboxAlerts
import FuseboxCore
import XCTest

/// The alert rules' decisions: when each fires and resolves, the cooldown
/// and deduplication per (rule, breaker).
final class AlertEngineTests: XCTestCase {
    private func breaker(
        _ name: String, _ state: BreakerState, since: Int64? = nil, trips: [Int64] = [], calls: Int = 0, failures: Int = 0,
        overrideUntil: Int64? = nil, registry: String = "default"
    ) -> FleetObservation.Breaker {
        FleetObservation.Breaker(
            registry: registry, name: name, state: state, notPassingSinceMs: since, overrideUntilMs: overrideUntil, calls: calls, failures: failures,
            tripsAtMs: trips)
    }

    func testTwentyTripsInsideTheCooldownGiveOneAlertAndOneResolved() {
        var engine = AlertEngine(rules: [AlertRule(name: "opened", condition: .breakerOpened, severity: .critical, cooldownMs: 60_000)], sinks: ["hook"])
        var sent: [AlertNotification] = []
        var trips: [Int64] = []
        var t: Int64 = 1_000_000
        for _ in 0..<20 {
            t += 1_000
            trips.append(t)
            sent += engine.observe(FleetObservation(atMs: t, breakers: [breaker("payments", .open, since: t, trips: trips)]))
            t += 1_000
            sent += engine.observe(FleetObservation(atMs: t, breakers: [breaker("payments", .closed, trips: trips)]))
        }
        XCTAssertEqual(sent.map(\.status), [.firing], "40 s of flapping inside a 60 s cooldown")
        XCTAssertEqual(sent.first?.severity, .critical)
        XCTAssertEqual(sent.first?.subject, "default/payments")
        XCTAssertEqual(sent.first?.sinks, ["hook"])
        XCTAssertEqual(sent.first?.summary, "breaker default/payments is OPEN")
        XCTAssertEqual(engine.suppressedByRule["opened"], 19)

        // Closed, and the cooldown since the alert has passed: resolved, once.
        t = 1_000_000 + 1_000 + 60_000
        sent = engine.observe(FleetObservation(atMs: t, breakers: [breaker("payments", .closed, trips: trips)]))
        XCTAssertEqual(sent.map(\.status), [.resolved])
        XCTAssertEqual(sent.first?.suppressedTriggers, 19)
        XCTAssertEqual(sent.first?.summary, "breaker default/payments lets calls through again")
        XCTAssertEqual(engine.observe(FleetObservation(atMs: t + 5_000, breakers: [breaker("payments", .closed, trips: trips)])).count, 0)
        XCTAssertTrue(engine.openAlerts.isEmpty)

        // A trip after that is a new alert.
        let again = engine.observe(FleetObservation(atMs: t + 10_000, breakers: [breaker("payments", .open, since: t + 10_000, trips: trips + [t + 10_000])]))
        XCTAssertEqual(again.map(\.status), [.firing])
    }

    func testATripAndCloseBetweenTwoLooksStillAlerts() {
        var engine = AlertEngine(rules: [AlertRule(name: "opened", condition: .breakerOpened, severity: .warning, cooldownMs: 0)], sinks: ["hook"])
        XCTAssertEqual(engine.observe(FleetObservation(atMs: 1_000, breakers: [breaker("a", .closed)])).count, 0)
        let sent = engine.observe(FleetObservation(atMs: 2_000, breakers: [breaker("a", .closed, trips: [1_500])]))
        XCTAssertEqual(sent.map(\.status), [.firing], "opened at 1.5 s and closed again before the look at 2 s")
        XCTAssertEqual(engine.observe(FleetObservation(atMs: 3_000, breakers: [breaker("a", .closed, trips: [1_500])])).map(\.status), [.resolved])
    }

    func testDeduplicationIsPerRuleAndBreaker() {
        var engine = AlertEngine(
            rules: [
                AlertRule(name: "opened", condition: .breakerOpened, severity: .warning),
                AlertRule(name: "opened-critical", condition: .breakerOpened, severity: .critical, registries: ["payments"]),
            ], sinks: ["a", "b"])
        let sent = engine.observe(FleetObservation(atMs: 10, breakers: [
            breaker("x", .open, since: 10), breaker("y", .forcedOpen, since: 10), breaker("z", .open, since: 10, registry: "payments"),
        ]))
        XCTAssertEqual(sent.map { "\($0.rule) \($0.subject)" }.sorted(), [
            "opened default/x", "opened default/y", "opened payments/z", "opened-critical payments/z",
        ])
        XCTAssertEqual(Set(sent.map(\.id)).count, 4, "ids are unique")
    }

    func testOpenTooLongCountsFromTheFirstRefusalThroughHalfOpen() {
        var engine = AlertEngine(rules: [AlertRule(name: "long", condition: .openLongerThan(ms: 60_000), severity: .critical, cooldownMs: 0)], sinks: ["s"])
        XCTAssertEqual(engine.observe(FleetObservation(atMs: 50_000, breakers: [breaker("a", .halfOpen, since: 0)])).count, 0)
        let sent = engine.observe(FleetObservation(atMs: 61_000, breakers: [breaker("a", .open, since: 0)]))
        XCTAssertEqual(sent.map(\.status), [.firing])
        XCTAssertEqual(sent.first?.startedAtMs, 0)
        XCTAssertTrue(sent.first?.summary.contains("has not let calls through for 61 s") ?? false, sent.first?.summary ?? "")
        XCTAssertEqual(engine.observe(FleetObservation(atMs: 62_000, breakers: [breaker("a", .forcedOpen, since: 0)])).count, 0, "FORCED_OPEN counts too")
        XCTAssertEqual(engine.observe(FleetObservation(atMs: 63_000, breakers: [breaker("a", .closed)])).map(\.status), [.resolved])
    }

    func testFlappingErrorRateAndOverrideExpiry() {
        var engine = AlertEngine(
            rules: [
                AlertRule(name: "flap", condition: .flapping(trips: 3, withinMs: 60_000), severity: .warning, cooldownMs: 0),
                AlertRule(name: "errors", condition: .errorRateAbove(percent: 50, minimumCalls: 10), severity: .critical, cooldownMs: 0),
                AlertRule(name: "expiring", condition: .overrideExpiringWithin(ms: 30_000), severity: .info, cooldownMs: 0),
            ], sinks: ["s"])
        let sent = engine.observe(FleetObservation(atMs: 100_000, breakers: [
            breaker("two-trips", .closed, trips: [90_000, 95_000]),
            breaker("three-trips", .closed, trips: [50_000, 90_000, 95_000, 99_000]),
            breaker("old-trips", .closed, trips: [1_000, 2_000, 3_000]),
            breaker("few-calls", .closed, calls: 9, failures: 9),
            breaker("failing", .closed, calls: 20, failures: 11),
            breaker("half", .closed, calls: 20, failures: 10),
            breaker("expiring", .forcedOpen, since: 0, overrideUntil: 120_000),
            breaker("later", .forcedClosed, overrideUntil: 200_000),
        ]))
        XCTAssertEqual(sent.map { "\($0.rule) \($0.breaker)" }.sorted(), ["errors failing", "expiring expiring", "flap three-trips"])
        XCTAssertTrue(sent.contains { $0.summary == "breaker default/failing: 55.0 % of 20 calls failed (above 50.0 %)" }, "\(sent.map(\.summary))")
        XCTAssertTrue(sent.contains { $0.summary == "the FORCED_OPEN override of breaker default/expiring lifts in 20 s" }, "\(sent.map(\.summary))")
    }

    func testFleetWideRules() {
        var engine = AlertEngine(
            rules: [
                AlertRule(name: "local", condition: .localModeClientsAbove(2), severity: .warning, cooldownMs: 0),
                AlertRule(name: "store", condition: .storeUnavailable, severity: .emergency, cooldownMs: 0),
            ], sinks: ["s"])
        XCTAssertEqual(engine.observe(FleetObservation(atMs: 1, breakers: [], localModeClients: 2)).count, 0)
        let sent = engine.observe(FleetObservation(atMs: 2, breakers: [], localModeClients: 3, storeAvailable: false, storeProblem: "disk full"))
        XCTAssertEqual(sent.map(\.rule).sorted(), ["local", "store"])
        XCTAssertEqual(sent.first { $0.rule == "store" }?.summary, "the store is unavailable: disk full")
        XCTAssertEqual(sent.first { $0.rule == "store" }?.subject, "fleet")
        XCTAssertEqual(engine.observe(FleetObservation(atMs: 3, breakers: [], localModeClients: 0)).map(\.status), [.resolved, .resolved])
    }
}
