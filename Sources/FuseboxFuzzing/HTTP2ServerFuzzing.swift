import FuseboxRPC
import FuseboxWire
import NIOCore
import NIOEmbedded

/// The `http2-server` target: the pipeline `RPCServer` puts above TLS on every
/// connection (`RPCServer.configureHTTP2`, the server's own settings), in an
/// `EmbeddedChannel`, with the server's dispatch of each stream
/// (`CallDispatchHandler`): request headers parsed, and two methods served
/// on the event loop, `/fuzz.Echo/Unary` and `/fuzz.Echo/Watch` (one response
/// message, then the end), whose requests are `grpc.health.v1.HealthCheckRequest`.
/// Other calls are closed where the server would pass them to `serve()`.
/// Input: 1 byte seeding where the bytes are split into reads (0: one read),
/// then what the client sends after its preface. Protocol errors end the
/// connection (GOAWAY, close); nothing may crash.
enum HTTP2ServerFuzzing {
    /// The client connection preface (RFC 9113 §3.4).
    static let preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    /// Handlers that never suspend, so that each call ends on the embedded loop's thread.
    static let router: RPCRouter = {
        var router = RPCRouter()
        router.unary("fuzz.Echo", "Unary") { (request: Grpc_Health_V1_HealthCheckRequest, _) in request }
        router.serverStreaming("fuzz.Echo", "Watch") {
            (request: Grpc_Health_V1_HealthCheckRequest, writer: RPCStreamWriter<Grpc_Health_V1_HealthCheckRequest>, _) in
            writer.enqueue(RPCFrame(try request.encode()))
        }
        return router
    }()

    static func run(_ input: [UInt8]) throws(FuzzFinding) {
        var reader = FuzzInputReader(input)
        let seed = reader.byte()
        let channel = EmbeddedChannel()
        defer { channel.fuzzTeardown() }
        do {
            let configuration = RPCServerConfiguration()
            let calls = CallCounter()
            calls.open()
            let dispatch = CallDispatch(
                router: router, configuration: configuration, connection: ConnectionState(), remote: nil, calls: calls
            ) { stream in stream.channel.close(promise: nil) }
            try RPCServer.configureHTTP2(on: channel, configuration: configuration, dispatch: dispatch)
            try channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 7443)).wait()
            try channel.writeInbound(ByteBuffer(bytes: preface))
            for chunk in fuzzChunks(reader.rest, seed: seed, maximumChunk: 256) {
                try channel.writeInbound(ByteBuffer(bytes: chunk))
                while try channel.readOutbound(as: ByteBuffer.self) != nil {}
            }
            channel.embeddedEventLoop.run()
        } catch {
            // A protocol error: the handler answered it and closed the connection.
        }
    }
}
