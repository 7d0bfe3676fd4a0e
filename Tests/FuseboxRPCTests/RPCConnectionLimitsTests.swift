import FuseboxRPC
import FuseboxTesting
import FuseboxWire
import NIOCore
import NIOPosix
import XCTest

/// Keepalive, ping abuse, idle timeout and the connection limit, observed by
/// a raw HTTP/2 peer (hyper-h2).
final class RPCConnectionLimitsTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    }

    override func tearDown() async throws {
        try await group.shutdownGracefully()
    }

    private func peer(_ name: String, port: Int, seconds: Double = 2) throws -> [String] {
        let result = try runProcess([
            "python3", "Tests/Interop/h2_misbehave.py", name, "--port", "\(port)",
            "--ca", try TestCertificates.path("ca.pem"), "--cert", try TestCertificates.path("reader.pem"),
            "--key", try TestCertificates.path("reader.key"),
        ], timeout: 30, environment: ["LISTEN_SECONDS": "\(seconds)"])
        XCTAssertEqual(result.status, 0, result.output)
        return result.output.split(separator: "\n").map(String.init)
    }

    func testServerSendsKeepalivePings() async throws {
        let server = try await TestRPCServer.start(group: group) { $0.keepaliveInterval = .milliseconds(300) }
        let lines = try peer("listen", port: server.port, seconds: 1.5)
        XCTAssertGreaterThanOrEqual(lines.filter { $0 == "ping" }.count, 2, "\(lines)")
        try await server.stop()
    }

    func testPingFloodGetsEnhanceYourCalm() async throws {
        let server = try await TestRPCServer.start(group: group) { $0.minimumPingIntervalWithoutCalls = .seconds(1) }
        let lines = try peer("ping-flood", port: server.port)
        XCTAssertTrue(lines.contains("goaway 11"), "ENHANCE_YOUR_CALM expected: \(lines)")
        try await server.stop()
    }

    func testIdleConnectionsAreClosedWithGoaway() async throws {
        let server = try await TestRPCServer.start(group: group) { $0.idleTimeout = .milliseconds(300) }
        let lines = try peer("listen", port: server.port, seconds: 2)
        XCTAssertTrue(lines.contains("goaway 0"), "\(lines)")
        XCTAssertTrue(lines.contains("closed"), "\(lines)")
        try await server.stop()
    }

    func testConnectionsBeyondTheLimitAreClosed() async throws {
        let server = try await TestRPCServer.start(group: group) { $0.maximumConnections = 2 }
        let clients = try (0..<3).map { _ in try makeClient(port: server.port, group: group) }
        var outcomes: [RPCStatusCode] = []
        for client in clients {
            do throws(RPCError) {
                _ = try await client.unary(EchoService.name, "Unary", message("x"), as: EchoService.Message.self)
                outcomes.append(.ok)
            } catch {
                outcomes.append(error.code)
            }
        }
        XCTAssertEqual(outcomes, [.ok, .ok, .unavailable])
        // Once one closes, a new connection is accepted.
        await clients[0].close()
        try await Task.sleep(for: .milliseconds(100))
        let reply = try await clients[2].unary(
            EchoService.name, "Unary", message("y"), as: EchoService.Message.self,
            options: RPCCallOptions(timeout: .seconds(10), waitForReady: true))
        XCTAssertEqual(reply.description, "echo: y")
        for client in clients { await client.close() }
        try await server.stop()
    }
}
