import COpenSSL
import FuseboxTLS
import FuseboxTesting
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest

/// What one side of a test connection saw.
final class ConnectionLog: Sendable {
    private let state = NIOLockedValueBox<(handshake: TLSHandshakeCompleted?, errors: [any Error], received: Int, closed: Bool)>(
        (nil, [], 0, false))
    /// SHA-256 of every byte received.
    let digest = SHA256Stream()

    var handshake: TLSHandshakeCompleted? { state.withLockedValue { $0.handshake } }
    var errors: [any Error] { state.withLockedValue { $0.errors } }
    var tlsErrors: [TLSError] { errors.compactMap { $0 as? TLSError } }
    var received: Int { state.withLockedValue { $0.received } }
    var closed: Bool { state.withLockedValue { $0.closed } }

    func record(handshake: TLSHandshakeCompleted) { state.withLockedValue { $0.handshake = handshake } }
    func record(error: any Error) { state.withLockedValue { $0.errors.append(error) } }
    func recordClosed() { state.withLockedValue { $0.closed = true } }
    func record(bytes: ByteBuffer) {
        state.withLockedValue { s in
            s.received += bytes.readableBytes
            bytes.withUnsafeReadableBytes { digest.update($0) }
        }
    }
}

/// A running SHA-256 (OpenSSL's), to compare large streams without keeping them.
final class SHA256Stream: @unchecked Sendable {
    private let lock = NIOLock()
    private let context: OpaquePointer?

    init() {
        context = EVP_MD_CTX_new()
        EVP_DigestInit_ex(context, EVP_sha256(), nil)
    }

    deinit { EVP_MD_CTX_free(context) }

    func update(_ bytes: UnsafeRawBufferPointer) {
        lock.withLock { _ = EVP_DigestUpdate(context, bytes.baseAddress, bytes.count) }
    }

    /// The digest so far (the stream can go on).
    var hex: String {
        lock.withLock {
            let copy = EVP_MD_CTX_new()
            defer { EVP_MD_CTX_free(copy) }
            _ = EVP_MD_CTX_copy_ex(copy, context)
            var out = [UInt8](repeating: 0, count: 32)
            var length: UInt32 = 0
            _ = EVP_DigestFinal_ex(copy, &out, &length)
            return out.map { String(format: "%02x", $0) }.joined()
        }
    }
}

/// Records handshake, errors, received bytes and closure; echoes if asked.
final class RecordingHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let log: ConnectionLog
    let echo: Bool

    init(log: ConnectionLog, echo: Bool) {
        self.log = log
        self.echo = echo
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let handshake = event as? TLSHandshakeCompleted { log.record(handshake: handshake) }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        log.record(bytes: bytes)
        if echo { context.writeAndFlush(data, promise: nil) } else { context.fireChannelRead(data) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        log.record(error: error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        log.recordClosed()
        context.fireChannelInactive()
    }
}

/// A TLS echo server on 127.0.0.1, port 0.
final class TestTLSServer: Sendable {
    let channel: any Channel
    let provider: TLSContextProvider
    private let logs = NIOLockedValueBox<[ConnectionLog]>([])

    var port: Int { channel.localAddress?.port ?? 0 }
    var connectionLogs: [ConnectionLog] { logs.withLockedValue { $0 } }
    var allTLSErrors: [TLSError] { connectionLogs.flatMap(\.tlsErrors) }

    init(group: any EventLoopGroup, configuration: TLSConfiguration) async throws {
        let provider = try TLSContextProvider(configuration: configuration)
        let logs = self.logs
        self.provider = provider
        self.channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 512)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let log = ConnectionLog()
                    logs.withLockedValue { $0.append(log) }
                    try channel.pipeline.syncOperations.addHandler(TLSHandler(context: provider.current))
                    try channel.pipeline.syncOperations.addHandler(RecordingHandler(log: log, echo: true))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    func stop() async throws {
        try await channel.close()
    }
}

/// Connects a TLS client to 127.0.0.1:`port`.
func connectClient(
    group: any EventLoopGroup, port: Int, configuration: TLSConfiguration, serverName: String? = "127.0.0.1",
    echo: Bool = false
) async throws -> (channel: any Channel, log: ConnectionLog) {
    let context = try TLSContext(configuration: configuration)
    let log = ConnectionLog()
    let channel = try await ClientBootstrap(group: group)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(TLSHandler(context: context, serverName: serverName))
                try channel.pipeline.syncOperations.addHandler(RecordingHandler(log: log, echo: echo))
            }
        }
        .connect(host: "127.0.0.1", port: port).get()
    return (channel, log)
}


/// Certificate paths.
enum Certs {
    static func path(_ name: String) throws -> String { try TestCertificates.path(name) }

    static func server(mtls: Bool = true, cert: String = "server", version: TLSConfiguration.ProtocolVersion? = nil) throws -> TLSConfiguration {
        var c = TLSConfiguration.server(
            certificateChainPath: try path("\(cert).pem"), privateKeyPath: try path("\(cert).key"),
            clientCAPath: try path("ca.pem"), requireClientCertificate: mtls)
        if let version {
            c.minimumVersion = version
            c.maximumVersion = version
        }
        return c
    }

    static func client(identity: String? = "admin", ca: String = "ca", version: TLSConfiguration.ProtocolVersion? = nil) throws -> TLSConfiguration {
        var c = TLSConfiguration.client(
            trustRootsPath: try path("\(ca).pem"),
            certificateChainPath: try identity.map { try path("\($0).pem") },
            privateKeyPath: try identity.map { try path("\($0).key") })
        if let version {
            c.minimumVersion = version
            c.maximumVersion = version
        }
        return c
    }
}
