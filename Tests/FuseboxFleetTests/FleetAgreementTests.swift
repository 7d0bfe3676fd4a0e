import Foundation
import FuseboxTesting
import XCTest

/// Several separate service processes, each with its own SDK, against one
/// real fuseboxd: they must agree on their shared breaker.
final class FleetAgreementTests: XCTestCase {
    var fleet: Fleet!

    override func setUp() async throws {
        fleet = try Fleet()
        try fleet.apply(fleetPolicy)
    }

    override func tearDown() async throws {
        fleet?.tearDown()
    }

    private func startThree() throws -> [String] {
        let ids = ["svc-a", "svc-b", "svc-c"]
        for id in ids { try fleet.startService(id) }
        for id in ids {
            let started = fleet.services[id]?.waitForLine(timeout: 30) { $0.contains("\"event\":\"started\"") }
            XCTAssertNotNil(started, "\(id) did not start: \(fleet.services[id]?.stderrTail() ?? "")")
            XCTAssertTrue(started?.contains("\"source\":\"server\"") ?? false, started ?? "")
        }
        XCTAssertTrue(try eventually(10) { try fleet.upstreamCalls() > 30 }, "the services are not calling the upstream")
        return ids
    }

    /// The first time each service saw `state` after `after`, as (generation, atMs).
    private func firstSeen(_ state: String, by ids: [String], generationAbove after: Int) -> [String: (generation: Int, atMs: Int64)] {
        var out: [String: (Int, Int64)] = [:]
        for id in ids {
            if let t = fleet.transitions(id).first(where: { $0.to == state && $0.generation > after }) { out[id] = (t.generation, t.atMs) }
        }
        return out
    }

    func testServicesTripTogetherProbeWithinThePermitsAndCloseTogether() throws {
        let ids = try startThree()

        // The upstream starts failing: all three trip, at the same generation, within a second of each other.
        _ = try fleet.upstreamRequest("POST", "/fail")
        XCTAssertTrue(eventually(15) { firstSeen("OPEN", by: ids, generationAbove: 0).count == 3 }, "not every service saw OPEN: \(ids.map { fleet.transitions($0) })")
        let opened = firstSeen("OPEN", by: ids, generationAbove: 0)
        XCTAssertEqual(Set(opened.values.map(\.generation)).count, 1, "services opened at different generations: \(opened)")
        let openTimes = opened.values.map(\.atMs)
        XCTAssertLessThanOrEqual((openTimes.max() ?? 0) - (openTimes.min() ?? 0), 1_000, "services tripped more than 1 s apart: \(opened)")
        let openGeneration = opened.values.first?.generation ?? 0

        // While the upstream keeps failing, each HALF_OPEN period lets at most 2 probes (the policy's permits)
        // through, fleet-wide, counted at the upstream.
        Thread.sleep(forTimeInterval: 0.15)
        let before = try fleet.upstreamCalls()
        XCTAssertTrue(
            eventually(20) {
                ids.allSatisfy { id in fleet.transitions(id).filter { $0.to == "HALF_OPEN" }.count >= 2 && fleet.transitions(id).last?.to == "OPEN" }
            }, "the breaker did not go through two failing HALF_OPEN periods: \(ids.map { fleet.transitions($0) })")
        Thread.sleep(forTimeInterval: 0.15)
        let after = try fleet.upstreamCalls()
        let halfOpenPeriods = Set(ids.flatMap { id in fleet.transitions(id).filter { $0.to == "HALF_OPEN" }.map(\.generation) }).count
        XCTAssertGreaterThanOrEqual(halfOpenPeriods, 2)
        print("fleet: \(after - before) calls reached the failing upstream over \(halfOpenPeriods) HALF_OPEN periods (limit \(2 * halfOpenPeriods))")
        XCTAssertGreaterThanOrEqual(after - before, 1, "no probe reached the upstream")
        XCTAssertLessThanOrEqual(after - before, 2 * halfOpenPeriods, "more calls reached the failing upstream than the permits allow")

        // It recovers: the next probes pass and all three close together.
        let lastGeneration = ids.compactMap { fleet.transitions($0).last?.generation }.max() ?? openGeneration
        _ = try fleet.upstreamRequest("POST", "/recover")
        XCTAssertTrue(eventually(15) { firstSeen("CLOSED", by: ids, generationAbove: lastGeneration).count == 3 }, "not every service closed: \(ids.map { fleet.transitions($0) })")
        let closed = firstSeen("CLOSED", by: ids, generationAbove: lastGeneration)
        XCTAssertEqual(Set(closed.values.map(\.generation)).count, 1, "services closed at different generations: \(closed)")
        let closeTimes = closed.values.map(\.atMs)
        XCTAssertLessThanOrEqual((closeTimes.max() ?? 0) - (closeTimes.min() ?? 0), 1_000, "services closed more than 1 s apart: \(closed)")
        XCTAssertEqual(try fleet.serverBreaker()?.state, "CLOSED")
    }

