import FuseboxAlerts
import FuseboxAuthority
import FuseboxCore
import XCTest

@testable import FuseboxServer

/// How the fleet health report judges (docs/ALERTS.md, "Fleet health").
final class FleetHealthTests: XCTestCase {
    private func b(
        _ name: String, _ state: BreakerState, registry: String = "default", calls: Int = 0, failures: Int = 0, trips: [Int64] = []
    ) -> FleetObservation.Breaker {
        FleetObservation.Breaker(
            registry: registry, name: name, state: state, notPassingSinceMs: state == .closed ? nil : 940_000, calls: calls, failures: failures,
            tripsAtMs: trips)
    }

    func testEachReasonGivesItsStatusAndTheWorstWins() {
        let fleet = FleetObservation(atMs: 1_000_000, breakers: [
            b("ok", .closed, calls: 100, failures: 4),
            b("failing-some", .closed, calls: 100, failures: 5),
            b("failing-most", .closed, calls: 100, failures: 50),
            b("few-calls", .closed, calls: 19, failures: 19),
            b("probing", .halfOpen),
            b("open", .open),
            b("forced", .forcedOpen),
            b("flappy", .closed, trips: [950_000, 960_000, 970_000]),
            b("old-trips", .closed, trips: [1, 2, 3]),
            b("other", .open, registry: "payments"),
        ])
        let report = FleetHealthReport.evaluate(fleet, registry: "", replicasServing: 1, replicas: 1, answeredBy: "fb-1")
        XCTAssertEqual(report.status, .critical)
        XCTAssertEqual(report.registries.map(\.name), ["default", "payments"])
        let registry = report.registries[0]
        XCTAssertEqual([registry.healthy, registry.degraded, registry.critical], [3, 3, 3], "\(registry.breakers.map(\.key.name))")
        let byName = Dictionary(uniqueKeysWithValues: registry.breakers.map { ($0.key.name, $0) })
        XCTAssertEqual(byName["failing-some"]?.status, .degraded)
        XCTAssertEqual(byName["failing-some"]?.reasons.map(\.code), ["error_rate"])
        XCTAssertEqual(byName["failing-most"]?.status, .critical)
        XCTAssertEqual(byName["probing"]?.reasons.map(\.code), ["breaker_half_open"])
        XCTAssertEqual(byName["open"]?.reasons.first?.message, "OPEN for 60 s")
        XCTAssertEqual(byName["forced"]?.reasons.map(\.code), ["breaker_forced_open"])
        XCTAssertEqual(byName["flappy"]?.reasons.map(\.message), ["tripped 3 times in 10 min"])
        XCTAssertNil(byName["ok"])
        XCTAssertNil(byName["few-calls"], "19 calls are too few to judge")
        XCTAssertNil(byName["old-trips"])
        XCTAssertEqual(registry.breakers.first?.status, .critical, "worst first")
        XCTAssertEqual(report.reasons, [], "nothing wrong beyond breakers")

        let payments = FleetHealthReport.evaluate(fleet, registry: "payments", replicasServing: 1, replicas: 1, answeredBy: "fb-1")
        XCTAssertEqual(payments.registries.map(\.name), ["payments"], "the registry filter")
    }

    func testTheStoreReplicasAndLocalModeAreFleetReasons() {
        let calm = FleetObservation(atMs: 1, breakers: [b("ok", .closed)])
        XCTAssertEqual(FleetHealthReport.evaluate(calm, registry: "", replicasServing: 3, replicas: 3, answeredBy: "a").status, .healthy)

        let local = FleetObservation(atMs: 1, breakers: [b("ok", .closed)], localModeClients: 2)
        let l = FleetHealthReport.evaluate(local, registry: "", replicasServing: 3, replicas: 3, answeredBy: "a")
        XCTAssertEqual(l.status, .degraded)
        XCTAssertEqual(l.reasons.map(\.message), ["2 clients run their breakers locally"])

        let replica = FleetHealthReport.evaluate(calm, registry: "", replicasServing: 2, replicas: 3, answeredBy: "a")
        XCTAssertEqual(replica.status, .degraded)
        XCTAssertEqual(replica.reasons.map(\.code), ["replica_not_serving"])

        let store = FleetObservation(atMs: 1, breakers: [], storeAvailable: false, storeProblem: "disk I/O error")
        let s = FleetHealthReport.evaluate(store, registry: "", replicasServing: 1, replicas: 1, answeredBy: "a")
        XCTAssertEqual(s.status, .critical)
        XCTAssertEqual(s.reasons.map(\.message), ["disk I/O error"])
    }

    func testAWatcherIsToldOfChangesNotOfTimePassing() {
        let a = FleetHealthReport.evaluate(
            FleetObservation(atMs: 1_000_000, breakers: [b("open", .open, calls: 30, failures: 20)]), registry: "", replicasServing: 1, replicas: 1,
            answeredBy: "a")
        let later = FleetHealthReport.evaluate(
            FleetObservation(atMs: 1_001_000, breakers: [b("open", .open, calls: 31, failures: 21)]), registry: "", replicasServing: 1, replicas: 1,
            answeredBy: "a")
        XCTAssertNotEqual(a.registries[0].breakers[0].reasons[0].message, later.registries[0].breakers[0].reasons[0].message)
        XCTAssertTrue(a.sameAs(later), "one second later, one more call: the same health")
        let closed = FleetHealthReport.evaluate(
            FleetObservation(atMs: 1_002_000, breakers: [b("open", .closed)]), registry: "", replicasServing: 1, replicas: 1, answeredBy: "a")
        XCTAssertFalse(a.sameAs(closed))
    }
}
