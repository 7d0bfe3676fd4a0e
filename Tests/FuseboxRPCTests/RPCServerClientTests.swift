import FuseboxRPC
import FuseboxTesting
import FuseboxWire
import NIOCore
import NIOPosix
import XCTest

/// Our server against our client, over TLS on 127.0.0.1.
final class RPCServerClientTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    }

    override func tearDown() async throws {
        try await group.shutdownGracefully()
    }

    func testAllFourCallTypesAndMetadata() async throws {
        let server = try await TestRPCServer.start(group: group)
        let client = try makeClient(port: server.port, group: group)
        var metadata = RPCMetadata()
        metadata.add("x-test", "hello")
        metadata.add("x-bin-test-bin", binary: [0, 1, 255])
        let reply = try await client.unary(EchoService.name, "Unary", message("hi"), as: EchoService.Message.self, options: RPCCallOptions(metadata: metadata))
        XCTAssertEqual(reply.description, "echo: hi")
        XCTAssertEqual(reply.field, "x-test=hello;bin=[0, 1, 255]")

        let me = try await client.unary(EchoService.name, "Peer", message(""), as: EchoService.Message.self, options: RPCCallOptions(timeout: .seconds(30)))
        XCTAssertEqual(me.description, "fusebox-admin", "the handler sees the caller's certificate identity")
        XCTAssertEqual(me.field, "spiffe://fusebox.local/role/admin;deadline", "and the call's deadline")

        let counted = NIOLockedValueBoxStrings()
        try await client.serverStreaming(EchoService.name, "Count", message("4"), as: EchoService.Message.self) { counted.append($0.description) }
        XCTAssertEqual(counted.values, ["0", "1", "2", "3"])

        let joined = try await client.clientStreaming(EchoService.name, "Join", [message("a"), message("b"), message("c")], as: EchoService.Message.self)
        XCTAssertEqual(joined.description, "a,b,c")

        let chat = try await client.call(path: "/\(EchoService.name)/Chat") { call -> [String] in
            var out: [String] = []
            for word in ["one", "two"] {
                try await call.send(try message(word).encode())
                guard let bytes = try await call.next() else { break }
                out.append(try EchoService.Message(decoding: bytes).description)
            }
            try await call.finishSending()
            _ = try await call.next()
            return out
        }
        XCTAssertEqual(chat, ["ONE", "TWO"])
        await client.close()
        try await server.stop()
    }

    func testErrorsCarryStatusMessageAndTrailers() async throws {
        let server = try await TestRPCServer.start(group: group)
        let client = try makeClient(port: server.port, group: group)
        do throws(RPCError) {
            _ = try await client.unary(EchoService.name, "Fail", message("policy \"x\": retry.maxAttempts (0) must be between 1 and 10 — ✗", field: "3"), as: EchoService.Message.self)
            XCTFail("expected an error")
        } catch {
            XCTAssertEqual(error.code, .invalidArgument)
            XCTAssertEqual(error.message, "policy \"x\": retry.maxAttempts (0) must be between 1 and 10 — ✗")
            XCTAssertEqual(error.metadata.first("x-detail"), "trailer value")
        }
        do throws(RPCError) {
            _ = try await client.unary(EchoService.name, "Nope", message(""), as: EchoService.Message.self)
            XCTFail("expected UNIMPLEMENTED")
        } catch {
            XCTAssertEqual(error.code, .unimplemented)
        }
        await client.close()
        try await server.stop()
    }

    func testDeadlineExceededCancelsTheHandler() async throws {
        let server = try await TestRPCServer.start(group: group)
        let client = try makeClient(port: server.port, group: group)
        do throws(RPCError) {
            _ = try await client.unary(EchoService.name, "Sleep", message("5000"), as: EchoService.Message.self, options: RPCCallOptions(timeout: .milliseconds(200)))
            XCTFail("expected DEADLINE_EXCEEDED")
        } catch {
            XCTAssertEqual(error.code, .deadlineExceeded)
        }
        await waitUntil("handler cancelled") { server.echo.cancelled.withLockedValue { $0 } == 1 }
        await client.close()
        try await server.stop()
    }

    func testMessageSizeLimit() async throws {
        let server = try await TestRPCServer.start(group: group)
        let client = try makeClient(port: server.port, group: group)
        var request = Fusebox_V1_StaticResponse()
        request.body = [UInt8](repeating: 1, count: 4 * 1024 * 1024 - 5)  // encodes to exactly 4 MiB
        let atLimit = try await client.unary(EchoService.name, "Size", request, as: Fusebox_V1_StaticResponse.self)
        XCTAssertEqual(atLimit.contentType, "size=\(4 * 1024 * 1024 - 5)")
        request.body.append(1)
        do throws(RPCError) {
            _ = try await client.unary(EchoService.name, "Size", request, as: Fusebox_V1_StaticResponse.self)
            XCTFail("expected RESOURCE_EXHAUSTED")
        } catch {
            XCTAssertEqual(error.code, .resourceExhausted)
            XCTAssertTrue(error.message.contains("exceeds the limit of 4194304 bytes"), error.message)
        }
        await client.close()
        try await server.stop()
    }

    /// fuseboxd binds its port before it serves (`start()`, then `serve()`
    /// once the rest of the process is up). Unary and server-streaming calls
    /// that arrive in between wait for `serve()` and are then answered, like
    /// every other call: none is refused as unknown.
    func testCallsThatArriveBeforeServeAreAnsweredOnceItRuns() async throws {
        let server = try await TestRPCServer.start(group: group, serveAfter: .milliseconds(300))
        let client = try makeClient(port: server.port, group: group, identity: "reader")
        async let unary = client.unary(EchoService.name, "Unary", message("early"), as: EchoService.Message.self)
        let seen = NIOLockedValueBoxStrings()
        let watch = Task {
            try await client.serverStreaming(
                "grpc.health.v1.Health", "Watch", Grpc_Health_V1_HealthCheckRequest(), as: Grpc_Health_V1_HealthCheckResponse.self
            ) { seen.append("\($0.status)") }
        }
        let reply = try await unary
        XCTAssertEqual(reply.description, "echo: early")
        await waitUntil("the watch's first status") { seen.values.count == 1 }
        XCTAssertEqual(seen.values, ["serving"])
        // Served on the event loop from now on, with the same answers.
        let later = try await client.unary(EchoService.name, "Unary", message("later"), as: EchoService.Message.self)
        XCTAssertEqual(later.description, "echo: later")
        server.health.shutdown()
        try await watch.value
        await client.close()
        try await server.stop()
        XCTAssertEqual(server.server.callsInFlight, 0, "every call counted out")
    }

    func testHealthCheckAndWatch() async throws {
        let server = try await TestRPCServer.start(group: group)
        let client = try makeClient(port: server.port, group: group, identity: "reader")
        let check = try await client.unary("grpc.health.v1.Health", "Check", Grpc_Health_V1_HealthCheckRequest(), as: Grpc_Health_V1_HealthCheckResponse.self)
        XCTAssertEqual(check.status, .serving)
        var unknown = Grpc_Health_V1_HealthCheckRequest()
        unknown.service = "nope"
        do throws(RPCError) {
            _ = try await client.unary("grpc.health.v1.Health", "Check", unknown, as: Grpc_Health_V1_HealthCheckResponse.self)
            XCTFail("expected NOT_FOUND")
        } catch {
            XCTAssertEqual(error.code, .notFound)
        }
        let seen = NIOLockedValueBoxStrings()
        async let watch: Void = client.serverStreaming("grpc.health.v1.Health", "Watch", Grpc_Health_V1_HealthCheckRequest(), as: Grpc_Health_V1_HealthCheckResponse.self) {
            seen.append("\($0.status)")
        }
        await waitUntil("first status") { seen.values.count == 1 }
        server.health.setStatus(.notServing)
        await waitUntil("second status") { seen.values.count == 2 }
        server.health.shutdown()
        try await watch
        XCTAssertEqual(seen.values, ["serving", "notServing", "notServing"])
        await client.close()
        try await server.stop()
    }

    /// At least 10,000 unary calls over 50 TLS connections, with zero errors.
    func testTenThousandCallsOverFiftyConnections() async throws {
        let server = try await TestRPCServer.start(group: group)
        let clients = try (0..<50).map { _ in try makeClient(port: server.port, group: group, identity: "reporter") }
        let failures = try await withThrowingTaskGroup(of: Int.self) { tasks in
            for client in clients {
                tasks.addTask {
                    var failed = 0
                    for i in 0..<200 {
                        do {
                            let reply = try await client.unary(EchoService.name, "Unary", message("\(i)"), as: EchoService.Message.self)
                            if reply.description != "echo: \(i)" { failed += 1 }
                        } catch {
                            failed += 1
                        }
                    }
                    return failed
                }
            }
            return try await tasks.reduce(0, +)
        }
        XCTAssertEqual(failures, 0)
        XCTAssertEqual(server.echo.completed.withLockedValue { $0 }, 10_000)
        for client in clients { await client.close() }
        try await server.stop()
    }

    func testGracefulShutdownFinishesInFlightCallsAndRefusesNewOnes() async throws {
        let server = try await TestRPCServer.start(group: group)
        let client = try makeClient(port: server.port, group: group)
        _ = try await client.unary(EchoService.name, "Unary", message("warm"), as: EchoService.Message.self)
        async let inFlight = client.unary(EchoService.name, "Sleep", message("500"), as: EchoService.Message.self)
        try await Task.sleep(for: .milliseconds(100))
        let stopped = Task { try await server.stop() }
        let reply = try await inFlight
        XCTAssertEqual(reply.description, "slept", "the in-flight call completed during shutdown")
        try await stopped.value
        do throws(RPCError) {
            _ = try await client.unary(EchoService.name, "Unary", message("late"), as: EchoService.Message.self)
            XCTFail("a new call after shutdown must be refused")
        } catch {
            XCTAssertEqual(error.code, .unavailable)
        }
        await client.close()
    }

    func testClientFailsFastThenReconnectsWithBackoff() async throws {
        // Nothing listens yet: fail fast with UNAVAILABLE naming the address.
        let probe = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let port = probe.localAddress?.port ?? 0
        try await probe.close()
        let client = try makeClient(port: port, group: group) { $0.backoffInitial = .milliseconds(200) }
        do throws(RPCError) {
            _ = try await client.unary(EchoService.name, "Unary", message("x"), as: EchoService.Message.self)
            XCTFail("expected UNAVAILABLE")
        } catch {
            XCTAssertEqual(error.code, .unavailable)
            XCTAssertTrue(error.message.contains("127.0.0.1:\(port)"), error.message)
        }
        // Within the backoff, a second call fails fast without connecting.
        do throws(RPCError) {
            _ = try await client.unary(EchoService.name, "Unary", message("x"), as: EchoService.Message.self)
            XCTFail("expected UNAVAILABLE")
        } catch {
            XCTAssertTrue(error.message.contains("retrying in"), error.message)
        }
        // A server appears on that port; a waiting call gets through.
        let server = try await TestRPCServer.start(group: group) { $0.port = port }
        let reply = try await client.unary(
            EchoService.name, "Unary", message("back"), as: EchoService.Message.self,
            options: RPCCallOptions(timeout: .seconds(10), waitForReady: true))
        XCTAssertEqual(reply.description, "echo: back")
        await client.close()
        try await server.stop()
    }

    /// 200 clients, 50 at a time, each opening a watch and leaving: half
    /// cancel the watch and close at once (the reset and the close reach the
    /// server in one flight), half close with the watch open. Before the fix,
    /// about half of the first kind stayed in memory for good (NIOHTTP2 held
    /// the reset stream until a read-complete that never came), about
    /// 15 KiB each: the growth the soak found.
    func testConnectionsWithOpenWatchesAreReleasedWhenTheirClientsLeave() async throws {
        let server = try await TestRPCServer.start(group: group)
        let before = RPCServer.connectionsInMemory
        let port = server.port
        let group = self.group!
        try await withThrowingTaskGroup(of: Void.self) { sessions in
            for i in 0..<200 {
                if i >= 50 { try await sessions.next() }
                sessions.addTask {
                    let client = try makeClient(port: port, group: group, identity: "reader")
                    let seen = NIOLockedValueBoxStrings()
                    let watch = Task {
                        try await client.serverStreaming(
                            "grpc.health.v1.Health", "Watch", Grpc_Health_V1_HealthCheckRequest(),
                            as: Grpc_Health_V1_HealthCheckResponse.self
                        ) { seen.append("\($0.status)") }
                    }
                    await waitUntil("session \(i): the watch's first status") { seen.values.count == 1 }
                    if i.isMultiple(of: 2) {
                        watch.cancel()
                        _ = await watch.result
                    }
                    await client.close()
                    _ = await watch.result
                }
            }
            try await sessions.waitForAll()
        }
        await waitUntil("every connection closed on the server") { server.server.openConnections == 0 }
        await waitUntil("every connection released", timeout: 15) { RPCServer.connectionsInMemory <= before }
        XCTAssertEqual(RPCServer.connectionsInMemory, before, "connections kept in memory after their clients left")
        XCTAssertEqual(server.server.callsInFlight, 0)
        try await server.stop()
    }
}

/// Strings collected from concurrent callbacks.
final class NIOLockedValueBoxStrings: Sendable {
    private let box = NIOLockedValueBoxWrapper()
    func append(_ s: String) { box.append(s) }
    var values: [String] { box.values }
}

import NIOConcurrencyHelpers

final class NIOLockedValueBoxWrapper: Sendable {
    private let state = NIOLockedValueBox<[String]>([])
    func append(_ s: String) { state.withLockedValue { $0.append(s) } }
    var values: [String] { state.withLockedValue { $0 } }
}