    /// Slow-call classification end to end: an upstream slower than the
    /// policy's slow-call threshold (but answering 200, well within the
    /// attempt timeout) trips a slow-call-rate breaker for the whole fleet of
    /// three processes, with one generation and a reason that says why.
    func testASlowUpstreamTripsASlowCallRateBreakerAcrossTheFleet() throws {
        try fleet.apply("""
            name: slow-test
            description: Trips when half the last 10 calls take longer than 150 ms.
            circuitBreaker:
              failureRateThreshold: 100
              slowCallRateThreshold: 50
              slowCallDurationThresholdMs: 150
              minimumCalls: 10
              window: {kind: count, size: 10}
              openDuration:
                baseMs: 60000
            timeout:
              attemptMs: 2000
            """)
        let ids = ["svc-slow-a", "svc-slow-b", "svc-slow-c"]
        for id in ids { try fleet.startService(id, policy: "slow-test") }
        for id in ids {
            XCTAssertNotNil(fleet.services[id]?.waitForLine(timeout: 30) { $0.contains("\"event\":\"started\"") }, "\(id) did not start")
        }
        XCTAssertTrue(try eventually(20) { try fleet.upstreamCalls() > 60 }, "the services are not calling the upstream")
        for id in ids { XCTAssertEqual(fleet.lastStatus(id)?["state"] as? String, "CLOSED", "\(id) tripped on a fast upstream") }

        _ = try fleet.upstreamRequest("POST", "/slow?ms=300")
        XCTAssertTrue(
            eventually(20) { ids.allSatisfy { fleet.transitions($0).contains { $0.to == "OPEN" } } },
            "not every service saw the breaker open: \(ids.map { fleet.transitions($0).map(\.to) })")
        let opened = ids.compactMap { id in fleet.transitions(id).first { $0.to == "OPEN" } }
        XCTAssertEqual(Set(opened.map(\.generation)).count, 1, "one trip, one generation: \(opened.map(\.generation))")
        let reason = fleet.events(ids[0]).first { $0["event"] as? String == "state" && $0["to"] as? String == "OPEN" }?["reason"] as? String ?? ""
        XCTAssertTrue(reason.contains("slow"), "the reason does not say the calls were slow: \(reason)")
        print("fleet: a slow upstream opened the breaker at generation \(opened.first?.generation ?? 0): \(reason)")
        _ = try fleet.upstreamRequest("POST", "/slow?ms=0")
    }

