import FuseboxRPC
import FuseboxTesting
import FuseboxWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest

/// A raw HTTP/2 peer misbehaving: each case gets the answer the protocol
/// prescribes, the stream or connection is freed, and others keep working.
final class RPCMisbehavingPeerTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var server: TestRPCServer!
    private var client: RPCClient!
    /// Server connections in memory before the test (other tests' servers may hold some).
    private var connectionsBefore = 0

    override func setUp() async throws {
        connectionsBefore = RPCServer.connectionsInMemory
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        server = try await TestRPCServer.start(group: group)
        client = try makeClient(port: server.port, group: group)
        _ = try await client.unary(EchoService.name, "Unary", message("before"), as: EchoService.Message.self)
    }

    override func tearDown() async throws {
        // The connection opened before the misbehaviour still works.
        let reply = try await client.unary(EchoService.name, "Unary", message("after"), as: EchoService.Message.self)
        XCTAssertEqual(reply.description, "echo: after")
        await client.close()
        try await server.stop()
        // And every connection, the misbehaving one too, has left memory.
        await waitUntil("every connection released") { RPCServer.connectionsInMemory <= self.connectionsBefore }
        XCTAssertLessThanOrEqual(RPCServer.connectionsInMemory, connectionsBefore, "connections kept in memory after the server stopped")
        try await group.shutdownGracefully()
    }

    private func misbehave(_ name: String) throws -> [String] {
        let result = try runProcess([
            "python3", "Tests/Interop/h2_misbehave.py", name, "--port", "\(server.port)",
            "--ca", try TestCertificates.path("ca.pem"), "--cert", try TestCertificates.path("admin.pem"),
            "--key", try TestCertificates.path("admin.key"),
        ], timeout: 30)
        XCTAssertEqual(result.status, 0, result.output)
        return result.output.split(separator: "\n").map(String.init)
    }

    func testGarbageRightAfterThePrefaceGetsGoaway() throws {
        let lines = try misbehave("garbage-after-preface")
        // A connection error: GOAWAY with PROTOCOL_ERROR (1) or FRAME_SIZE_ERROR (6), then the close.
        XCTAssertTrue(lines.contains("goaway 1") || lines.contains("goaway 6"), "\(lines)")
    }

    func testHeadersWithoutPathAreRejected() throws {
        let lines = try misbehave("no-path")
        XCTAssertTrue(lines.contains("reset 1 1") || lines.contains("goaway 1"), "PROTOCOL_ERROR expected: \(lines)")
    }

    func testUnknownMethodIsUnimplemented() throws {
        XCTAssertTrue(try misbehave("unknown-method").contains("grpc-status 12"))
    }

    /// A message flagged compressed when no grpc-encoding was negotiated: INTERNAL.
    func testCompressedFlagWithoutEncodingIsInternal() throws {
        XCTAssertTrue(try misbehave("compressed-flag").contains("grpc-status 13"))
    }

    /// A unary call takes exactly one whole request message. Its server
    /// gathers the request on the event loop, so each shape is checked there:
    /// two messages, none, one cut short, two while the client is still
    /// sending (answered at once, then the stream is reset with NO_ERROR, as
    /// the gRPC protocol asks), and one split over two DATA frames (served).
    func testUnaryRequestsThatAreNotOneWholeMessage() throws {
        let lines = Set(try misbehave("unary-shapes"))
        let expected: [String] = [
            "status 1 12 expected one request message, got more",
            "status 3 12 expected one request message, got none",
            "status 5 13 the stream ended inside a message (4 bytes left over)",
            "status 7 12 expected one request message, got more",
            "reset 7 0",
            "status 9 0 ",
        ]
        for line in expected { XCTAssertTrue(lines.contains(line), "\(line) missing from \(lines.sorted())") }
    }

    func testDeclaredLengthBeyondTheLimitIsResourceExhausted() throws {
        XCTAssertTrue(try misbehave("oversized-length").contains("grpc-status 8"))
    }

    /// 150 streams against SETTINGS_MAX_CONCURRENT_STREAMS 100. RFC 9113 §5.1.2
    /// makes the excess a stream error (REFUSED_STREAM), and §5.4.1 lets an
    /// endpoint treat it as a connection error: swift-nio-http2 does the
    /// latter, with GOAWAY PROTOCOL_ERROR. Either way the 100 accepted streams
    /// are freed: their handlers are cancelled.
    func testStreamsBeyondTheMaximumAreRefused() async throws {
        let lines = try misbehave("too-many-streams")
        let refused = lines.first { $0.hasPrefix("refused ") }.flatMap { Int($0.dropFirst(8)) } ?? 0
        XCTAssertTrue(refused == 50 || lines.contains("goaway 1"), "150 streams against a limit of 100: \(lines)")
        await waitUntil("the accepted streams were freed") { server.echo.cancelled.withLockedValue { $0 } == 100 }
    }

    /// A reader that stops reading while the server queues messages without
    /// waiting (`RPCStreamWriter.enqueue`, used for fan-out): once the stream
    /// cannot take more, it is reset rather than buffered without bound, and
    /// the handler is cancelled. The tear-down checks that the connection
    /// opened before still works.
    func testAStreamWhoseReaderFallsBehindIsResetNotBuffered() async throws {
        let lines = try misbehave("slow-reader")
        XCTAssertTrue(lines.contains { $0.hasPrefix("reset 1 ") }, "the flooded stream was not reset: \(lines)")
        let received = lines.first { $0.hasPrefix("received ") }.flatMap { Int($0.dropFirst(9)) } ?? 0
        XCTAssertLessThan(received, 1_000 * 1_024, "at most about the 64 KiB window arrived, not the 2 MiB asked for: \(lines)")
        await waitUntil("the flooding handler was cancelled") { server.echo.cancelled.withLockedValue { $0 } == 1 }
    }

    func testAbruptDisconnectMidStreamCancelsTheHandler() async throws {
        XCTAssertEqual(try misbehave("abrupt-disconnect"), ["disconnected"])
        await waitUntil("the orphaned handler was cancelled") { server.echo.cancelled.withLockedValue { $0 } == 1 }
    }
}
