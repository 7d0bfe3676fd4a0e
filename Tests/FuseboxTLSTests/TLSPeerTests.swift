import Foundation
import FuseboxTLS
import FuseboxTesting
import NIOCore
import NIOPosix
import XCTest

/// Against TLS implementations nobody here wrote: the openssl CLI and Python's ssl.
final class TLSPeerTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    }

    override func tearDown() async throws {
        try await group.shutdownGracefully()
    }

    /// Our client against `openssl s_server` (mutual TLS, ALPN h2) on port 0.
    func testOurClientAgainstOpenSSLServer() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "openssl", "s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-alpn", "h2",
            "-cert", try Certs.path("server.pem"), "-key", try Certs.path("server.key"),
            "-CAfile", try Certs.path("ca.pem"), "-Verify", "1", "-verify_return_error", "-rev",
        ]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = Pipe()
        try process.run()
        defer { if process.isRunning { process.terminate() } }
        // s_server prints "ACCEPT 127.0.0.1:<port>" once listening.
        var text = ""
        var port: Int?
        let deadline = Date().addingTimeInterval(10)
        while port == nil, Date() < deadline {
            text += String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("ACCEPT") }) {
                port = line.split(separator: ":").last.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            }
        }
        let serverPort = try XCTUnwrap(port, "s_server did not start: \(text)")
        let (channel, log) = try await connectClient(group: group, port: serverPort, configuration: Certs.client())
        // -rev: s_server answers each line reversed.
        try await channel.writeAndFlush(ByteBuffer(string: "fusebox\n"))
        await waitUntil("s_server's answer") { log.received >= 8 }
        XCTAssertEqual(log.handshake?.applicationProtocol, "h2")
        XCTAssertEqual(log.handshake?.peer?.commonName, "fuseboxd")
        XCTAssertEqual(log.tlsErrors, [])
        try await channel.close()
    }

    /// `openssl s_client` against our server.
    func testOpenSSLClientAgainstOurServer() async throws {
        let server = try await TestTLSServer(group: group, configuration: Certs.server())
        let result = try runProcess([
            "bash", "-c",
            // stdin stays open a second for the echo to arrive; at its end s_client sends close_notify and exits.
            "(printf 'echo-me\\n'; sleep 1) | exec openssl s_client -connect 127.0.0.1:\(server.port) -servername localhost -alpn h2 -CAfile '\(try Certs.path("ca.pem"))' -cert '\(try Certs.path("reader.pem"))' -key '\(try Certs.path("reader.key"))' -verify_return_error 2>&1",
        ], timeout: 20)
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertTrue(result.output.contains("ALPN protocol: h2"), result.output)
        XCTAssertTrue(result.output.contains("Verify return code: 0 (ok)"), result.output)
        XCTAssertTrue(result.output.contains("echo-me"), "our server echoed: \(result.output)")
        await waitUntil("server saw the client") { server.connectionLogs.first?.handshake != nil }
        XCTAssertEqual(server.connectionLogs.first?.handshake?.peer?.commonName, "fusebox-reader")
        await waitUntil("s_client closed cleanly") { server.connectionLogs.first?.closed == true }
        XCTAssertEqual(server.connectionLogs.first?.tlsErrors, [], "s_client ended with close_notify")
        try await server.stop()
    }

    /// No connection resumes a session: each one verifies its client's
    /// certificate in a full handshake. Over TLS 1.3 (tickets) and TLS 1.2
    /// (session IDs), `s_client` is given nothing it could offer again.
    func testNoConnectionResumesASession() async throws {
        let server = try await TestTLSServer(group: group, configuration: Certs.server())
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-sess-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for version in ["-tls1_3", "-tls1_2"] {
            let client = "openssl s_client -connect 127.0.0.1:\(server.port) \(version) -servername localhost -CAfile '\(try Certs.path("ca.pem"))' -cert '\(try Certs.path("reader.pem"))' -key '\(try Certs.path("reader.key"))' -verify_return_error"
            // stdin open a second: TLS 1.3 tickets arrive after the handshake.
            let first = try runProcess(["bash", "-c", "(sleep 1) | \(client) -sess_out '\(dir)/s\(version)' 2>&1"], timeout: 20)
            XCTAssertEqual(first.status, 0, first.output)
            XCTAssertFalse(first.output.contains("New Session Ticket"), "\(version): the server sent a ticket: \(first.output)")
            // s_client saves a session only when it can offer it again.
            let saved = "\(dir)/s\(version)"
            guard FileManager.default.fileExists(atPath: saved) else { continue }
            let second = try runProcess(["bash", "-c", "(sleep 1) | \(client) -sess_in '\(saved)' 2>&1"], timeout: 20)
            XCTAssertEqual(second.status, 0, second.output)
            XCTAssertFalse(second.output.contains("Reused,"), "\(version): the session was resumed: \(second.output)")
            XCTFail("\(version): the server gave s_client a session to resume: \(first.output)")
        }
        await waitUntil("server saw both clients") { server.connectionLogs.count == 2 }
        XCTAssertEqual(server.connectionLogs.map { $0.handshake?.peer?.commonName }, ["fusebox-reader", "fusebox-reader"])
        try await server.stop()
    }

    /// Python's ssl module as a client: mutual TLS and ALPN h2.
    func testPythonSSLClientWithALPNAndMutualTLS() async throws {
        let server = try await TestTLSServer(group: group, configuration: Certs.server())
        let script = """
            import socket, ssl, sys
            ctx = ssl.create_default_context(cafile=sys.argv[2])
            ctx.load_cert_chain(sys.argv[3], sys.argv[4])
            ctx.set_alpn_protocols(["h2"])
            with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(b"from python")
                    data = b""
                    while len(data) < 11:
                        data += tls.recv(64)
                    print("alpn", tls.selected_alpn_protocol())
                    print("version", tls.version())
                    print("echo", data.decode())
                    print("peer", dict(x[0] for x in tls.getpeercert()["subject"])["commonName"])
            """
        let result = try runProcess([
            "python3", "-c", script, "\(server.port)", try Certs.path("ca.pem"), try Certs.path("reporter.pem"),
            try Certs.path("reporter.key"),
        ], timeout: 20)
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertTrue(result.output.contains("alpn h2"), result.output)
        XCTAssertTrue(result.output.contains("version TLSv1.3"), result.output)
        XCTAssertTrue(result.output.contains("echo from python"), result.output)
        XCTAssertTrue(result.output.contains("peer fuseboxd"), result.output)
        await waitUntil("server saw the client") { server.connectionLogs.first?.handshake != nil }
        XCTAssertEqual(server.connectionLogs.first?.handshake?.peer?.uris, ["spiffe://fusebox.local/role/reporter"])
        try await server.stop()
    }
}
