import Foundation
import FuseboxRPC
import FuseboxTesting
import FuseboxWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest

/// Python grpcio, an independent gRPC implementation, against our server and
/// as the server for our client.
final class RPCInteropTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var work: URL!

    override func setUp() async throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        work = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-grpc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    }

    override func tearDown() async throws {
        try? FileManager.default.removeItem(at: work)
        try await group.shutdownGracefully()
    }

    func testGrpcioClientAgainstOurServer() async throws {
        let server = try await TestRPCServer.start(group: group)
        let result = try runProcess([
            "python3", "Tests/Interop/grpc_client.py", "--port", "\(server.port)",
            "--protos", repositoryRoot.appendingPathComponent("Protos").path, "--work", work.path,
            "--ca", try TestCertificates.path("ca.pem"), "--cert", try TestCertificates.path("reporter.pem"),
            "--key", try TestCertificates.path("reporter.key"),
        ], timeout: 120)
        XCTAssertEqual(result.status, 0, result.output)
        for check in [
            "unary-metadata", "server-streaming-initial-metadata", "client-streaming", "bidirectional", "deadline",
            "cancellation", "error-status-message-trailers", "unimplemented", "size-at-limit", "size-over-limit", "health",
        ] {
            XCTAssertTrue(result.output.contains("ok \(check)\n") || result.output.hasSuffix("ok \(check)"), "\(check): \(result.output)")
        }
        // The deadline and the cancellation both reached our handlers.
        await waitUntil("handlers cancelled") { server.echo.cancelled.withLockedValue { $0 } == 2 }
        try await server.stop()
    }

    func testOurClientAgainstGrpcioServer() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.currentDirectoryURL = repositoryRoot
        process.arguments = [
            "python3", "Tests/Interop/grpc_server.py", "--protos", repositoryRoot.appendingPathComponent("Protos").path,
            "--work", work.path, "--ca", try TestCertificates.path("ca.pem"), "--cert", try TestCertificates.path("server.pem"),
            "--key", try TestCertificates.path("server.key"),
        ]
        let output = Pipe()
        let input = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = input
        try process.run()
        defer {
            try? input.fileHandleForWriting.close()
            if process.isRunning { process.terminate() }
        }
        var text = ""
        var port: Int?
        let deadline = Date().addingTimeInterval(60)
        while port == nil, Date() < deadline, process.isRunning {
            text += String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
            port = text.split(separator: "\n").first { $0.hasPrefix("PORT ") }.flatMap { Int($0.dropFirst(5)) }
        }
        let serverPort = try XCTUnwrap(port, "grpcio server did not start: \(text)")
        let client = try makeClient(port: serverPort, group: group)
        let E = EchoService.name

        var metadata = RPCMetadata()
        metadata.add("x-test", "hello")
        metadata.add("x-bin-test-bin", binary: [0, 1, 255])
        let reply = try await client.call(path: "/\(E)/Unary", options: RPCCallOptions(metadata: metadata)) { call -> (String, String, String?) in
            try await call.send(try message("hi").encode(), end: true)
            let bytes = try await call.next() ?? []
            _ = try await call.next()
            let m = try EchoService.Message(decoding: bytes)
            return (m.description, m.field, call.trailingMetadata.first("x-echo-trailer"))
        }
        XCTAssertEqual(reply.0, "echo: hi")
        XCTAssertEqual(reply.1, "x-test=hello;bin=[0, 1, 255]")
        XCTAssertEqual(reply.2, "t", "trailing metadata from grpcio")

        let counted = NIOLockedValueBoxStrings()
        try await client.serverStreaming(E, "Count", message("3"), as: EchoService.Message.self) { counted.append($0.description) }
        XCTAssertEqual(counted.values, ["0", "1", "2"])
        let joined = try await client.clientStreaming(E, "Join", [message("x"), message("y")], as: EchoService.Message.self)
        XCTAssertEqual(joined.description, "x,y")
        let chat = try await client.call(path: "/\(E)/Chat") { call -> [String] in
            try await call.send(try message("abc").encode())
            let first = try EchoService.Message(decoding: try await call.next() ?? []).description
            try await call.finishSending()
            _ = try await call.next()
            return [first]
        }
        XCTAssertEqual(chat, ["ABC"])

        do throws(RPCError) {
            _ = try await client.unary(E, "Sleep", message("5000"), as: EchoService.Message.self, options: RPCCallOptions(timeout: .milliseconds(300)))
            XCTFail("expected DEADLINE_EXCEEDED")
        } catch {
            XCTAssertEqual(error.code, .deadlineExceeded)
        }
        // Cancelling the calling task cancels the call; the server sees it.
        let sleeper = Task { try await client.unary(E, "Sleep", message("5000"), as: EchoService.Message.self) }
        try await Task.sleep(for: .milliseconds(300))
        sleeper.cancel()
        _ = await sleeper.result
        var seen = 0
        for _ in 0..<100 where seen < 2 {
            seen = Int(try await client.unary(E, "Stats", message(""), as: EchoService.Message.self).description) ?? 0
            try await Task.sleep(for: .milliseconds(50))
        }
        XCTAssertEqual(seen, 2, "grpcio saw the deadline and the cancellation")

        do throws(RPCError) {
            _ = try await client.unary(E, "Fail", message("no such policy ✗", field: "5"), as: EchoService.Message.self)
            XCTFail("expected NOT_FOUND")
        } catch {
            XCTAssertEqual(error.code, .notFound)
            XCTAssertEqual(error.message, "no such policy ✗")
            XCTAssertEqual(error.metadata.first("x-detail"), "trailer value")
        }

        var atLimit = Fusebox_V1_StaticResponse()
        atLimit.body = [UInt8](repeating: 1, count: 4 * 1024 * 1024 - 5)
        let sized = try await client.unary(E, "Size", atLimit, as: Fusebox_V1_StaticResponse.self)
        XCTAssertEqual(sized.contentType, "size=\(4 * 1024 * 1024 - 5)")
        atLimit.body.append(1)
        do throws(RPCError) {
            _ = try await client.unary(E, "Size", atLimit, as: Fusebox_V1_StaticResponse.self)
            XCTFail("expected RESOURCE_EXHAUSTED from grpcio")
        } catch {
            XCTAssertEqual(error.code, .resourceExhausted)
        }
        // A response over our 4 MiB receive limit.
        do throws(RPCError) {
            _ = try await client.unary(E, "Big", message("\(4 * 1024 * 1024)"), as: Fusebox_V1_StaticResponse.self)
            XCTFail("expected RESOURCE_EXHAUSTED from our client")
        } catch {
            XCTAssertEqual(error.code, .resourceExhausted)
        }
        await client.close()
    }

    /// `RPCClientConfiguration.plaintext`: cleartext HTTP/2 (prior
    /// knowledge, `:scheme http`) to a grpcio server on an insecure port,
    /// unary and bidirectional; and the same client refused by a TLS-only port.
    func testOurPlaintextClientAgainstGrpcioInsecureServer() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.currentDirectoryURL = repositoryRoot
        process.arguments = [
            "python3", "Tests/Interop/grpc_server.py", "--protos", repositoryRoot.appendingPathComponent("Protos").path,
            "--work", work.path, "--plaintext",
        ]
        let output = Pipe()
        let input = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = input
        try process.run()
        defer {
            try? input.fileHandleForWriting.close()
            if process.isRunning { process.terminate() }
        }
        var text = ""
        var port: Int?
        let deadline = Date().addingTimeInterval(60)
        while port == nil, Date() < deadline, process.isRunning {
            text += String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
            port = text.split(separator: "\n").first { $0.hasPrefix("PORT ") }.flatMap { Int($0.dropFirst(5)) }
        }
        let serverPort = try XCTUnwrap(port, "grpcio server did not start: \(text)")
        let client = try RPCClient(configuration: .plaintext(host: "127.0.0.1", port: serverPort), group: group)
        let E = EchoService.name
        var hi = EchoService.Message()
        hi.description = "hi"
        let reply = try await client.unary(E, "Unary", hi, as: EchoService.Message.self)
        XCTAssertEqual(reply.description, "echo: hi")
        let chat = try await client.call(path: "/\(E)/Chat") { call -> [String] in
            var words: [String] = []
            for word in ["abc", "def"] {
                var m = EchoService.Message()
                m.description = word
                try await call.send(try m.encode())
                words.append(try EchoService.Message(decoding: try await call.next() ?? []).description)
            }
            try await call.finishSending()
            _ = try await call.next()
            return words
        }
        XCTAssertEqual(chat, ["ABC", "DEF"])
        await client.close()

        // A plaintext client to a TLS server: no gRPC answer, UNAVAILABLE.
        let tlsServer = try await TestRPCServer.start(group: group)
        var configuration = RPCClientConfiguration.plaintext(host: "127.0.0.1", port: tlsServer.port)
        configuration.connectTimeout = .seconds(2)
        let mismatched = try RPCClient(configuration: configuration, group: group)
        do throws(RPCError) {
            _ = try await mismatched.unary(E, "Unary", hi, as: EchoService.Message.self, options: RPCCallOptions(timeout: .seconds(3)))
            XCTFail("a cleartext call to a TLS server succeeded")
        } catch {
            XCTAssertTrue([.unavailable, .deadlineExceeded].contains(error.code), "\(error)")
        }
        await mismatched.close()
        try await tlsServer.stop()
    }

    /// grpcio's default channel sends a BDP PING after response data. Those
    /// PINGs follow data the server sent, so they are no strikes (as in
    /// grpc-core): 200 unary calls 20 ms apart stay on one connection, with
    /// no GOAWAY "too_many_pings" and no failed call.
    func testGrpcioDefaultChannelKeepsOneConnectionForSteadyUnaryCalls() async throws {
        let server = try await TestRPCServer.start(group: group)  // default keepalive enforcement
        let started = ContinuousClock.now
        let result = try runProcess([
            "python3", "Tests/Interop/grpc_steady_calls.py", "--port", "\(server.port)", "--calls", "200", "--gap-ms", "20",
            "--protos", repositoryRoot.appendingPathComponent("Protos").path, "--work", work.path,
            "--ca", try TestCertificates.path("ca.pem"), "--cert", try TestCertificates.path("reporter.pem"),
            "--key", try TestCertificates.path("reporter.key"),
        ], timeout: 120)
        print("200 grpcio calls 20 ms apart took \(ContinuousClock.now - started); connections accepted: \(server.server.acceptedConnections)")
        XCTAssertEqual(result.status, 0, result.output)
        let lines = result.output.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.contains("calls 200"), result.output)
        XCTAssertTrue(lines.contains("errors 0"), "calls failed: \(result.output)")
        XCTAssertTrue(lines.contains("ready 1"), "the channel had to reconnect: \(result.output)")
        XCTAssertFalse(result.output.contains("too_many_pings"), result.output)
        XCTAssertEqual(server.server.acceptedConnections, 1, "the client reconnected: \(result.output)")
        XCTAssertEqual(server.echo.completed.withLockedValue { $0 }, 200)
        try await server.stop()
    }
}
