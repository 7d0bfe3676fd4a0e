import FuseboxRPC
import FuseboxTLS
import FuseboxTesting
import FuseboxWire
import NIOCore
import NIOPosix
import XCTest

/// A server whose process is frozen (SIGSTOP) still completes TCP
/// connections, in its kernel, but never answers the TLS ClientHello. A call
/// must not wait for such a connection past its own deadline, and a
/// connection attempt must give up after `connectTimeout`.
final class RPCClientHandshakeDeadlineTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var peer: (any Channel)?

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    override func tearDown() async throws {
        try? await peer?.close()
        try await group.shutdownGracefully()
    }

    /// Accepts connections and never writes a byte.
    private func startMutePeer() async throws -> Int {
        let channel = try await ServerBootstrap(group: group)
            .childChannelInitializer { $0.eventLoop.makeSucceededVoidFuture() }
            .bind(host: "127.0.0.1", port: 0).get()
        peer = channel
        return try XCTUnwrap(channel.localAddress?.port)
    }

    private func client(port: Int, connectTimeout: Duration) throws -> RPCClient {
        var configuration = RPCClientConfiguration(
            host: "127.0.0.1", port: port,
            tls: .client(
                trustRootsPath: try TestCertificates.path("ca.pem"),
                certificateChainPath: try TestCertificates.path("reader.pem"),
                privateKeyPath: try TestCertificates.path("reader.key")))
        configuration.connectTimeout = connectTimeout
        return try RPCClient(configuration: configuration, group: group)
    }

    func testACallEndsAtItsDeadlineWhileTheHandshakeHangs() async throws {
        let watchdog = TestWatchdog("RPCClientHandshakeDeadlineTests", limit: .seconds(60))
        defer { watchdog.disarm() }
        let client = try client(port: try await startMutePeer(), connectTimeout: .seconds(30))
        let started = ContinuousClock.now
        do throws(RPCError) {
            _ = try await client.unary(
                EchoService.name, "Unary", EchoService.Message(), as: EchoService.Message.self,
                options: RPCCallOptions(timeout: .milliseconds(300)))
            XCTFail("a server that never answers the handshake answered the call")
        } catch {
            XCTAssertEqual(error.code, .deadlineExceeded, "\(error)")
        }
        let took = ContinuousClock.now - started
        XCTAssertLessThan(took, .milliseconds(1_500), "the call outlived its 300 ms deadline: \(took)")
        // A second caller, arriving while nobody connects any more, is just as bounded.
        let again = ContinuousClock.now
        _ = try? await client.unary(
            EchoService.name, "Unary", EchoService.Message(), as: EchoService.Message.self,
            options: RPCCallOptions(timeout: .milliseconds(300), waitForReady: true))
        XCTAssertLessThan(ContinuousClock.now - again, .milliseconds(1_500))
        await client.close()
    }

    func testAHandshakeThatNeverFinishesFailsAfterTheConnectTimeout() async throws {
        let watchdog = TestWatchdog("RPCClientHandshakeDeadlineTests", limit: .seconds(60))
        defer { watchdog.disarm() }
        let client = try client(port: try await startMutePeer(), connectTimeout: .milliseconds(500))
        let started = ContinuousClock.now
        do throws(RPCError) {
            _ = try await client.unary(EchoService.name, "Unary", EchoService.Message(), as: EchoService.Message.self)
            XCTFail("a server that never answers the handshake answered the call")
        } catch {
            XCTAssertEqual(error.code, .unavailable, "\(error)")
            XCTAssertTrue(
                error.message.contains("TLS handshake") && error.message.contains("did not finish"), "\(error)")
        }
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(3))
        await client.close()
    }
}
