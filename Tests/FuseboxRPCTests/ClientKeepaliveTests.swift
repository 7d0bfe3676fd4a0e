import FuseboxRPC
import FuseboxTLS
import FuseboxTesting
import FuseboxWire
import NIOCore
import NIOPosix
import XCTest

/// Client keepalive (`RPCClientConfiguration.keepaliveInterval`) on live
/// connections: against a peer that stops answering, and against our server,
/// which must answer the PINGs and never count them as abuse.
final class ClientKeepaliveTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    }

    override func tearDown() async throws {
        try await group.shutdownGracefully()
    }

    /// A TLS server that completes the handshake and then never sends
    /// anything: a process that stopped, as the client sees it.
    private func startSilentPeer() async throws -> any Channel {
        let tls = try TLSContextProvider(
            configuration: .server(
                certificateChainPath: TestCertificates.path("server.pem"),
                privateKeyPath: TestCertificates.path("server.key"),
                clientCAPath: TestCertificates.path("ca.pem"), requireClientCertificate: false))
        return try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TLSHandler(context: tls.current))
                    try channel.pipeline.syncOperations.addHandler(Discard())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    private final class Discard: ChannelInboundHandler, Sendable {
        typealias InboundIn = Any
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
    }

    private func streamFrom(_ client: RPCClient, timeout: Duration) async -> (RPCError?, Duration) {
        let started = ContinuousClock.now
        do throws(RPCError) {
            try await client.serverStreaming(
                EchoService.name, "Count", message("3"), as: EchoService.Message.self,
                options: RPCCallOptions(timeout: timeout)
            ) { _ in }
            return (nil, ContinuousClock.now - started)
        } catch {
            return (error, ContinuousClock.now - started)
        }
    }

    func testAStreamToAPeerThatStopsAnsweringFailsWithUnavailableNamingTheKeepalive() async throws {
        let peer = try await startSilentPeer()
        let port = try XCTUnwrap(peer.localAddress?.port)

        // Without keepalive the call waits until its own deadline: the peer really is silent.
        let plain = try makeClient(port: port, group: group)
        let (plainError, _) = await streamFrom(plain, timeout: .milliseconds(1_500))
        XCTAssertEqual(plainError?.code, .deadlineExceeded, "\(String(describing: plainError))")
        await plain.close()

        let client = try makeClient(port: port, group: group) {
            $0.keepaliveInterval = .milliseconds(200)
            $0.keepaliveTimeout = .milliseconds(300)
        }
        let (error, elapsed) = await streamFrom(client, timeout: .seconds(20))
        print("keepalive declared the connection dead after \(elapsed) (interval 200 ms + timeout 300 ms)")
        XCTAssertEqual(error?.code, .unavailable, "\(String(describing: error))")
        XCTAssertTrue(
            error?.message.contains("no answer to keepalive PING within 300 ms") ?? false,
            "\(String(describing: error))")
        XCTAssertGreaterThanOrEqual(elapsed, .milliseconds(500))
        XCTAssertLessThan(elapsed, .seconds(3))
        await client.close()
        try await peer.close()
    }

    /// PINGs every 50 ms during calls that last 300 ms: our server answers
    /// them and, with its default enforcement, counts none as a strike (they
    /// come while a call is open), so all calls pass on one connection.
    func testOurServerAnswersKeepalivePingsAndKeepsTheConnection() async throws {
        let server = try await TestRPCServer.start(group: group)
        let client = try makeClient(port: server.port, group: group) {
            $0.keepaliveInterval = .milliseconds(50)
            $0.keepaliveTimeout = .seconds(2)
        }
        for _ in 0..<5 {
            let reply = try await client.unary(EchoService.name, "Sleep", message("300"), as: EchoService.Message.self)
            XCTAssertEqual(reply.description, "slept")
            try await Task.sleep(for: .milliseconds(20))
        }
        XCTAssertEqual(server.server.acceptedConnections, 1)
        await client.close()
        try await server.stop()
    }
}
