import FuseboxRPC
import XCTest

/// The rotation over endpoints and its backoff: pure values, no clock.
final class RPCEndpointRotationTests: XCTestCase {
    let backoff = RPCBackoff(initial: .milliseconds(100), maximum: .milliseconds(800))

    func testAFailureMovesToTheNextEndpointRoundRobin() {
        var rotation = RPCEndpointRotation(count: 3, backoff: backoff)
        var random = SystemRandomNumberGenerator()
        XCTAssertEqual(rotation.current, 0)
        var visited: [Int] = []
        for _ in 0..<6 {
            _ = rotation.failed(rotation.current, using: &random)
            visited.append(rotation.current)
        }
        XCTAssertEqual(visited, [1, 2, 0, 1, 2, 0])
        XCTAssertEqual(rotation.consecutiveFailures, 6)
    }

    func testConcurrentFailuresOnOneEndpointMoveOnOnce() {
        var rotation = RPCEndpointRotation(count: 3, backoff: backoff)
        var random = SystemRandomNumberGenerator()
        // Three calls were on endpoint 0 when it died; each reports it.
        for _ in 0..<3 { _ = rotation.failed(0, using: &random) }
        XCTAssertEqual(rotation.current, 1, "stale reports about endpoint 0 must not skip the healthy endpoint 1")
        XCTAssertEqual(rotation.consecutiveFailures, 1)
    }

    func testSuccessResetsTheBackoffOnlyForTheCurrentEndpoint() {
        var rotation = RPCEndpointRotation(count: 2, backoff: backoff)
        var random = SystemRandomNumberGenerator()
        _ = rotation.failed(0, using: &random)
        _ = rotation.failed(1, using: &random)
        rotation.succeeded(1)
        XCTAssertEqual(rotation.consecutiveFailures, 2, "a late success from an abandoned endpoint changes nothing")
        rotation.succeeded(0)
        XCTAssertEqual(rotation.consecutiveFailures, 0)
        XCTAssertEqual(rotation.current, 0)
    }

    func testOneEndpointStaysCurrent() {
        var rotation = RPCEndpointRotation(count: 1, backoff: backoff)
        var random = SystemRandomNumberGenerator()
        _ = rotation.failed(0, using: &random)
        XCTAssertEqual(rotation.current, 0)
        XCTAssertEqual(RPCEndpointRotation(count: 0, backoff: backoff).count, 1, "a count below 1 is treated as 1")
    }

    func testDelaysGrowWithFailuresInARowAndStayJitteredAndBounded() {
        var rotation = RPCEndpointRotation(count: 3, backoff: backoff)
        var random = SystemRandomNumberGenerator()
        for ceiling in [100, 200, 400, 800, 800, 800] {
            let delay = rotation.failed(rotation.current, using: &random)
            XCTAssertGreaterThanOrEqual(delay, .milliseconds(ceiling / 2), "failure \(rotation.consecutiveFailures)")
            XCTAssertLessThanOrEqual(delay, .milliseconds(ceiling), "failure \(rotation.consecutiveFailures)")
        }
    }

    func testBackoffIsNeverZeroAndSpreads() {
        var random = SystemRandomNumberGenerator()
        let zero = RPCBackoff(initial: .zero, maximum: .zero)
        for attempt in [1, 2, 1_000, Int.max] {
            let delay = zero.delay(attempt: attempt, using: &random)
            XCTAssertGreaterThan(delay, .zero, "attempt \(attempt): no tight loop even when configured with zero")
            XCTAssertLessThanOrEqual(delay, .milliseconds(1))
        }
        let draws = Set((0..<50).map { _ in backoff.delay(attempt: 3, using: &random) })
        XCTAssertGreaterThan(draws.count, 10, "clients that failed together must not retry in lockstep")
        for draw in draws {
            XCTAssertGreaterThanOrEqual(draw, .milliseconds(200))
            XCTAssertLessThanOrEqual(draw, .milliseconds(400))
        }
    }
}
