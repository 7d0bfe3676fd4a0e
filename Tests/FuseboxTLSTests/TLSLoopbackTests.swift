import COpenSSL
import FuseboxTLS
import NIOCore
import NIOPosix
import FuseboxTesting
import XCTest

/// Our server against our client over real sockets on 127.0.0.1.
final class TLSLoopbackTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    }

    override func tearDown() async throws {
        try await group.shutdownGracefully()
    }

    private func roundTrip(server: TLSConfiguration, client: TLSConfiguration, expectVersion: String) async throws {
        let s = try await TestTLSServer(group: group, configuration: server)
        let (channel, log) = try await connectClient(group: group, port: s.port, configuration: client)
        try await channel.writeAndFlush(ByteBuffer(string: "ping"))
        await waitUntil("echo") { log.received == 4 }
        let handshake = try XCTUnwrap(log.handshake)
        XCTAssertEqual(handshake.protocolVersion, expectVersion)
        XCTAssertEqual(handshake.applicationProtocol, "h2")
        XCTAssertEqual(handshake.peer?.commonName, "fuseboxd")
        XCTAssertEqual(handshake.peer?.dnsNames, ["localhost"])
        XCTAssertEqual(handshake.peer?.ipAddresses, ["127.0.0.1", "::1"])
        XCTAssertEqual(handshake.peer?.fingerprintSHA256.count, 64)
        let serverSide = try XCTUnwrap(s.connectionLogs.first?.handshake)
        if client.certificateChainPath != nil {
            XCTAssertEqual(serverSide.peer?.commonName, "fusebox-admin")
            XCTAssertEqual(serverSide.peer?.uris, ["spiffe://fusebox.local/role/admin"])
        } else {
            XCTAssertNil(serverSide.peer)
        }
        try await channel.close()
        await waitUntil("server saw a clean close") { s.connectionLogs.first?.closed == true }
        XCTAssertEqual(s.allTLSErrors, [], "a close_notify close is clean")
        XCTAssertEqual(log.tlsErrors, [])
        try await s.stop()
    }

    func testMutualTLSOnTLS13() async throws {
        try await roundTrip(server: Certs.server(), client: Certs.client(), expectVersion: "TLSv1.3")
    }

    func testMutualTLSOnTLS12() async throws {
        try await roundTrip(server: Certs.server(version: .tls12), client: Certs.client(version: .tls12), expectVersion: "TLSv1.2")
    }

    func testServerOnlyTLSOnBothVersions() async throws {
        try await roundTrip(server: Certs.server(mtls: false), client: Certs.client(identity: nil), expectVersion: "TLSv1.3")
        try await roundTrip(
            server: Certs.server(mtls: false, version: .tls12), client: Certs.client(identity: nil, version: .tls12),
            expectVersion: "TLSv1.2")
    }

    /// 64 MiB each way, checked byte for byte (the server echoes; the client
    /// compares a hash of everything it got with a hash of what it sent).
    func testSixtyFourMebibytesEachWay() async throws {
        let s = try await TestTLSServer(group: group, configuration: Certs.server())
        let (channel, log) = try await connectClient(group: group, port: s.port, configuration: Certs.client())
        let total = 64 * 1024 * 1024
        let chunk = 256 * 1024
        let sent = SHA256Stream()
        for _ in 0..<(total / chunk) {
            var bytes = [UInt8](repeating: 0, count: chunk)
            XCTAssertEqual(RAND_bytes(&bytes, Int32(chunk)), 1)
            bytes.withUnsafeBytes { sent.update($0) }
            // Waits for each write, so memory stays bounded whatever the peer's speed.
            try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
        }
        await waitUntil("64 MiB echoed", timeout: 120) { log.received == total }
        XCTAssertEqual(s.connectionLogs.first?.received, total, "server received 64 MiB")
        XCTAssertEqual(s.connectionLogs.first?.digest.hex, sent.hex, "the server got exactly what was sent")
        XCTAssertEqual(log.digest.hex, sent.hex, "the echo matches byte for byte")
        try await channel.close()
        try await s.stop()
    }

    func testTwoHundredConcurrentConnections() async throws {
        let s = try await TestTLSServer(group: group, configuration: Certs.server())
        let clients = try await withThrowingTaskGroup(of: (any Channel, ConnectionLog).self) { tasks in
            for _ in 0..<200 {
                tasks.addTask { [group] in
                    let (channel, log) = try await connectClient(group: group!, port: s.port, configuration: Certs.client(identity: "reporter"))
                    try await channel.writeAndFlush(ByteBuffer(string: "hello"))
                    return (channel, log)
                }
            }
            var all: [(any Channel, ConnectionLog)] = []
            for try await client in tasks { all.append(client) }
            return all
        }
        await waitUntil("200 echoes", timeout: 60) { clients.allSatisfy { $0.1.received == 5 } }
        XCTAssertEqual(s.connectionLogs.count, 200)
        XCTAssertEqual(Set(s.connectionLogs.compactMap { $0.handshake?.peer?.commonName }), ["fusebox-reporter"])
        for (channel, _) in clients { try await channel.close() }
        try await s.stop()
    }
}
