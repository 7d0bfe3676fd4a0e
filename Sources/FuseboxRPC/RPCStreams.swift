public import FuseboxWire
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP2
import NIOHPACK

/// The request messages of a call, as raw bytes, read on demand from the
/// HTTP/2 stream (so a slow handler slows the sender: flow control holds).
public final class RPCRequestReader {
    typealias Frames = NIOAsyncChannelInboundStream<HTTP2Frame.FramePayload>.AsyncIterator

    private var frames: Frames
    private var deframer: GRPCMessageDeframer
    private let inputEnded: NIOLockedValueBox<Bool>
    private var ended: Bool {
        get { inputEnded.withLockedValue { $0 } }
        set { inputEnded.withLockedValue { $0 = newValue } }
    }

    /// `inputEnded` tells the server, after the handler, whether the client had half-closed.
    init(frames: Frames, maximumMessageBytes: Int, inputEnded: NIOLockedValueBox<Bool>) {
        self.frames = frames
        self.deframer = GRPCMessageDeframer(maximumMessageBytes: maximumMessageBytes)
        self.inputEnded = inputEnded
    }

    /// The next message, or nil once the client has half-closed.
    ///
    /// - Throws: `RPCError` RESOURCE_EXHAUSTED for a message over the limit,
    ///   INTERNAL for a compressed message (no encoding is negotiated) or one
    ///   cut short by the end of the stream; CANCELLED when the stream is reset.
    public func next() async throws(RPCError) -> [UInt8]? {
        while true {
            do {
                if let message = try deframer.next() { return message }
            } catch {
                throw RPCError(error)
            }
            if ended {
                if deframer.bufferedBytes > 0 { throw RPCError.endedInsideMessage(leftOver: deframer.bufferedBytes) }
                return nil
            }
            let frame: HTTP2Frame.FramePayload?
            do {
                frame = try await frames.next()
            } catch {
                throw RPCError(.cancelled, "the client reset the stream")
            }
            switch frame {
            case .data(let data):
                if case .byteBuffer(let bytes) = data.data { deframer.append(bytes) }
                ended = data.endStream
            case .headers(let headers):
                ended = ended || headers.endStream  // trailers from a client carry nothing we use
            case .rstStream:
                throw RPCError(.cancelled, "the client reset the stream")
            case nil:
                ended = true
            default:
                continue
            }
        }
    }
}

/// Sends a call's response: headers (with initial metadata) before the first
/// message, then messages, then the status in trailers.
public final class RPCResponseSender: Sendable {
    /// The async channel's writer (calls served by `serve()`); nil when the
    /// sender writes to its stream directly (calls served by
    /// `CallDispatchHandler`, which writes the status itself).
    private let outbound: NIOAsyncChannelOutboundWriter<HTTP2Frame.FramePayload>?
    private let channel: any Channel
    private var allocator: ByteBufferAllocator { channel.allocator }
    private struct State {
        var headersSent = false
        var initial = RPCMetadata()
        /// A unary call's response, held so that headers, message and trailers
        /// leave in one write: one flush, one TLS record, one syscall.
        var response: [UInt8]?
    }
    private let state = NIOLockedValueBox(State())

    /// `channel` is the call's HTTP/2 stream, which `outbound` writes to.
    init(outbound: NIOAsyncChannelOutboundWriter<HTTP2Frame.FramePayload>?, channel: any Channel) {
        self.outbound = outbound
        self.channel = channel
    }

