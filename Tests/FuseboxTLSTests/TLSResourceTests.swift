import Foundation
import FuseboxTLS
import FuseboxTesting
import NIOCore
import NIOPosix
import XCTest

final class TLSResourceTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    }

    override func tearDown() async throws {
        try await group.shutdownGracefully()
    }

    /// 1,000 connections opened and closed (clean and failed ones): afterwards
    /// every SSL object (and its BIOs) is freed.
    func testThousandConnectionsLeaveNoSSLObjectsBehind() async throws {
        let baseline = TLSHandler.liveConnections
        let server = try await TestTLSServer(group: group, configuration: Certs.server())
        for batch in 0..<20 {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for i in 0..<50 {
                    tasks.addTask { [group] in
                        // Every tenth connection fails its handshake (no client certificate).
                        let identity: String? = i % 10 == 0 ? nil : "reader"
                        let (channel, log) = try await connectClient(group: group!, port: server.port, configuration: Certs.client(identity: identity))
                        if identity != nil {
                            try await channel.writeAndFlush(ByteBuffer(string: "x"))
                            await waitUntil("echo \(batch)/\(i)") { log.received == 1 }
                            try await channel.close()
                        } else {
                            await waitUntil("refused \(batch)/\(i)") { log.closed }
                        }
                    }
                }
                try await tasks.waitForAll()
            }
        }
        await waitUntil("all 1,000 server connections closed", timeout: 20) {
            server.connectionLogs.count == 1_000 && server.connectionLogs.allSatisfy(\.closed)
        }
        try await server.stop()
        await waitUntil("SSL objects freed", timeout: 20) { TLSHandler.liveConnections == baseline }
        XCTAssertEqual(TLSHandler.liveConnections, baseline)
    }

    /// New connections use reloaded material; existing ones keep theirs; a
    /// failed reload keeps the old material and says why.
    func testReloadWithoutRestart() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-reload-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let cert = dir.appendingPathComponent("server.pem").path
        let key = dir.appendingPathComponent("server.key").path
        func install(_ name: String) throws {
            for (from, to) in [("\(name).pem", cert), ("\(name).key", key)] {
                try? FileManager.default.removeItem(atPath: to)
                try FileManager.default.copyItem(atPath: try Certs.path(from), toPath: to)
            }
        }
        try install("server")
        let server = try await TestTLSServer(
            group: group,
            configuration: .server(certificateChainPath: cert, privateKeyPath: key, clientCAPath: try Certs.path("ca.pem")))
        let (old, oldLog) = try await connectClient(group: group, port: server.port, configuration: Certs.client())
        try await old.writeAndFlush(ByteBuffer(string: "1"))
        await waitUntil("first echo") { oldLog.received == 1 }
        XCTAssertEqual(oldLog.handshake?.peer?.commonName, "fuseboxd")

        try install("rotated-server")
        try server.provider.reload()
        let (fresh, freshLog) = try await connectClient(group: group, port: server.port, configuration: Certs.client())
        try await fresh.writeAndFlush(ByteBuffer(string: "2"))
        await waitUntil("echo on the new certificate") { freshLog.received == 1 }
        XCTAssertEqual(freshLog.handshake?.peer?.commonName, "fuseboxd-rotated")
        try await old.writeAndFlush(ByteBuffer(string: "3"))
        await waitUntil("old connection still works") { oldLog.received == 2 }

        // A key that does not match its certificate: the reload fails, the old material stays.
        try FileManager.default.removeItem(atPath: key)
        try FileManager.default.copyItem(atPath: try Certs.path("admin.key"), toPath: key)
        XCTAssertThrowsError(try server.provider.reload()) { error in
            XCTAssertEqual((error as? TLSError)?.code, .invalidConfiguration)
            XCTAssertTrue("\(error)".contains("does not match"), "\(error)")
        }
        let (after, afterLog) = try await connectClient(group: group, port: server.port, configuration: Certs.client())
        try await after.writeAndFlush(ByteBuffer(string: "4"))
        await waitUntil("echo after a failed reload") { afterLog.received == 1 }
        XCTAssertEqual(afterLog.handshake?.peer?.commonName, "fuseboxd-rotated")
        for channel in [old, fresh, after] { try await channel.close() }
        try await server.stop()
    }

    func testBadConfigurationFilesGiveClearErrors() throws {
        XCTAssertThrowsError(try TLSContext(configuration: .server(
            certificateChainPath: "/nonexistent/server.pem", privateKeyPath: "/nonexistent/server.key", clientCAPath: nil))
        ) { error in
            XCTAssertEqual((error as? TLSError)?.code, .invalidConfiguration)
            XCTAssertTrue("\(error)".contains("/nonexistent/server.pem"), "\(error)")
        }
        XCTAssertThrowsError(try TLSContext(configuration: .server(
            certificateChainPath: try Certs.path("server.pem"), privateKeyPath: try Certs.path("server.key"), clientCAPath: nil))
        ) { error in
            XCTAssertTrue("\(error)".contains("mutual TLS needs a CA bundle"), "\(error)")
        }
    }
}