    /// The example service serves the SDK's health report at /health:
    /// healthy while the upstream answers, critical (503) with the reason
    /// once the breaker is open.
    func testTheExampleServesTheHealthReport() throws {
        let service = try fleet.startService("svc-health", extra: ["--health-port", "0"])
        guard let line = service.waitForLine(timeout: 30, { $0.contains("\"event\":\"health-listening\"") }),
            let data = line.data(using: .utf8), let event = try JSONSerialization.jsonObject(with: data) as? [String: Any],
            let port = event["port"] as? Int
        else { return XCTFail("no health-listening event: \(service.text) \(service.stderrTail())") }
        func health() throws -> (status: Int, report: [String: Any]) {
            let script = """
                import urllib.request, sys
                try:
                    r = urllib.request.urlopen("http://127.0.0.1:\(port)/health", timeout=5)
                    print(r.status); print(r.read().decode())
                except urllib.error.HTTPError as e:
                    print(e.code); print(e.read().decode())
                """
            let out = try runProcess(["python3", "-c", script], timeout: 20).output.split(separator: "\n", maxSplits: 1)
            let status = Int(out.first ?? "") ?? 0
            let body = out.count > 1 ? String(out[1]) : "{}"
            return (status, (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:])
        }
        XCTAssertTrue(try eventually(20) { try fleet.upstreamCalls() > 20 }, "the service is not calling the upstream")
        let healthy = try health()
        XCTAssertEqual(healthy.status, 200)
        XCTAssertEqual(healthy.report["status"] as? String, "healthy", "\(healthy.report)")
        let guards = healthy.report["guards"] as? [[String: Any]] ?? []
        XCTAssertEqual(guards.first?["name"] as? String, "orders-upstream")
        XCTAssertGreaterThan((guards.first?["lastCalls"] as? [String: Any])?["calls"] as? Int ?? 0, 10)

        _ = try fleet.upstreamRequest("POST", "/fail")
        let turned = try eventually(20) { try health().status == 503 }
        XCTAssertTrue(turned, "the report did not turn critical")
        let critical = try health().report
        XCTAssertEqual(critical["status"] as? String, "critical")
        let reasons = (critical["reasons"] as? [String]) ?? []
        XCTAssertTrue(reasons.contains { $0.contains("orders-upstream") && $0.contains("OPEN") }, "\(reasons)")
        let lastErrors = ((critical["guards"] as? [[String: Any]])?.first?["lastErrors"] as? [[String: Any]]) ?? []
        XCTAssertTrue(lastErrors.contains { ($0["error"] as? String)?.contains("503") ?? false }, "\(lastErrors)")
        _ = try fleet.upstreamRequest("POST", "/recover")
    }