    /// Queues a framed message on the stream's event loop without waiting:
    /// the headers first if they have not gone out. A stream that cannot take
    /// more (its reader is far behind) is reset instead, so a slow reader never
    /// makes the server buffer without bound; its client reconnects and resyncs.
    /// Callers keep their sends in order (one at a time per stream).
    func enqueue(framed message: ByteBuffer) {
        let channel = self.channel
        channel.eventLoop.execute { [self] in
            guard channel.isActive else { return }
            // Taken on the loop, where the status is written too: a status
            // never counts on headers that have not gone out yet.
            if let headers = state.withLockedValue({ takeHeaders(&$0) }) {
                channel.write(headers, promise: nil)
            } else if !channel.isWritable {
                channel.close(promise: nil)
                return
            }
            channel.writeAndFlush(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(message))), promise: nil)
        }
    }

    /// Queues a framed message like `enqueue`, but refuses it (returns false)
    /// instead of resetting the stream when the stream cannot take more: the
    /// caller decides what a watcher that fell behind gets (fuseboxd sends it
    /// a fresh snapshot once it can take one).
    func offer(framed message: ByteBuffer, force: Bool = false) -> Bool {
        let channel = self.channel
        guard channel.isActive else { return true }  // gone: nothing to fall behind
        guard force || channel.isWritable else { return false }
        channel.eventLoop.execute { [self] in
            guard channel.isActive else { return }
            if let headers = state.withLockedValue({ takeHeaders(&$0) }) { channel.write(headers, promise: nil) }
            channel.writeAndFlush(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(message))), promise: nil)
        }
        return true
    }

    /// Whether `offer` would take a message now.
    var canAccept: Bool { channel.isWritable || !channel.isActive }

    /// Metadata to send with the response headers; effective until the first message.
    public func setInitialMetadata(_ metadata: RPCMetadata) {
        state.withLockedValue { $0.initial = metadata }
    }

    /// Sends one message.
    public func send(_ message: [UInt8]) async throws {
        let last = dataFrame(message)
        guard let outbound else {
            // Direct: returns once the stream has taken the message, which
            // waits while its client's flow-control window is closed. The
            // headers are taken on the loop, where the status is written.
            let channel = self.channel
            try await channel.eventLoop.flatSubmit { [self] in
                for frame in takeLeadingFrames() { channel.write(frame, promise: nil) }
                return channel.writeAndFlush(last)
            }.get()
            return
        }
        try await outbound.write(contentsOf: takeLeadingFrames() + [last])
    }

    /// The headers and a held response, if they have not gone out yet.
    private func takeLeadingFrames() -> [HTTP2Frame.FramePayload] {
        let (headers, held) = state.withLockedValue { s in
            defer { s.response = nil }
            return (takeHeaders(&s), s.response)
        }
        var frames: [HTTP2Frame.FramePayload] = []
        if let headers { frames.append(headers) }
        if let held { frames.append(dataFrame(held)) }
        return frames
    }

    /// The one response message of a unary call: sent by `finish`, in the same
    /// write as the headers and the trailers, if the call ends OK.
    public func respond(_ message: [UInt8]) {
        state.withLockedValue { $0.response = message }
    }

    /// The response headers, if they have not gone out yet (marks them sent).
    private func takeHeaders(_ s: inout State) -> HTTP2Frame.FramePayload? {
        guard !s.headersSent else { return nil }
        s.headersSent = true
        return ResponseFrames.headers(s.initial)
    }

    private func dataFrame(_ message: [UInt8]) -> HTTP2Frame.FramePayload {
        ResponseFrames.message(message, allocator: allocator)
    }

    /// Ends the call with `status` (nil: OK); a trailers-only response if
    /// nothing was sent yet. If the client is still sending, the stream is
    /// then reset with NO_ERROR, as the gRPC protocol asks.
    func finish(_ status: RPCError?, trailers: RPCMetadata, clientStillSending: Bool = false) async throws {
        try await outbound?.write(contentsOf: finishingFrames(status, trailers: trailers, clientStillSending: clientStillSending))
    }

    /// The frames that end the call (see `finish`), to be written in order after any sent before.
    func finishingFrames(_ status: RPCError?, trailers: RPCMetadata, clientStillSending: Bool) -> [HTTP2Frame.FramePayload] {
        var frames: [HTTP2Frame.FramePayload] = []
        // A held response goes out only with an OK status.
        let trailersOnly = state.withLockedValue { s in
            defer { s.headersSent = true; s.response = nil }
            if status == nil, let response = s.response {
                if let headers = takeHeaders(&s) { frames.append(headers) }
                frames.append(dataFrame(response))
            }
            return !s.headersSent
        }
        frames.append(ResponseFrames.status(status, trailers: trailers, trailersOnly: trailersOnly))
        if clientStillSending { frames.append(.rstStream(.noError)) }
        return frames
    }
}

/// The frames of a response (grpc/grpc doc/PROTOCOL-HTTP2.md).
enum ResponseFrames {
    /// The response headers, with `initial` metadata.
    static func headers(_ initial: RPCMetadata) -> HTTP2Frame.FramePayload {
        var headers = HPACKHeaders([(":status", "200"), ("content-type", "application/grpc")])
        for (name, value) in initial.headerFields { headers.add(name: name, value: value) }
        return .headers(.init(headers: headers))
    }

    /// One response message, framed.
    static func message(_ message: [UInt8], allocator: ByteBufferAllocator) -> HTTP2Frame.FramePayload {
        .data(.init(data: .byteBuffer(GRPCMessageDeframer.frame(message, allocator: allocator))))
    }

    /// The trailers ending the stream with `status` (nil: OK) and, for OK,
    /// `trailers`; the whole response (trailers-only) if nothing was sent.
    static func status(_ status: RPCError?, trailers: RPCMetadata, trailersOnly: Bool) -> HTTP2Frame.FramePayload {
        var headers = HPACKHeaders()
        if trailersOnly {
            headers.add(name: ":status", value: "200")
            headers.add(name: "content-type", value: "application/grpc")
        }
        headers.add(name: "grpc-status", value: "\(status?.code.rawValue ?? 0)")
        if let message = status?.message, !message.isEmpty {
            headers.add(name: "grpc-message", value: GRPCWire.percentEncode(message))
        }
        for (name, value) in (status?.metadata ?? trailers).headerFields { headers.add(name: name, value: value) }
        return .headers(.init(headers: headers, endStream: true))
    }
}

