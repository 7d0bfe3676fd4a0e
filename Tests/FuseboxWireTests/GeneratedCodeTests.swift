import XCTest
import FuseboxTesting

/// The committed protoc-c and Swift code must be what Protos/ generates now.
final class GeneratedCodeTests: XCTestCase {
    func testCommittedGeneratedCodeMatchesAFreshGeneration() throws {
        let result = try runProcess(["bash", "scripts/gen-protos", "--check"])
        XCTAssertEqual(result.status, 0, "stale generated code:\n\(result.output)")
        XCTAssertTrue(result.output.contains("generated code is up to date"), result.output)
    }
}
