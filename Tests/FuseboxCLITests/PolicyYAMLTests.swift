import FuseboxAPI
import FuseboxCLI
import FuseboxCore
import FuseboxWire
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

    /// The policies docs/CLIENT.md shows, one per pattern, read and validate.
    func testTheClientGuidesPoliciesAreValid() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("docs/CLIENT.md"), encoding: .utf8)
        guard let start = text.range(of: "## Patterns, one example each"), let end = text.range(of: "## Order of patterns") else {
            return XCTFail("docs/CLIENT.md has no pattern examples")
        }
        let section = text[start.upperBound..<end.lowerBound]
        let blocks = section.components(separatedBy: "```yaml\n").dropFirst().compactMap { $0.components(separatedBy: "```").first }
        XCTAssertEqual(blocks.count, 7)
        var names: [String] = []
        for block in blocks {
            switch PolicyYAML.parse(block, file: "CLIENT.md") {
            case .success(let policies):
                for p in policies {
                    XCTAssertNoThrow(try PolicyValidator.validate(p), "\(p.name)")
                    names.append(p.name)
                }
            case .failure(let e):
                XCTFail("a policy in docs/CLIENT.md does not read: \(e.problems)\n\(block)")
            }
        }
        XCTAssertEqual(names.count, 8, "\(names)")
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

    func testABurstLeftOutIsNotAProblemOfItsOwn() {
        guard case .failure(let e) = PolicyYAML.parse("name: a\nrateLimit: {limitPerPeriod: 0}\n", file: "r.yaml") else {
            return XCTFail("a limit of 0 was accepted")
        }
        XCTAssertEqual(e.problems.map(\.description), ["r.yaml:2:13: rateLimit.limitPerPeriod: (0) must be between 1 and 1000000000"])
    }

    /// The server names fields by their proto paths; `policies apply` shows
    /// its verdict in the file's names, at the same lines and columns as
    /// `policies validate` shows its own.
    func testServerProblemsInProtoNamesPointAtTheFilesLines() throws {
        let text = """
            name: checkout
            labels: {team: payments, "bad key": x}
            circuitBreaker:
              failureRateThreshold: 150
              ignoredErrors: [http.404, ""]
              openDuration: {baseMs: 2000, maxMs: 1000}
            retry:
              retryOn: [timeout, serverError]
              backoff:
                initialMs: 500
                maxMs: 100
              retryableErrors: [http.503]
              nonRetryableErrors: [http.503]
            rateLimit: {limitPerPeriod: 0}
            timeout: {attemptMs: 2000, totalMs: 1000}
            """
        guard case .failure(let offline) = PolicyYAML.parse(text, file: "c.yaml") else { return XCTFail("the file was accepted") }
        XCTAssertEqual(offline.problems.count, 8, "\(offline.problems)")
        let document = try XCTUnwrap(PolicyYAML.documents(text, file: "c.yaml", validate: false).get().first)
        guard case .failure(let verdict) = PolicyMapping.validatedPolicy(from: PolicyMapping.wire(document.policy)) else {
            return XCTFail("the server's checks accepted the policy")
        }
        XCTAssertTrue(verdict.violations.contains { $0.field == "circuit_breaker.failure_rate_threshold_percent" }, "\(verdict)")
        // ValidatePolicy: paths relative to the policy.
        XCTAssertEqual(document.problems(fromServer: verdict.violations), offline.problems)
        // PutPolicy: paths under `policy.`.
        let put = PolicyMapping.fieldViolations(verdict, under: "policy").map { PolicyViolation(field: $0.field, message: $0.description) }
        XCTAssertEqual(document.problems(fromServer: put), offline.problems)
    }

    func testServerProblemsTheFileCannotHaveStillFindTheirPlace() throws {
        let text = "name: checkout\nretry:\n  retryOn: [timeout, serverError]\n"
        let document = try XCTUnwrap(PolicyYAML.documents(text, file: "c.yaml").get().first)
        let problems = document.problems(fromServer: [
            PolicyViolation(field: "policy.retry.retry_on[1]", message: "(42) is not a retry condition"),
            PolicyViolation(field: "policy.retry.backoff.type", message: "(7) is not a backoff type"),
            PolicyViolation(field: "policy", message: "is not allowed in this registry"),
            PolicyViolation(field: "registry", message: "is read-only"),
        ])
        XCTAssertEqual(problems.map(\.description), [
            "c.yaml: registry: is read-only",
            "c.yaml:1:1: is not allowed in this registry",
            "c.yaml:2:1: retry.backoff.kind: (7) is not a backoff type",
            "c.yaml:3:22: retry.retryOn[1]: (42) is not a retry condition",
        ])
    }
}

/// Global options written before the subcommand are parsed by it.
final class GlobalOptionsHoistingTests: XCTestCase {
    func testGlobalOptionsBeforeTheSubcommandMoveAfterIt() {
        XCTAssertEqual(
            GlobalOptions.hoisted(["--server", "a:7443", "-o", "json", "audit", "--since", "1h"]),
            ["audit", "--since", "1h", "--server", "a:7443", "-o", "json"])
        XCTAssertEqual(GlobalOptions.hoisted(["--server=a:1", "breakers", "list"]), ["breakers", "list", "--server=a:1"])
        XCTAssertEqual(GlobalOptions.hoisted(["breakers", "list", "--server", "a:1"]), ["breakers", "list", "--server", "a:1"])
        XCTAssertEqual(GlobalOptions.hoisted(["--help"]), ["--help"])
        XCTAssertEqual(GlobalOptions.hoisted(["--server", "a:1", "x", "--", "-o"]), ["x", "--server", "a:1", "--", "-o"])
    }
}
