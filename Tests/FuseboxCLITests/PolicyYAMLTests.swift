import FuseboxCLI
import FuseboxCore
import XCTest

/// Policy files map one to one onto the policy model: what `policies get -o
/// yaml` prints reads back as the same policy.
final class PolicyYAMLTests: XCTestCase {
    private func roundTrip(_ policy: Policy, file: StaticString = #filePath, line: UInt = #line) {
        let text = PolicyYAML.value(policy).yaml()
        switch PolicyYAML.parse(text, file: "p.yaml") {
        case .success(let back): XCTAssertEqual(back, [policy], "round trip changed the policy:\n\(text)", file: file, line: line)
        case .failure(let e): XCTFail("printed policy does not read back: \(e.problems)\n\(text)", file: file, line: line)
        }
    }

    func testEveryPresetRoundTrips() {
        for preset in Presets.all { roundTrip(preset) }
    }

    func testAPolicyWithEverySectionRoundTrips() {
        var p = Presets.api
        p.name = "everything"
        p.labels = ["team": "payments", "tier": "1"]
        p.circuitBreaker?.window = WindowShape(kind: .time, size: 60)
        p.circuitBreaker?.failureRateThreshold = 37.5
        p.circuitBreaker?.ignoredErrors = ["http.404", "cancelled"]
        p.retry?.retryableErrors = ["http.429"]
        p.retry?.nonRetryableErrors = ["http.400"]
        p.retry?.jitter = .decorrelated
        p.timeout = TimeoutPolicy(attemptMs: 500, totalMs: 2_000)
        p.rateLimit = RateLimitPolicy(limitPerPeriod: 100, periodMs: 1_000, burst: 20, maxWaitMs: 50)
        p.cache = CachePolicy(ttlMs: 30_000, maxEntries: 500, staleWhileRevalidateMs: 5_000)
        p.fallback = FallbackPolicy(triggers: [.circuitOpen, .timeout], action: .staticResponse(contentType: "application/json", body: Array("{\"items\": []}".utf8)))
        roundTrip(p)
        p.fallback = FallbackPolicy(triggers: [], action: .staleCache)
        roundTrip(p)
        p.fallback = FallbackPolicy(triggers: [.failure], action: .handler("cached-catalog"))
        roundTrip(p)
    }

    func testSeveralDocumentsInOneFile() throws {
        let text = "name: a\nbulkhead: {maxConcurrent: 3}\n---\nname: b\ntimeout: {attemptMs: 100}\n"
        let policies = try PolicyYAML.parse(text, file: "two.yaml").get()
        XCTAssertEqual(policies.map(\.name), ["a", "b"])
        XCTAssertEqual(policies.first?.bulkhead?.maxConcurrent, 3)
        XCTAssertEqual(policies.last?.timeout?.attemptMs, 100)
    }

    func testSyntaxErrorsNameLineAndColumn() {
        guard case .failure(let e) = PolicyYAML.parse("name: a\ncircuitBreaker:\n  window: [1, 2\n", file: "broken.yaml") else {
            return XCTFail("broken YAML was accepted")
        }
        XCTAssertEqual(e.problems.count, 1)
        XCTAssertNotNil(e.problems.first?.line)
        XCTAssertTrue(e.problems.first?.description.hasPrefix("broken.yaml:") ?? false, "\(e.problems)")
    }

    func testDuplicateNamesAndEmptyFilesAreRefused() {
        guard case .failure(let dup) = PolicyYAML.parse("name: a\nbulkhead: {maxConcurrent: 1}\n---\nname: a\nbulkhead: {maxConcurrent: 2}\n", file: "d.yaml") else {
            return XCTFail("duplicate accepted")
        }
        XCTAssertTrue(dup.problems.first?.message.contains("more than once") ?? false)
        guard case .failure(let empty) = PolicyYAML.parse("", file: "e.yaml") else { return XCTFail("empty file accepted") }
        XCTAssertTrue(empty.problems.first?.message.contains("no policy") ?? false)
    }
}
