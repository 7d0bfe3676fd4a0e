import NIOConcurrencyHelpers
import NIOCore
import NIOHPACK
import NIOHTTP2

/// One call's stream, seen from the client.
public final class RPCClientCall: @unchecked Sendable {
    typealias Frames = NIOAsyncChannelInboundStream<HTTP2Frame.FramePayload>.AsyncIterator

    private var frames: Frames
    private let outbound: NIOAsyncChannelOutboundWriter<HTTP2Frame.FramePayload>
    private let allocator: ByteBufferAllocator
    private var deframer: GRPCMessageDeframer
    private var sawHeaders = false
    private var finished = false
    private let progress: RPCCallProgress?
    private let connection: ConnectionFailure?
    /// Metadata of the response headers.
    public private(set) var initialMetadata = RPCMetadata()
    /// Metadata of the trailers, once the call ended.
    public private(set) var trailingMetadata = RPCMetadata()

    init(
        frames: Frames, outbound: NIOAsyncChannelOutboundWriter<HTTP2Frame.FramePayload>, allocator: ByteBufferAllocator, maximumMessageBytes: Int,
        progress: RPCCallProgress? = nil, connection: ConnectionFailure? = nil
    ) {
        self.progress = progress
        self.connection = connection
        self.frames = frames
        self.outbound = outbound
        self.allocator = allocator
        self.deframer = GRPCMessageDeframer(maximumMessageBytes: maximumMessageBytes)
    }

    func start(path: String, scheme: String, authority: String, deadline: ContinuousClock.Instant?, metadata: RPCMetadata) async throws {
        var headers = HPACKHeaders([
            (":method", "POST"), (":scheme", scheme), (":path", path), (":authority", authority),
            ("content-type", "application/grpc+proto"), ("te", "trailers"), ("user-agent", "fusebox-swift/0.1"),
        ])
        if let deadline {
            let remaining = deadline - ContinuousClock.now
            let nanos = remaining.components.seconds * 1_000_000_000 + remaining.components.attoseconds / 1_000_000_000
            headers.add(name: "grpc-timeout", value: GRPCWire.formatTimeout(nanoseconds: nanos))
        }
        for (name, value) in metadata.headerFields { headers.add(name: name, value: value) }
        try await outbound.write(.headers(.init(headers: headers)))
    }

    /// True once the server sent GOAWAY on this call's connection: it is
    /// shutting down or shedding the connection. The call may still finish;
    /// a long-lived call that can end at any time (a stream of reports)
    /// should end soon, so that its successor goes to a new connection or,
    /// with `RPCFailoverClient`, to the next endpoint.
    public var serverGoingAway: Bool { connection?.goAway != nil }

    /// Sends one request message; `end` half-closes after it.
    public func send(_ message: [UInt8], end: Bool = false) async throws {
        let data = GRPCMessageDeframer.frame(message, allocator: allocator)
        try await outbound.write(.data(.init(data: .byteBuffer(data), endStream: end)))
    }

    /// Half-closes without a message.
    public func finishSending() async throws {
        try await outbound.write(.data(.init(data: .byteBuffer(allocator.buffer(capacity: 0)), endStream: true)))
    }

    /// The next response message; nil once the call ended with OK.
    ///
    /// - Throws: `RPCError` with the server's status when it is not OK.
    public func next() async throws(RPCError) -> [UInt8]? {
        while true {
            do {
                if let message = try deframer.next() { return message }
            } catch {
                throw RPCError(.resourceExhausted, "response message rejected: \(error)")
            }
            if finished { return nil }
            let frame: HTTP2Frame.FramePayload?
            do {
                frame = try await frames.next()
            } catch {
                // A GOAWAY whose last stream id is below this stream's: the
                // server says it never processed the stream (RFC 9113 §6.8).
                if let closed = error as? NIOHTTP2Errors.StreamClosed, closed.errorCode == .refusedStream { progress?.refused() }
                // The stream was opened after a GOAWAY: its HEADERS never left.
                if error is NIOHTTP2Errors.CreatedStreamAfterGoaway { progress?.refused() }
                throw RPCError(.unavailable, "the connection failed during the call: \(error)")
            }
            switch frame {
            case .headers(let h):
                if !sawHeaders {
                    sawHeaders = true
                    if let status = h.headers.first(name: ":status"), status != "200" {
                        throw RPCError(Self.code(forHTTP: status), "the server answered HTTP \(status)")
                    }
                    if h.headers.first(name: "grpc-status") == nil {
                        initialMetadata = (try? RPCMetadata(headers: h.headers.map { ($0.name, $0.value) })) ?? RPCMetadata()
                        continue
                    }
                    // Trailers-only UNAVAILABLE: the server turned the call away before any response.
                    if h.headers.first(name: "grpc-status") == String(RPCStatusCode.unavailable.rawValue) { progress?.refused() }
                }
                try finish(with: h.headers)
                return nil
            case .data(let d):
                if case .byteBuffer(let bytes) = d.data { deframer.append(bytes) }
                if d.endStream { throw RPCError(.internal, "the server ended the stream without a status") }
            case .rstStream(let code):
                // REFUSED_STREAM: not processed, safe to retry (RFC 9113 §8.7).
                if code == .refusedStream { progress?.refused() }
                throw RPCError(code == .refusedStream ? .unavailable : .cancelled, "the server reset the stream (\(code))")
            case nil:
                throw RPCError(.unavailable, "the stream closed without a status")
            default:
                continue
            }
        }
    }

    private func finish(with trailers: HPACKHeaders) throws(RPCError) {
        finished = true
        trailingMetadata = (try? RPCMetadata(headers: trailers.map { ($0.name, $0.value) })) ?? RPCMetadata()
        let code = trailers.first(name: "grpc-status").flatMap(Int.init).flatMap(RPCStatusCode.init(rawValue:)) ?? .unknown
        guard code == .ok else {
            let message = trailers.first(name: "grpc-message").map(GRPCWire.percentDecode) ?? ""
            throw RPCError(code, message, metadata: trailingMetadata)
        }
    }

    /// HTTP status to gRPC code (PROTOCOL-HTTP2.md, "HTTP to gRPC Status Code Mapping").
    static func code(forHTTP status: String) -> RPCStatusCode {
        switch status {
        case "400": return .internal
        case "401": return .unauthenticated
        case "403": return .permissionDenied
        case "404": return .unimplemented
        case "429", "502", "503", "504": return .unavailable
        default: return .unknown
        }
    }
}
