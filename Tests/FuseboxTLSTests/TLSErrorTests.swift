import FuseboxTLS
import NIOCore
import NIOPosix
import FuseboxTesting
import XCTest

/// Every failure of Build 4, provoked: the typed error is reported, the
/// connection closes, and the server keeps serving others.
final class TLSErrorTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var server: TestTLSServer!

    override func setUp() async throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var config = try Certs.server()
        config.handshakeTimeoutMilliseconds = 300
        server = try await TestTLSServer(group: group, configuration: config)
    }

    override func tearDown() async throws {
        try await server.stop()
        try await group.shutdownGracefully()
    }

    /// After each failure a good client still gets through.
    private func assertServerStillServes(file: StaticString = #filePath, line: UInt = #line) async throws {
        let (channel, log) = try await connectClient(group: group, port: server.port, configuration: Certs.client())
        try await channel.writeAndFlush(ByteBuffer(string: "still here"))
        await waitUntil("echo after failure", file: file, line: line) { log.received == 10 }
        try await channel.close()
    }

    /// Connects a client that must fail; returns the client's and server's errors.
    private func failingClient(_ config: TLSConfiguration, serverName: String? = "127.0.0.1") async throws -> (client: [TLSError.Code], server: [TLSError.Code]) {
        let before = server.connectionLogs.count
        let (channel, log) = try await connectClient(group: group, port: server.port, configuration: config, serverName: serverName)
        await waitUntil("client connection closed") { log.closed }
        await waitUntil("server connection closed") { server.connectionLogs.count > before && server.connectionLogs[before].closed }
        XCTAssertFalse(channel.isActive)
        return (log.tlsErrors.map(\.code), server.connectionLogs[before].tlsErrors.map(\.code))
    }

    func testUntrustedServerCertificate() async throws {
        let result = try await failingClient(Certs.client(ca: "other-ca"))
        XCTAssertEqual(result.client.first, .untrustedCertificate)
        XCTAssertEqual(result.server.first, .peerRejectedCertificate)
        try await assertServerStillServes()
    }

    func testUntrustedClientCertificate() async throws {
        let result = try await failingClient(Certs.client(identity: "other-client"))
        XCTAssertEqual(result.server.first, .untrustedCertificate)
        try await assertServerStillServes()
    }

    func testExpiredAndNotYetValidClientCertificates() async throws {
        let expired = try await failingClient(Certs.client(identity: "expired-client"))
        XCTAssertEqual(expired.server.first, .certificateExpired)
        let future = try await failingClient(Certs.client(identity: "future-client"))
        XCTAssertEqual(future.server.first, .certificateNotYetValid)
        try await assertServerStillServes()
    }

    func testExpiredAndNotYetValidServerCertificates() async throws {
        for (cert, code) in [("expired-server", TLSError.Code.certificateExpired), ("future-server", .certificateNotYetValid)] {
            let other = try await TestTLSServer(group: group, configuration: Certs.server(cert: cert))
            let (_, log) = try await connectClient(group: group, port: other.port, configuration: Certs.client())
            await waitUntil("client failed") { log.closed }
            XCTAssertEqual(log.tlsErrors.first?.code, code, "\(log.tlsErrors)")
            try await other.stop()
        }
    }

    func testHostnameMismatch() async throws {
        let result = try await failingClient(Certs.client(), serverName: "elsewhere.example")
        XCTAssertEqual(result.client.first, .hostnameMismatch)
        let other = try await TestTLSServer(group: group, configuration: Certs.server(cert: "elsewhere-server"))
        let (_, log) = try await connectClient(group: group, port: other.port, configuration: Certs.client(), serverName: "127.0.0.1")
        await waitUntil("client failed") { log.closed }
        XCTAssertEqual(log.tlsErrors.first?.code, .hostnameMismatch)
        XCTAssertTrue(log.tlsErrors.first?.message.contains("\"127.0.0.1\"") == true, "\(log.tlsErrors)")
        try await other.stop()
        try await assertServerStillServes()
    }

    func testMissingClientCertificate() async throws {
        let result = try await failingClient(Certs.client(identity: nil))
        XCTAssertEqual(result.server.first, .missingClientCertificate)
        XCTAssertEqual(result.client.first, .missingClientCertificate)
        try await assertServerStillServes()
    }

    func testALPNMismatch() async throws {
        var config = try Certs.client()
        config.applicationProtocol = "http/1.1"
        let result = try await failingClient(config)
        XCTAssertEqual(result.server.first, .alpnMismatch)
        XCTAssertEqual(result.client.first, .alpnMismatch)
        try await assertServerStillServes()
    }

    private func rawTCP(_ bytes: [UInt8]) async throws -> ConnectionLog {
        let before = server.connectionLogs.count
        let channel = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: server.port).get()
        if !bytes.isEmpty { try await channel.writeAndFlush(ByteBuffer(bytes: bytes)) }
        await waitUntil("server closed the raw connection") { server.connectionLogs.count > before && server.connectionLogs[before].closed }
        try? await channel.close()
        return server.connectionLogs[before]
    }

    func testPlaintextClientOnTLSPort() async throws {
        let log = try await rawTCP(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        XCTAssertEqual(log.tlsErrors.map(\.code), [.plaintextOnTLSPort])
        try await assertServerStillServes()
    }

    func testGarbageBytes() async throws {
        let log = try await rawTCP([0x00, 0xFF, 0x13, 0x37, 0x42])
        XCTAssertEqual(log.tlsErrors.map(\.code), [.malformedInput])
        // A valid record header followed by nonsense reaches OpenSSL and fails there.
        let inner = try await rawTCP([0x16, 0x03, 0x01, 0x00, 0x05, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        XCTAssertEqual(inner.tlsErrors.first?.code, .malformedInput, "\(inner.tlsErrors)")
        try await assertServerStillServes()
    }

    func testHandshakeTimeout() async throws {
        let log = try await rawTCP([])
        XCTAssertEqual(log.tlsErrors.map(\.code), [.handshakeTimeout])
        try await assertServerStillServes()
    }

    func testPeerVanishingWithoutCloseNotifyIsUnclean() async throws {
        let (channel, log) = try await connectClient(group: group, port: server.port, configuration: Certs.client())
        try await channel.writeAndFlush(ByteBuffer(string: "x"))
        await waitUntil("echo") { log.received == 1 }
        // Drop TLS from the pipeline, then close the socket: no close_notify is sent.
        try await channel.eventLoop.submit {
            let sync = channel.pipeline.syncOperations
            let tls = try sync.context(handlerType: TLSHandler.self)
            sync.removeHandler(context: tls, promise: nil)
        }.get()
        try await channel.close()
        await waitUntil("server closed") { server.connectionLogs.first?.closed == true }
        XCTAssertEqual(server.connectionLogs.first?.tlsErrors.map(\.code), [.uncleanShutdown])
        try await assertServerStillServes()
    }
}
