import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A deliberately flaky HTTP upstream for the demo and the multi-process
/// tests. `GET /call` answers 200, or 503 while failing; `POST /fail` and
/// `POST /recover` switch; `POST /slow?ms=N` makes every answer take N ms
/// (`/slow?ms=0` ends it); `GET /stats` says how many calls arrived:
/// `calls=N failing=true|false`.
final class FlakyUpstream: Sendable {
    private struct Stats {
        var calls = 0
        var failing = false
        var latencyMs: Int64 = 0
    }

    private let stats: NIOLockedValueBox<Stats>

    init(failing: Bool, latencyMs: Int64) {
        stats = NIOLockedValueBox(Stats(calls: 0, failing: failing, latencyMs: latencyMs))
    }

    func run(host: String, port: Int) async throws {
        try await TinyHTTPServer.run(host: host, port: port, announce: { writeLine("upstream listening on \(host):\($0)") }) { head in
            let (status, body) = await self.answer(head)
            return (status, "text/plain", body)
        }
    }

    private func answer(_ head: HTTPRequestHead) async -> (HTTPResponseStatus, String) {
        switch (head.method, head.uri) {
        case (.GET, "/call"):
            let (failing, latencyMs) = stats.withLockedValue { s in
                s.calls += 1
                return (s.failing, s.latencyMs)
            }
            if latencyMs > 0 { try? await Task.sleep(for: .milliseconds(latencyMs)) }
            return failing ? (.serviceUnavailable, "upstream failing\n") : (.ok, "ok\n")
        case (.POST, "/fail"):
            stats.withLockedValue { $0.failing = true }
            return (.ok, "failing\n")
        case (.POST, "/recover"):
            stats.withLockedValue { $0.failing = false }
            return (.ok, "recovered\n")
        case (.POST, let uri) where uri.hasPrefix("/slow?ms="):
            guard let ms = Int64(uri.dropFirst("/slow?ms=".count)), ms >= 0 else { return (.badRequest, "POST /slow?ms=N, N ≥ 0\n") }
            stats.withLockedValue { $0.latencyMs = ms }
            return (.ok, "latency \(ms) ms\n")
        case (.GET, "/stats"):
            let s = stats.withLockedValue { $0 }
            return (.ok, "calls=\(s.calls) failing=\(s.failing)\n")
        default:
            return (.notFound, "GET /call, POST /fail, POST /recover, POST /slow?ms=N, GET /stats\n")
        }
    }
}

/// A small HTTP/1.1 server for the demo: each request is answered by
/// `answer` (status, content type, body). Used by the upstream and by the
/// service's `/health` endpoint.
enum TinyHTTPServer {
    typealias Answer = @Sendable (HTTPRequestHead) async -> (HTTPResponseStatus, String, String)

    /// Serves until cancelled; `announce` gets the bound port (useful with port 0).
    static func run(host: String, port: Int, announce: @Sendable (Int) -> Void, _ answer: @escaping Answer) async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                }
            }
        announce(server.channel.localAddress?.port ?? port)
        try await withThrowingDiscardingTaskGroup { group in
            try await server.executeThenClose { connections in
                for try await connection in connections {
                    group.addTask { try? await serve(connection, answer) }
                }
            }
        }
    }

    private static func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, _ answer: Answer) async throws {
        try await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            for try await part in inbound {
                switch part {
                case .head(let h): head = h
                case .body: break
                case .end:
                    guard let h = head else { continue }
                    let (status, contentType, body) = await answer(h)
                    var headers = HTTPHeaders()
                    headers.add(name: "content-length", value: "\(body.utf8.count)")
                    headers.add(name: "content-type", value: contentType)
                    try await outbound.write(.head(HTTPResponseHead(version: h.version, status: status, headers: headers)))
                    try await outbound.write(.body(.byteBuffer(ByteBuffer(string: body))))
                    try await outbound.write(.end(nil))
                    head = nil
                }
            }
        }
    }
}

/// A one-request HTTP/1.1 client over a fresh connection: enough for the demo.
enum HTTPGet {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func status(host: String, port: Int, path: String) async throws -> Int {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(2))
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            var headers = HTTPHeaders()
            headers.add(name: "host", value: "\(host):\(port)")
            headers.add(name: "connection", value: "close")
            try await outbound.write(.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)))
            try await outbound.write(.end(nil))
            var status: Int?
            for try await part in inbound {
                if case .head(let h) = part { status = Int(h.status.code) }
                if case .end = part { break }
            }
            guard let status else { throw Failure(description: "upstream closed without answering") }
            return status
        }
    }
}

/// Writes a line to stdout at once (unbuffered: tests read it through a pipe).
func writeLine(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