    func testForceOpenFromTheCLIReachesEveryServiceWithinOneSecond() throws {
        let ids = try startThree()

        // A reporter may not override breakers; the CLI says which role is missing.
        let denied = try fleet.cli(["breaker", "force-open", "orders-upstream", "--reason", "drill"], identity: "reporter")
        XCTAssertEqual(denied.status, 4, denied.output)
        XCTAssertTrue(denied.output.contains("permission denied"), denied.output)
        XCTAssertTrue(denied.output.contains("needs role admin"), denied.output)
        XCTAssertTrue(ids.allSatisfy { fleet.transitions($0).isEmpty }, "a refused override changed a breaker")

        let issued = Int64((Date().timeIntervalSince1970 * 1000).rounded())
        let r = try fleet.cli(["breaker", "force-open", "orders-upstream", "--reason", "drill", "--for", "10m"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("CLOSED -> FORCED_OPEN"), r.output)
        XCTAssertTrue(eventually(5) { firstSeen("FORCED_OPEN", by: ids, generationAbove: 0).count == 3 }, "\(ids.map { fleet.transitions($0) })")
        for (id, seen) in firstSeen("FORCED_OPEN", by: ids, generationAbove: 0) {
            print("fleet: \(id) saw FORCED_OPEN \(seen.atMs - issued) ms after the CLI started")
            XCTAssertLessThanOrEqual(seen.atMs - issued, 1_000, "\(id) saw the override \(seen.atMs - issued) ms after the command started")
        }
        // And calls are refused while it holds: no call reaches the upstream.
        Thread.sleep(forTimeInterval: 0.1)
        let calls = try fleet.upstreamCalls()
        Thread.sleep(forTimeInterval: 0.5)
        XCTAssertEqual(try fleet.upstreamCalls(), calls, "calls reached the upstream through a forced-open breaker")

        let reset = try fleet.cli(["breaker", "reset", "orders-upstream", "--reason", "drill over"])
        XCTAssertEqual(reset.status, 0, reset.output)
        let forcedGeneration = firstSeen("FORCED_OPEN", by: ids, generationAbove: 0).values.first?.generation ?? 0
        XCTAssertTrue(eventually(5) { firstSeen("CLOSED", by: ids, generationAbove: forcedGeneration).count == 3 })
    }

    func testAppliedPolicyReachesRunningServicesWithoutRestart() throws {
        let ids = try startThree()
        func threshold(_ id: String) -> Int? { fleet.lastStatus(id)?["consecutiveFailures"] as? Int }
        XCTAssertTrue(eventually(5) { ids.allSatisfy { threshold($0) == 3 } })
        try fleet.apply(fleetPolicy.replacingOccurrences(of: "consecutiveFailuresThreshold: 3", with: "consecutiveFailuresThreshold: 7"))
        XCTAssertTrue(eventually(5) { ids.allSatisfy { threshold($0) == 7 } }, "\(ids.map { threshold($0) ?? -1 })")
        XCTAssertTrue(ids.allSatisfy { fleet.services[$0]?.process.isRunning ?? false }, "a service restarted or died")
    }

    func testServerKilledServicesGoLocalAStartFromCacheAndResyncWhenItReturns() throws {
        let ids = ["svc-a", "svc-b", "svc-c"]
        for id in ids { try fleet.startService(id, staleness: 1) }
        for id in ids { XCTAssertNotNil(fleet.services[id]?.waitForLine(timeout: 30) { $0.contains("\"source\":\"server\"") }) }
        XCTAssertTrue(try eventually(10) { try fleet.upstreamCalls() > 30 })
        // Give the server's breaker a generation above 0, so "the server's state wins" is visible.
        XCTAssertTrue(try eventually(10) { try fleet.serverBreaker() != nil }, "the services' reports did not create the breaker")
        XCTAssertEqual(try fleet.cli(["breaker", "reset", "orders-upstream", "--reason", "before the outage"]).status, 0)
        let serverGeneration = try fleet.serverBreaker()?.generation ?? 0
        XCTAssertGreaterThan(serverGeneration, 0)
        XCTAssertTrue(eventually(5) { ids.allSatisfy { fleet.lastStatus($0)?["generation"] as? Int == serverGeneration } })

        // fuseboxd dies. The services keep calling with their policies and, past the staleness bound, run local breakers.
        let port = fleet.server.port
        fleet.server.stop(SIGKILL)
        XCTAssertTrue(eventually(10) { ids.allSatisfy { id in fleet.events(id).contains { $0["event"] as? String == "mode" && $0["mode"] as? String == "local" } } })
        let served = try fleet.upstreamCalls()
        XCTAssertTrue(try eventually(5) { try fleet.upstreamCalls() > served + 20 }, "services stopped calling without the server")

        // The local breakers still protect the upstream: it fails, each service trips on its own.
        _ = try fleet.upstreamRequest("POST", "/fail")
        XCTAssertTrue(eventually(10) { ids.allSatisfy { id in fleet.transitions(id).contains { $0.to == "OPEN" } } }, "\(ids.map { fleet.transitions($0) })")

        // A service started now, with no server, comes up from the disk cache another run left.
        let cacheCopy = fleet.directory + "/cache-late"
        try FileManager.default.copyItem(atPath: fleet.directory + "/cache-svc-a", toPath: cacheCopy)
        let late = try fleet.startService("svc-late", staleness: 1, cacheDir: cacheCopy)
        let started = late.waitForLine(timeout: 30) { $0.contains("\"event\":\"started\"") }
        XCTAssertTrue(started?.contains("\"source\":\"cache\"") ?? false, started ?? late.stderrTail())
        XCTAssertTrue(started?.contains("\"policy\":\"fleet-test\"") ?? false, started ?? "")

        // The upstream recovers and the local breakers close on their own, at local generations.
        _ = try fleet.upstreamRequest("POST", "/recover")
        XCTAssertTrue(eventually(15) { ids.allSatisfy { id in fleet.lastStatus(id)?["state"] as? String == "CLOSED" } })

        // fuseboxd comes back (same port, same data): every service resynchronises and the server's state wins.
        fleet.server = try FuseboxdProcess(dataDirectory: fleet.directory + "/data", port: port)
        let all = ids + ["svc-late"]
        XCTAssertTrue(
            eventually(20) {
                all.allSatisfy { id in
                    guard let s = fleet.lastStatus(id) else { return false }
                    return s["mode"] as? String == "fleet" && s["generation"] as? Int == serverGeneration && s["state"] as? String == "CLOSED"
                }
            }, "services did not resynchronise to the server's generation \(serverGeneration): \(all.map { fleet.lastStatus($0) ?? [:] })\nsvc-a stderr:\n\(fleet.services["svc-a"]?.stderrTail(3000) ?? "")")
    }
}
