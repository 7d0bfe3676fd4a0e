import Foundation
import FuseboxTLS
import NIOCore
import NIOEmbedded

/// The `tls-server` target: fuseboxd's `TLSHandler` (server role, mutual TLS,
/// ALPN h2) in an `EmbeddedChannel`, with the development PKI that
/// `scripts/gen-certs` makes for the tests. Input: 1 byte of mode, 1 byte
/// seeding where the rest is split into reads, then records:
/// - mode % 3 == 0: the records open the connection (the client's first flight);
/// - mode % 3 == 1: a real client's ClientHello goes first and the server
///   answers; the records stand in for the client's second flight;
/// - mode % 3 == 2: a real client completes the handshake, then the records
///   arrive on the established connection.
/// Bit 0x80 of the mode signals the peer's EOF (input closed) at the end.
/// Bad records must end in a `TLSError` and a closed connection.
enum TLSServerFuzzing {
    static func run(_ input: [UInt8]) throws(FuzzFinding) {
        let contexts: TLSFuzzContexts
        do {
            contexts = try TLSFuzzContexts.shared.get()
        } catch {
            throw FuzzFinding(.tlsServer, "no TLS contexts to fuzz with: \(error)")
        }
        var reader = FuzzInputReader(input)
        let mode = reader.byte()
        let seed = reader.byte()
        let records = reader.rest

        let server = EmbeddedChannel()
        let client = EmbeddedChannel()
        defer {
            server.fuzzTeardown()
            client.fuzzTeardown()
        }
        let serverHandler = TLSHandler(context: contexts.server)
        do {
            try server.pipeline.syncOperations.addHandler(serverHandler)
            try server.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            switch mode % 3 {
            case 1:
                try client.pipeline.syncOperations.addHandler(TLSHandler(context: contexts.client, serverName: "localhost"))
                try client.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 7443)).wait()
                try carry(from: client, to: server)  // ClientHello
                while try server.readOutbound(as: ByteBuffer.self) != nil {}  // the answer, dropped
            case 2:
                let clientHandler = TLSHandler(context: contexts.client, serverName: "localhost")
                try client.pipeline.syncOperations.addHandler(clientHandler)
                try client.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 7443)).wait()
                while try carry(from: client, to: server) + carry(from: server, to: client) > 0 {}
                guard serverHandler.handshakeResult != nil, clientHandler.handshakeResult != nil else {
                    throw FuzzFinding(.tlsServer, "the handshake with the test certificates did not complete")
                }
            default:
                break
            }
        } catch let finding as FuzzFinding {
            throw finding
        } catch {
            throw FuzzFinding(.tlsServer, "setting up the connection failed: \(error)")
        }
        do {
            for chunk in fuzzChunks(records, seed: seed, maximumChunk: 512) {
                try server.writeInbound(ByteBuffer(bytes: chunk))
                while try server.readOutbound(as: ByteBuffer.self) != nil {}
                while try server.readInbound(as: ByteBuffer.self) != nil {}
            }
            if mode & 0x80 != 0 { server.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed) }
            server.embeddedEventLoop.run()
        } catch {
            // A TLSError: the handler reported it and closed the connection.
        }
    }

    /// Moves what `from` wrote into `to`; returns the bytes moved.
    @discardableResult
    private static func carry(from: EmbeddedChannel, to: EmbeddedChannel) throws -> Int {
        var moved = 0
        while let bytes = try from.readOutbound(as: ByteBuffer.self) {
            moved += bytes.readableBytes
            try to.writeInbound(bytes)
        }
        return moved
    }
}

/// A server and a client context on scripts/gen-certs' development PKI,
/// made once per process in a temporary directory (removed at exit).
struct TLSFuzzContexts: Sendable {
    let server: TLSContext
    let client: TLSContext

    static let shared: Result<TLSFuzzContexts, TLSFuzzSetupError> = Result { () throws(TLSFuzzSetupError) in
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-fuzz-certs-\(getpid())").path
        // Sources/FuseboxFuzzing/<this file> → the repository.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["bash", root.appendingPathComponent("scripts/gen-certs").path, "--out", directory, "--days", "30", "--force"]
        process.standardOutput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw TLSFuzzSetupError(message: "cannot run scripts/gen-certs: \(error)")
        }
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw TLSFuzzSetupError(message: "scripts/gen-certs exited with \(process.terminationStatus)")
        }
        TLSFuzzCertificateDirectory.remember(directory)
        do {
            let path = { (name: String) in "\(directory)/\(name)" }
            return TLSFuzzContexts(
                server: try TLSContext(
                    configuration: .server(
                        certificateChainPath: path("server.pem"), privateKeyPath: path("server.key"), clientCAPath: path("ca.pem"))),
                client: try TLSContext(
                    configuration: .client(
                        trustRootsPath: path("ca.pem"), certificateChainPath: path("admin.pem"), privateKeyPath: path("admin.key"))))
        } catch {
            throw TLSFuzzSetupError(message: "the test certificates do not load: \(error)")
        }
    }
}

/// The test certificates could not be made or loaded.
struct TLSFuzzSetupError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// Removes the certificate directory when the process exits.
private enum TLSFuzzCertificateDirectory {
    nonisolated(unsafe) private static var path: String?

    /// Called once, from `TLSFuzzContexts.shared`'s initializer.
    static func remember(_ directory: String) {
        path = directory
        atexit {
            if let path = TLSFuzzCertificateDirectory.path { try? FileManager.default.removeItem(atPath: path) }
        }
    }
}
