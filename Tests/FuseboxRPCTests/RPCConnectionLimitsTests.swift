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

    /// Server connections in memory before the test (other tests' servers may hold some).
    private var connectionsBefore = 0

    override func setUp() {
        connectionsBefore = RPCServer.connectionsInMemory
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    }

    override func tearDown() async throws {
        // Whatever closed them (ping abuse, idle timeout, the limit), every
        // connection has left memory once its test stopped the server.
        await waitUntil("every connection released") { RPCServer.connectionsInMemory <= self.connectionsBefore }
        XCTAssertLessThanOrEqual(RPCServer.connectionsInMemory, connectionsBefore, "connections kept in memory after the server stopped")
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

    func testConnectionsBeyondTheLimitAreRefusedNamingTheLimit() async throws {
        let limits = NIOLockedValueBoxStrings()
        let server = try await TestRPCServer.start(group: group) {
            $0.maximumConnections = 2
            $0.onLimitReached = { limits.append($0) }
        }
        let clients = try (0..<3).map { _ in try makeClient(port: server.port, group: group) }
        var outcomes: [RPCStatusCode] = []
        var refusal = ""
        for client in clients {
            do throws(RPCError) {
                _ = try await client.unary(EchoService.name, "Unary", message("x"), as: EchoService.Message.self)
                outcomes.append(.ok)
            } catch {
                outcomes.append(error.code)
                refusal = error.message
            }
        }
        XCTAssertEqual(outcomes, [.ok, .ok, .unavailable])
        XCTAssertTrue(refusal.contains("2 connections") && refusal.contains("limits.maxConnections"), refusal)
        XCTAssertEqual(limits.values, ["connections"])
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

    /// One watch more than the limit on one connection is refused with
    /// RESOURCE_EXHAUSTED naming the limit; unary calls and other
    /// connections are not affected; a watch can open again once one ends.
    func testWatchesBeyondThePerConnectionLimitAreRefused() async throws {
        let limits = NIOLockedValueBoxStrings()
        let server = try await TestRPCServer.start(group: group) {
            $0.maximumWatchesPerConnection = 2
            $0.onLimitReached = { limits.append($0) }
        }
        let client = try makeClient(port: server.port, group: group)
        let open = (0..<2).map { _ in
            Task { try await client.serverStreaming(EchoService.name, "Flood", message("0"), as: EchoService.Message.self) { _ in } }
        }
        await waitUntil("two watches open") { server.server.callsInFlight == 2 }
        do throws(RPCError) {
            try await client.serverStreaming(EchoService.name, "Flood", message("0"), as: EchoService.Message.self) { _ in }
            XCTFail("a third watch on the connection was accepted")
        } catch {
            XCTAssertEqual(error.code, .resourceExhausted)
            XCTAssertTrue(error.message.contains("limits.maxWatchesPerConnection"), error.message)
        }
        XCTAssertEqual(limits.values, ["watches_per_connection"])
        let reply = try await client.unary(EchoService.name, "Unary", message("u"), as: EchoService.Message.self)
        XCTAssertEqual(reply.description, "echo: u")
        let other = try makeClient(port: server.port, group: group)
        let third = Task { try await other.serverStreaming(EchoService.name, "Flood", message("0"), as: EchoService.Message.self) { _ in } }
        await waitUntil("a watch on another connection") { server.server.callsInFlight == 3 }
        open[0].cancel()
        await waitUntil("the first watch ended") { server.server.callsInFlight == 2 }
        let again = Task { try await client.serverStreaming(EchoService.name, "Flood", message("0"), as: EchoService.Message.self) { _ in } }
        await waitUntil("a watch again on the first connection") { server.server.callsInFlight == 3 }
        XCTAssertEqual(limits.values, ["watches_per_connection"])
        for task in open + [third, again] { task.cancel() }
        await waitUntil("every call ended: no task left behind") { server.server.callsInFlight == 0 }
        await client.close()
        await other.close()
        try await server.stop()
    }
}
