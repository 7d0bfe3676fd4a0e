import Foundation
import Testing

@testable import FuseboxClient

/// The health monitor's windows and statuses, with the seeds' thresholds.
struct GuardHealthTests {
    struct Boom: Error, CustomStringConvertible {
        var n: Int
        var description: String { "boom \(n)" }
    }

    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func report(_ r: HealthRecorder, breaker: String? = "CLOSED", thresholds: HealthThresholds = HealthThresholds(), at: Date? = nil) -> GuardHealth {
        r.report(registry: "default", name: "payments", policy: "api", breakerState: breaker, thresholds: thresholds, now: at ?? now)
    }

    @Test func healthyCallsGiveExactWindows() {
        let r = HealthRecorder()
        for i in 1...100 { r.record(latencyNs: Int64(i) * 1_000_000, failed: false, error: nil, at: now) }
        let h = report(r)
        #expect(h.status == .healthy && h.reasons.isEmpty)
        #expect(h.lastCalls.calls == 100 && h.lastCalls.failures == 0 && h.lastCalls.successRatePercent == 100)
        #expect(h.lastCalls.meanLatencyMs == 50.5)
        #expect(h.lastCalls.p95LatencyMs == 95)
        #expect(h.lastCalls.p99LatencyMs == 99)
        #expect(h.lastHour.calls == 100)
        #expect(h.lastHour.p99LatencyMs == 100, "the hour's percentiles are bucket bounds")
        #expect(h.lastFailureAt == nil && h.lastErrors.isEmpty)
    }

    @Test func anErrorRateAboveFivePercentIsAWarningWithItsReason() {
        let r = HealthRecorder()
        for i in 0..<100 { r.record(latencyNs: 1_000_000, failed: i < 6, error: i < 6 ? Boom(n: i) : nil, at: now) }
        let h = report(r)
        #expect(h.status == .warning)
        #expect(h.reasons == ["error rate 6.0% over the last 100 calls, above 5.0%"])
        // The last errors, newest first; the last failure's time.
        #expect(h.lastErrors.map(\.error) == ["boom 5", "boom 4", "boom 3", "boom 2", "boom 1", "boom 0"])
        #expect(h.lastFailureAt == now)
        // Thresholds are configurable.
        var lenient = HealthThresholds()
        lenient.errorRatePercent = 10
        #expect(report(r, thresholds: lenient).status == .healthy)
    }

    @Test func aSlowP99IsAWarning() {
        let r = HealthRecorder()
        for i in 0..<100 { r.record(latencyNs: i < 98 ? 1_000_000 : 6_000_000_000, failed: false, error: nil, at: now) }
        let h = report(r)
        #expect(h.status == .warning)
        #expect(h.reasons == ["p99 latency 6000 ms over the last 100 calls, above 5000 ms"])
    }

    @Test func rejectionsLowerAvailabilityAndAnOpenBreakerIsCritical() {
        let r = HealthRecorder()
        for _ in 0..<98 { r.record(latencyNs: 1_000_000, failed: false, error: nil, at: now) }
        for _ in 0..<2 { r.recordRejected(at: now) }
        let h = report(r)
        #expect(h.lastHour.availabilityPercent == 98)
        #expect(h.status == .critical)
        #expect(h.reasons == ["availability 98.0% over the last hour, below 99.0%"])
        #expect(report(HealthRecorder(), breaker: "OPEN").status == .critical)
        #expect(report(HealthRecorder(), breaker: "HALF_OPEN").status == .warning)
        #expect(report(HealthRecorder(), breaker: nil).status == .healthy, "no calls, no breaker: nothing to worry about")
    }

    @Test func theLastCallsAreAHundredAndTheHourForgetsOlderMinutes() {
        let r = HealthRecorder()
        let early = now.addingTimeInterval(-3_000)
        for i in 0..<100 { r.record(latencyNs: 1_000_000, failed: true, error: Boom(n: i), at: early) }
        for _ in 0..<100 { r.record(latencyNs: 1_000_000, failed: false, error: nil, at: now) }
        let h = report(r)
        #expect(h.lastCalls.failures == 0, "older calls left the last 100")
        #expect(h.lastHour.calls == 200 && h.lastHour.failures == 100)
        #expect(h.lastErrors.count == 10 && h.lastErrors.first?.error == "boom 99", "the last errors are bounded, newest first")
        // An hour later the early minute is gone from the hour.
        let later = report(r, at: now.addingTimeInterval(600))
        #expect(later.lastHour.calls == 100 && later.lastHour.failures == 0)
        #expect(later.lastFailureAt == early)
    }

    @Test func theReportEncodesAsJSON() throws {
        let r = HealthRecorder()
        r.record(latencyNs: 2_000_000, failed: true, error: Boom(n: 1), at: now)
        let all = FuseboxHealth(status: .critical, reasons: ["x"], mode: "fleet", stalenessSeconds: 0, guards: [report(r)])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(all.json().utf8)) as? [String: Any])
        #expect(object["status"] as? String == "critical")
        let guards = try #require(object["guards"] as? [[String: Any]])
        #expect(guards.first?["name"] as? String == "payments")
        #expect((guards.first?["lastCalls"] as? [String: Any])?["failures"] as? Int == 1)
        #expect(guards.first?["lastFailureAt"] as? String == "2027-01-15T08:00:00Z")
    }
}
