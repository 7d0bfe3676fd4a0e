import FuseboxRPC
import FuseboxWire
import NIOCore
import NIOEmbedded

/// The `http2-server` target: the pipeline `RPCServer` puts above TLS on every
/// connection (`RPCServer.configureHTTP2`, the server's own settings), in an
/// `EmbeddedChannel`, with the server's dispatch of each stream
/// (`CallDispatchHandler`): request headers parsed, and a unary method served
/// on the event loop, `/fuzz.Echo/Unary`, whose request is a
/// `grpc.health.v1.HealthCheckRequest`. Other calls (server-streaming ones,
/// whose handlers start off the loop's thread, included) are closed where the
/// server would pass them on. Input: 1 byte seeding where the bytes are split
/// into reads (0: one read), then what the client sends after its preface.
/// Protocol errors end the connection (GOAWAY, close); nothing may crash.
enum HTTP2ServerFuzzing {
    /// The client connection preface (RFC 9113 §3.4).
    static let preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    /// A handler that never suspends, so that each call ends on the embedded loop's thread.
    static let router: RPCRouter = {
        var router = RPCRouter()
        router.unary("fuzz.Echo", "Unary") { (request: Grpc_Health_V1_HealthCheckRequest, _) in request }
        return router
    }()

    static func run(_ input: [UInt8]) throws(FuzzFinding) {
        var reader = FuzzInputReader(input)
        let seed = reader.byte()
        let channel = EmbeddedChannel()
        defer { channel.fuzzTeardown() }
        do {
            // Requests above 16 KiB would start their handlers off the loop's
            // thread; at this limit they are refused on it.
            var configuration = RPCServerConfiguration()
            configuration.maximumReceiveMessageBytes = 16 * 1024
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
