import FuseboxRPC
import FuseboxTLS
import FuseboxTesting
import FuseboxWire
import NIOCore
import NIOPosix
import XCTest

/// `RPCFailoverClient` against real servers on 127.0.0.1 and a port nobody listens on.
final class RPCFailoverClientTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    }

    override func tearDown() async throws {
        try await group.shutdownGracefully()
    }

    /// A port that refuses connections: bound, then closed.
    private func deadPort() async throws -> Int {
        let channel = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port ?? 1
        try await channel.close()
        return port
    }

    private func client(_ ports: [Int]) throws -> RPCFailoverClient {
        let endpoints = try RPCEndpoints(ports.map { RPCEndpoint(host: "127.0.0.1", port: $0) })
        let configuration = RPCClientConfiguration(
            host: "127.0.0.1", port: ports[0],
            tls: .client(
                trustRootsPath: try TestCertificates.path("ca.pem"),
                certificateChainPath: try TestCertificates.path("admin.pem"),
                privateKeyPath: try TestCertificates.path("admin.key")))
        return try RPCFailoverClient(
            configuration: configuration, endpoints: endpoints,
            backoff: RPCBackoff(initial: .milliseconds(10), maximum: .milliseconds(100)),
            group: group)
    }

    func testACallThatReachedNoServerMovesOnAndStays() async throws {
        let server = try await TestRPCServer.start(group: group)
        let dead = try await deadPort()
        let client = try client([dead, server.port])
        let reply = try await client.unary(
            EchoService.name, "Unary", message("hi"), as: EchoService.Message.self,
            options: RPCCallOptions(timeout: .seconds(10)))
        XCTAssertEqual(reply.description, "echo: hi")
        XCTAssertEqual(client.currentEndpoint.port, server.port)
        let counted = NIOLockedValueBoxStrings()
        try await client.serverStreaming(EchoService.name, "Count", message("2"), as: EchoService.Message.self) {
            counted.append($0.description)
        }
        XCTAssertEqual(counted.values, ["0", "1"])
        await client.close()
        try await server.stop()
    }

    func testEveryEndpointDownFailsAfterOneBoundedRound() async throws {
        let ports = [try await deadPort(), try await deadPort()]
        let client = try client(ports)
        let start = ContinuousClock.now
        do throws(RPCError) {
            _ = try await client.unary(
                EchoService.name, "Unary", message("hi"), as: EchoService.Message.self,
                options: RPCCallOptions(timeout: .seconds(10)))
            XCTFail("no server is listening")
        } catch {
            XCTAssertEqual(error.code, .unavailable)
            XCTAssertTrue(error.message.contains("tried 2 of 2 endpoints"), error.message)
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(5), "one round, not a loop until the timeout")
        await client.close()
    }

    func testAnsweredErrorsAreNotRetriedButUnavailableBeforeAnyResponseIs() async throws {
        let first = try await TestRPCServer.start(group: group)
        let second = try await TestRPCServer.start(group: group)
        let client = try client([first.port, second.port])
        do throws(RPCError) {
            _ = try await client.unary(
                EchoService.name, "Fail", message("gone", field: "5"), as: EchoService.Message.self)
            XCTFail("Fail fails")
        } catch {
            XCTAssertEqual(error.code, .notFound)
            XCTAssertFalse(error.message.contains("tried"), "an answer is final: \(error.message)")
        }
        XCTAssertEqual(client.currentEndpoint.port, first.port, "the first server answered; calls stay there")
        do throws(RPCError) {
            _ = try await client.unary(
                EchoService.name, "Fail", message("busy", field: "14"), as: EchoService.Message.self)
            XCTFail("Fail fails")
        } catch {
            XCTAssertEqual(error.code, .unavailable)
            XCTAssertTrue(
                error.message.contains("tried 2 of 2 endpoints"),
                "trailers-only UNAVAILABLE is tried elsewhere: \(error.message)")
        }
        await client.close()
        try await first.stop()
        try await second.stop()
    }

    func testAServerThatShutsDownGracefullyHandsCallsToTheNext() async throws {
        let first = try await TestRPCServer.start(group: group)
        let second = try await TestRPCServer.start(group: group)
        let client = try client([first.port, second.port])
        let options = RPCCallOptions(timeout: .seconds(10))
        _ = try await client.unary(
            EchoService.name, "Unary", message("one"), as: EchoService.Message.self, options: options)
        XCTAssertEqual(client.currentEndpoint.port, first.port)
        // GOAWAY, then the listener and the connection close.
        try await first.stop()
        for i in 0..<5 {
            let reply = try await client.unary(
                EchoService.name, "Unary", message("\(i)"), as: EchoService.Message.self, options: options)
            XCTAssertEqual(reply.description, "echo: \(i)")
        }
        XCTAssertEqual(client.currentEndpoint.port, second.port)
        await client.close()
        try await second.stop()
    }

    func testOneEndpointBehavesAsItsClient() async throws {
        let dead = try await deadPort()
        let client = try client([dead])
        do throws(RPCError) {
            _ = try await client.unary(EchoService.name, "Unary", message("hi"), as: EchoService.Message.self)
            XCTFail("no server is listening")
        } catch {
            XCTAssertEqual(error.code, .unavailable)
            XCTAssertFalse(error.message.contains("tried"), error.message)
        }
        await client.close()
    }
}
