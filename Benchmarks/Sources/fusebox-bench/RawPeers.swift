import Foundation
import FuseboxTLS
import NIOCore
import NIOPosix
import Synchronization

/// A plain TCP connection that hands every inbound chunk, as text, to a
/// callback on the event loop: enough to drive Redis (RESP) and etcd's JSON
/// gateway without client libraries.
final class RawConnection: Sendable {
    let channel: any Channel

    private final class Handler: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let onText: @Sendable (String) -> Void
        init(_ onText: @escaping @Sendable (String) -> Void) { self.onText = onText }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            if let s = buffer.readString(length: buffer.readableBytes) { onText(s) }
        }
    }

    /// `tls`: speak TLS (Fusebox's OpenSSL handler, as the watchers use) before the text.
    init(port: Int, group: any EventLoopGroup, tls: TLSContext? = nil, onText: @escaping @Sendable (String) -> Void) async throws {
        channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(30))
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    if let tls { try ch.pipeline.syncOperations.addHandler(TLSHandler(context: tls, serverName: "127.0.0.1")) }
                    try ch.pipeline.syncOperations.addHandler(Handler(onText))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
    }

    func send(_ text: String) async throws {
        try await channel.writeAndFlush(ByteBuffer(string: text)).get()
    }

    func close() async { try? await channel.close().get() }
}

/// Extracts every "trip-NNNNNN" marker from text (split-safe through `carry`).
struct MarkerScanner: Sendable {
    var carry = ""
    mutating func scan(_ text: String) -> [Int] {
        let all = carry + text
        var found: [Int] = []
        var rest = Substring(all)
        while let r = rest.range(of: "trip-") {
            let digits = rest[r.upperBound...].prefix { $0.isNumber }
            if digits.count < 6 { rest = rest[r.lowerBound...]; break }
            if let n = Int(digits) { found.append(n) }
            rest = rest[digits.endIndex...]
        }
        carry = rest.contains("trip-") ? String(rest.suffix(16)) : String(rest.suffix(5))
        return found
    }
}

func marker(_ n: Int) -> String { "trip-" + String(format: "%06d", n) }

/// Records, per trip number, when each of `count` watchers saw it.
final class SeenLog: Sendable {
    private let seen: Mutex<[Int: [Int: ContinuousClock.Instant]]> = Mutex([:])
    func record(trip: Int, watcher: Int) {
        let now = ContinuousClock.now
        seen.withLock { s in if s[trip]?[watcher] == nil { s[trip, default: [:]][watcher] = now } }
    }
    func count(_ trip: Int) -> Int { seen.withLock { $0[trip]?.count ?? 0 } }
    func last(_ trip: Int) -> ContinuousClock.Instant? { seen.withLock { $0[trip]?.values.max() } }
    func first(_ trip: Int) -> ContinuousClock.Instant? { seen.withLock { $0[trip]?.values.min() } }
}

/// Waits (bounded) until `condition` holds.
func waitUntil(_ timeout: Duration, _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .microseconds(200))
    }
    return condition()
}
