import Foundation
import FuseboxTesting
import XCTest

/// docs/CLIENT.md's "Patterns, one example each" runs: its Swift is the code
/// of `fusebox-example patterns`, line for line, and that command, run
/// against a real fuseboxd holding the guide's example policies, shows each
/// pattern doing what the guide says.
final class PatternExamplesTests: XCTestCase {
    private var fleet: Fleet?

    override func tearDown() {
        fleet?.tearDown()
    }

    private static func section() throws -> String {
        let guide = try String(contentsOf: repositoryRoot.appendingPathComponent("docs/CLIENT.md"), encoding: .utf8)
        let start = try XCTUnwrap(guide.range(of: "## Patterns, one example each"))
        let end = try XCTUnwrap(guide.range(of: "## Order of patterns"))
        return String(guide[start.upperBound..<end.lowerBound])
    }

    private static func blocks(_ language: String, in text: String) -> [[String]] {
        text.components(separatedBy: "```\(language)\n").dropFirst().map { part in
            (part.components(separatedBy: "\n```").first ?? "").components(separatedBy: "\n")
        }
    }

    /// The `// docs: NAME` … `// docs: end` regions of Patterns.swift, each line trimmed.
    private static func regions() throws -> [String: [String]] {
        let source = try String(contentsOf: repositoryRoot.appendingPathComponent("Examples/FlakyUpstreamDemo/Patterns.swift"), encoding: .utf8)
        var regions: [String: [String]] = [:]
        var current: String?
        for line in source.components(separatedBy: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed == "// docs: end" {
                current = nil
            } else if trimmed.hasPrefix("// docs: ") {
                current = String(trimmed.dropFirst("// docs: ".count))
                regions[current ?? ""] = []
            } else if let name = current {
                regions[name, default: []].append(trimmed)
            }
        }
        return regions
    }

    func testTheGuidesSwiftIsTheRunnableExamplesCode() throws {
        let regions = try Self.regions()
        XCTAssertEqual(regions.keys.sorted(), ["bulkhead", "cache", "breaker", "fallback-call", "fallback-handler", "fallback-static", "ratelimit", "retry", "timeout"].sorted())
        let blocks = Self.blocks("swift", in: try Self.section()).map { $0.map { $0.trimmingCharacters(in: .whitespaces) } }
        XCTAssertEqual(blocks.count, 7, "one Swift example per pattern")
        let guide = blocks.map { $0.joined(separator: "\n") }.joined(separator: "\n\n")
        for (name, lines) in regions {
            XCTAssertTrue(guide.contains(lines.joined(separator: "\n")), "docs/CLIENT.md does not show the code of example \(name) as it runs:\n\(lines.joined(separator: "\n"))")
        }
        let code = Set(regions.values.flatMap { $0 })
        for line in blocks.flatMap({ $0 }) where !line.isEmpty {
            XCTAssertTrue(code.contains(line), "docs/CLIENT.md shows a line no example runs: \(line)")
        }
    }

    func testTheGuidesPatternExamplesRun() throws {
        let fleet = try Fleet()
        self.fleet = fleet
        let policies = Self.blocks("yaml", in: try Self.section()).map { $0.joined(separator: "\n") }
        XCTAssertEqual(policies.count, 7)
        try fleet.apply(policies.joined(separator: "\n---\n"))
        let result = try runProcess([
            builtProduct("fusebox-example").path, "patterns", "--server", "127.0.0.1:\(fleet.server.port)",
            "--ca", try TestCertificates.path("ca.pem"), "--cert", try TestCertificates.path("reporter.pem"),
            "--key", try TestCertificates.path("reporter.key"), "--cache-dir", fleet.directory + "/patterns-cache",
        ], timeout: 120)
        XCTAssertEqual(result.status, 0, result.output)
        var lines: [String: [String: Any]] = [:]
        for line in result.output.split(whereSeparator: \.isNewline) {
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any], let pattern = object["pattern"] as? String else { continue }
            XCTAssertNil(object["error"], "\(pattern) failed: \(object)")
            lines[pattern] = object
        }
        print(lines.keys.sorted().map { "PATTERN \($0): \(lines[$0] ?? [:])" }.joined(separator: "\n"))
        func int(_ pattern: String, _ key: String) -> Int { lines[pattern]?[key] as? Int ?? -1 }

        // Retry: two 503s, then the answer, on the third attempt.
        XCTAssertEqual(int("retry", "stock"), 42)
        XCTAssertEqual(int("retry", "calls"), 3)
        // Timeouts: the hanging first attempt is cut at 500 ms and the second answers.
        XCTAssertEqual(int("timeout", "hits"), 2)
        XCTAssertEqual(int("timeout", "calls"), 2)
        XCTAssertGreaterThanOrEqual(int("timeout", "ms"), 500)
        // Breaker: at least minimumCalls (20) failures, then refused without calling the card network.
        XCTAssertGreaterThanOrEqual(int("breaker", "failures"), 20)
        XCTAssertEqual(int("breaker", "rejections"), 1)
        XCTAssertEqual(int("breaker", "charges"), int("breaker", "failures"), "a refused call reached the card network")
        // Bulkhead: 10 at once; the 20 queued give up after 250 ms and 10 are refused at once
        // (a few more may get through if the 40 calls arrive slower than a query takes).
        XCTAssertGreaterThanOrEqual(int("bulkhead", "ok"), 10)
        XCTAssertGreaterThanOrEqual(int("bulkhead", "bulkheadFull"), 20)
        XCTAssertEqual(int("bulkhead", "ok") + int("bulkhead", "bulkheadFull"), 40)
        // Rate limit: the burst and what the refill brings within 50 ms pass; the rest are limited.
        XCTAssertGreaterThanOrEqual(int("ratelimit", "placed"), 20)
        XCTAssertLessThan(int("ratelimit", "placed"), 100)
        XCTAssertEqual(int("ratelimit", "placed") + int("ratelimit", "rateLimited"), 200)
        // Fallback: the static response once the breaker opened (after its 10 minimum calls); the handler's prices.
        XCTAssertGreaterThan(int("fallback", "staticAfterCalls"), 10)
        XCTAssertEqual(int("fallback", "prices"), 1)
        // Cache: the second call is served from the cache; after invalidation, loaded again.
        XCTAssertEqual(int("cache", "loads"), 2)
        XCTAssertEqual(lines["cache"]?["same"] as? Bool, true)
    }
}
