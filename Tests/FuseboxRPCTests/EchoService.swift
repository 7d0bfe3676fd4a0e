import FuseboxRPC
import FuseboxTLS
import FuseboxTesting
import FuseboxWire
import NIOCore
import NIOConcurrencyHelpers
import NIOPosix

/// A test service at `/fusebox.testing.Echo/*`, built on existing message
/// types so any gRPC client can call it with stubs generated from Protos/:
/// requests and responses are `fusebox.v1.FieldViolation` (`field` is a
/// command, `description` the payload) or `fusebox.v1.StaticResponse` for sizes.
final class EchoService: Sendable {
    static let name = "fusebox.testing.Echo"
    typealias Message = Fusebox_V1_FieldViolation

    /// Handlers that saw their task cancelled, and calls that finished.
    let cancelled = NIOLockedValueBox<Int>(0)
    let completed = NIOLockedValueBox<Int>(0)

    func register(on router: inout RPCRouter) {
        router.unary(Self.name, "Unary") { [self] (request: Message, context) in
            var reply = request
            reply.description = "echo: " + request.description
            // Metadata both ways: echo "x-test" back, binary too.
            if let value = context.metadata.first("x-test") { reply.field = "x-test=" + value }
            if let bytes = context.metadata.firstBinary("x-bin-test-bin") { reply.field += ";bin=\(bytes)" }
            completed.withLockedValue { $0 += 1 }
            return reply
        }
        router.unary(Self.name, "Peer") { (_: Message, context) in
            var reply = Message()
            reply.description = context.peer?.commonName ?? "none"
            reply.field = (context.peer?.uris ?? []).joined(separator: ",") + (context.deadline == nil ? "" : ";deadline")
            return reply
        }
        router.unary(Self.name, "Size") { (request: Fusebox_V1_StaticResponse, _) in
            var reply = Fusebox_V1_StaticResponse()
            reply.contentType = "size=\(request.body.count)"
            return reply
        }
        router.unary(Self.name, "Sleep") { [self] (request: Message, _) in
            do {
                try await Task.sleep(for: .milliseconds(Int(request.description) ?? 1_000))
            } catch {
                cancelled.withLockedValue { $0 += 1 }
                throw error
            }
            completed.withLockedValue { $0 += 1 }
            var reply = Message()
            reply.description = "slept"
            return reply
        }
        router.unary(Self.name, "Fail") { (request: Message, _) -> Message in
            var trailers = RPCMetadata()
            trailers.add("x-detail", "trailer value")
            throw RPCError(RPCStatusCode(rawValue: Int(request.field) ?? 2) ?? .unknown, request.description, metadata: trailers)
        }
        router.serverStreaming(Self.name, "Count") { (request: Message, writer: RPCStreamWriter<Message>, _) in
            var initial = RPCMetadata()
            initial.add("x-stream", "yes")
            writer.setInitialMetadata(initial)
            for i in 0..<(Int(request.description) ?? 3) {
                var reply = Message()
                reply.description = "\(i)"
                try await writer.send(reply)
            }
        }
        // Queues `description` messages of 1 KiB without waiting (as fan-out
        // does), then holds the stream open until the call is cancelled.
        router.serverStreaming(Self.name, "Flood") { [self] (request: Message, writer: RPCStreamWriter<Message>, _) in
            var reply = Message()
            reply.description = String(repeating: "x", count: 1_024)
            let frame = RPCFrame(try reply.encode())
            for _ in 0..<(Int(request.description) ?? 0) { writer.enqueue(frame) }
            do {
                try await Task.sleep(for: .seconds(30))
            } catch {
                cancelled.withLockedValue { $0 += 1 }
                throw error
            }
        }
        router.clientStreaming(Self.name, "Join") { (requests: RPCMessageStream<Message>, _) in
            var parts: [String] = []
            for try await request in requests { parts.append(request.description) }
            var reply = Message()
            reply.description = parts.joined(separator: ",")
            return reply
        }
        router.bidirectional(Self.name, "Chat") { (requests: RPCMessageStream<Message>, writer: RPCStreamWriter<Message>, _) in
            for try await request in requests {
                var reply = Message()
                reply.description = request.description.uppercased()
                try await writer.send(reply)
            }
        }
    }
}

/// A running test server with the Echo and Health services.
struct TestRPCServer {
    let server: RPCServer
    let echo: EchoService
    let health: HealthService
    let task: Task<Void, any Error>

    var port: Int { server.port }

    static func start(
        group: any EventLoopGroup, configure: (inout RPCServerConfiguration) -> Void = { _ in }, mtls: Bool = true,
        serveAfter delay: Duration? = nil
    ) async throws -> TestRPCServer {
        var router = RPCRouter()
        let echo = EchoService()
        echo.register(on: &router)
        let health = HealthService()
        health.register(on: &router)
        var configuration = RPCServerConfiguration()
        configure(&configuration)
        let tls = try TLSContextProvider(configuration: .server(
            certificateChainPath: TestCertificates.path("server.pem"), privateKeyPath: TestCertificates.path("server.key"),
            clientCAPath: TestCertificates.path("ca.pem"), requireClientCertificate: mtls))
        let server = RPCServer(configuration: configuration, router: router, tls: tls, group: group)
        try await server.start()
        let task = Task {
            if let delay { try await Task.sleep(for: delay) }
            try await server.serve()
        }
        return TestRPCServer(server: server, echo: echo, health: health, task: task)
    }

    func stop() async throws {
        await server.shutdown()
        try await task.value
    }
}

func makeClient(port: Int, group: any EventLoopGroup, identity: String? = "admin", configure: (inout RPCClientConfiguration) -> Void = { _ in }) throws -> RPCClient {
    var configuration = RPCClientConfiguration(
        host: "127.0.0.1", port: port,
        tls: .client(
            trustRootsPath: try TestCertificates.path("ca.pem"),
            certificateChainPath: try identity.map { try TestCertificates.path("\($0).pem") },
            privateKeyPath: try identity.map { try TestCertificates.path("\($0).key") }))
    configure(&configuration)
    return try RPCClient(configuration: configuration, group: group)
}

func message(_ description: String, field: String = "") -> Fusebox_V1_FieldViolation {
    var m = Fusebox_V1_FieldViolation()
    m.description = description
    m.field = field
    return m
}