/// Request messages of a streaming call, decoded.
public struct RPCMessageStream<Message: WireMessage>: AsyncSequence {
    let reader: RPCRequestReader
    let limits: WireLimits

    public struct AsyncIterator: AsyncIteratorProtocol {
        let reader: RPCRequestReader
        let limits: WireLimits

        public mutating func next() async throws -> Message? {
            guard let bytes = try await reader.next() else { return nil }
            return try decodeRequest(Message.self, bytes, limits: limits)
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(reader: reader, limits: limits)
    }
}

/// Sends response messages of a streaming call.
public struct RPCStreamWriter<Message: WireMessage>: Sendable {
    let sender: RPCResponseSender

    /// Sends one message.
    public func send(_ message: Message) async throws {
        try await sender.send(message.encode())
    }

    /// Metadata to send with the response headers, before the first message.
    public func setInitialMetadata(_ metadata: RPCMetadata) {
        sender.setInitialMetadata(metadata)
    }

    /// Queues a message framed by `RPCFrame.make` without waiting (from any
    /// thread; callers keep their sends in order). For fan-out: one framed
    /// buffer serves every stream, and no task wakes per stream. Not to be mixed
    /// with `send` on the same stream.
    public func enqueue(_ framed: RPCFrame) {
        sender.enqueue(framed: framed.buffer)
    }

    /// Queues a message framed by `RPCFrame` without waiting, unless the
    /// stream cannot take more now (its reader is behind): then returns false
    /// and the message is not sent. The stream stays open. Callers keep their
    /// sends in order.
    public func offer(_ framed: RPCFrame) -> Bool {
        sender.offer(framed: framed.buffer)
    }

    /// Whether `offer` would take a message now.
    public var canAccept: Bool { sender.canAccept }

    /// Queues a message without waiting, whether or not the stream's buffer
    /// is full: for a bounded run of messages that belong together (a replay).
    public func enqueueKeepingOpen(_ framed: RPCFrame) {
        _ = sender.offer(framed: framed.buffer, force: true)
    }
}

/// A response message framed once (gRPC's 5-byte prefix), to be written to
/// many streams.
public struct RPCFrame: Sendable {
    let buffer: ByteBuffer

    /// Frames `message`.
    public init(_ message: [UInt8]) {
        buffer = GRPCMessageDeframer.frame(message, allocator: ByteBufferAllocator())
    }
}

/// A request that fails to decode is the client's fault: INVALID_ARGUMENT naming what was wrong.
func decodeRequest<M: WireMessage>(_ type: M.Type, _ bytes: [UInt8], limits: WireLimits) throws(RPCError) -> M {
    do {
        return try M(decoding: bytes, limits: limits)
    } catch {
        throw RPCError(.invalidArgument, "malformed request: \(error)")
    }
}

extension RPCError {
    /// The status of a request stream that cannot be deframed.
    init(_ failure: GRPCMessageDeframer.Failure) {
        switch failure {
        case .tooLarge(let length, let limit):
            self.init(.resourceExhausted, "received message of \(length) bytes exceeds the limit of \(limit) bytes")
        case .compressedWithoutEncoding:
            self.init(.internal, "compressed message received, but no grpc-encoding was negotiated")
        case .invalidFlag(let flag):
            self.init(.internal, "invalid message flag \(flag)")
        }
    }

    /// The client half-closed with part of a message sent.
    static func endedInsideMessage(leftOver: Int) -> RPCError {
        RPCError(.internal, "the stream ended inside a message (\(leftOver) bytes left over)")
    }

    /// A unary or server-streaming call whose client sent no request message.
    static let noRequestMessage = RPCError(.unimplemented, "expected one request message, got none")
    /// A unary or server-streaming call whose client sent more than one request message.
    static let extraRequestMessage = RPCError(.unimplemented, "expected one request message, got more")

    /// A watch refused: its connection has `limit` open.
    static func watchLimit(_ limit: Int) -> RPCError {
        RPCError(
            .resourceExhausted,
            "this connection has \(limit) watches open, the server's limit (limits.maxWatchesPerConnection); "
                + "end one, or open another connection")
    }

    /// What a handler's thrown error tells the client.
    static func fromHandler(_ error: any Error) -> RPCError {
        switch error {
        case let error as RPCError: error
        case is CancellationError: RPCError(.cancelled, "the call was cancelled")
        default: RPCError(.unknown, "\(error)")
        }
    }
}
