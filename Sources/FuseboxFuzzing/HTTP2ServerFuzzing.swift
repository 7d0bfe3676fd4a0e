import FuseboxRPC
import NIOCore
import NIOEmbedded

/// The `http2-server` target: the pipeline `RPCServer` puts above TLS on every
/// connection (`RPCServer.configureHTTP2`, the server's own settings), in an
/// `EmbeddedChannel`. Input: 1 byte seeding where the bytes are split into
/// reads (0: one read), then what the client sends after its preface. Protocol
/// errors end the connection (GOAWAY, close); nothing may crash.
enum HTTP2ServerFuzzing {
    /// The client connection preface (RFC 9113 §3.4).
    static let preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    static func run(_ input: [UInt8]) throws(FuzzFinding) {
        var reader = FuzzInputReader(input)
        let seed = reader.byte()
        let channel = EmbeddedChannel()
        defer { channel.fuzzTeardown() }
        do {
            // Calls would be served from `onStream`; the pipeline alone is fuzzed.
            try RPCServer.configureHTTP2(on: channel, configuration: RPCServerConfiguration(), state: ConnectionState()) { _ in }
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
