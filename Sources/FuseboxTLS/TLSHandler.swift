public import NIOCore

/// A NIO channel handler that runs TLS on OpenSSL for a server or a client.
///
/// Writes are buffered and encrypted on flush, in chunks, only while the
/// channel is writable (the rest waits for writability), and OpenSSL's memory
/// BIOs are drained after every call, so nothing grows without bound.
/// Decrypted reads are coalesced and delivered once per read burst. On close
/// it sends close_notify; a peer that vanishes without one is reported as
/// `TLSError` `.uncleanShutdown`. Every failure is fired as a `TLSError` and
/// closes only this connection. A completed handshake fires
/// `TLSHandshakeCompleted` with the peer's identity.
public final class TLSHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private struct PendingWrite {
        var buffer: ByteBuffer
        var promise: EventLoopPromise<Void>?
    }

    /// Plaintext delivered early when a read burst exceeds this.
    static let maximumCoalescedBytes = 256 * 1024
    /// Plaintext encrypted per `SSL_write` before checking writability again.
    static let encryptChunkBytes = 64 * 1024

    private let tlsContext: TLSContext
    private let serverName: String?
    private var machine: StateMachine
    private var connection: TLSConnection?
    private var pending = CircularBuffer<PendingWrite>()
    private var flushedCount = 0
    private var plaintext: ByteBuffer?
    private var timeout: Scheduled<Void>?

    /// The handshake's result once it completed.
    public private(set) var handshakeResult: TLSHandshakeCompleted?

    /// Connections alive in this process; each owns one SSL and two BIOs.
    public static var liveConnections: Int { TLSConnection.liveCount }

    /// A handler using `context`. Clients pass the host or IP they connect
    /// to as `serverName`: it is sent as SNI and the certificate must name it.
    public init(context: TLSContext, serverName: String? = nil) {
        self.tlsContext = context
        self.serverName = serverName
        self.machine = StateMachine(
            role: context.configuration.role,
            handshakeTimeoutMilliseconds: context.configuration.handshakeTimeoutMilliseconds)
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        do {
            connection = try TLSConnection(context: tlsContext, serverName: serverName)
        } catch {
            context.fireErrorCaught(error)
            context.close(promise: nil)
            return
        }
        if context.channel.isActive { start(context: context) }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        timeout?.cancel()
        failPendingWrites(ChannelError.ioOnClosedChannel)
        connection = nil
    }

    public func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        timeout?.cancel()
        failPendingWrites(ChannelError.ioOnClosedChannel)
        if let error = machine.channelInactive() {
            context.fireErrorCaught(error)
        }
        connection = nil
        // Whatever closed the connection (the peer, an error, a handler
        // downstream in the middle of a read), the read burst ends before the
        // connection does: NIOHTTP2 lets go of the streams that read only at
        // the end of a burst, and a stream it kept would keep the connection.
        context.fireChannelReadComplete()
        context.fireChannelInactive()
    }

    private func start(context: ChannelHandlerContext) {
        guard case .startHandshake(let ms) = machine.channelActive() else { return }
        timeout = context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(ms)) { [self] in
            if let error = machine.handshakeTimedOut() {
                fail(context: context, error)
            }
        }
        if machine.role == .client { driveHandshake(context: context) }
    }

    // MARK: Inbound

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if case .reject(let error) = machine.firstBytes(buffer.readableBytesView.first) {
            fail(context: context, error)
            return
        }
        guard let connection else { return }
        connection.feed(buffer)
        switch machine.state {
        case .handshaking: driveHandshake(context: context)
        case .active, .closing: readPlaintext(context: context)
        case .idle, .closed: break
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        deliverPlaintext(context: context)
        context.fireChannelReadComplete()
    }

    private func driveHandshake(context: ChannelHandlerContext) {
        guard let connection else { return }
        let result = connection.handshake()
        // The flight that completes the handshake (a server's session tickets)
        // waits for the application's first bytes, so both leave in one write.
        var finished = false
        if case .complete = result { finished = true }
        writeCiphertext(context: context, flush: !finished)
        switch result {
        case .wantRead:
            break
        case .failed(let error):
            fail(context: context, error)
        case .complete:
            let required = machine.role == .client ? tlsContext.configuration.applicationProtocol : nil
            switch machine.handshakeCompleted(negotiated: connection.applicationProtocol, required: required) {
            case .failAndClose(let error):
                fail(context: context, error)
            case .becomeActive:
                timeout?.cancel()
                let completed = TLSHandshakeCompleted(
                    protocolVersion: connection.protocolVersion, applicationProtocol: connection.applicationProtocol,
                    peer: connection.peerIdentity)
                handshakeResult = completed
                context.fireUserInboundEventTriggered(completed)
                readPlaintext(context: context)
                encryptPending(context: context)
                context.flush()
                self.connection?.releaseHandshakeBuffers()
            }
        }
    }

    private func readPlaintext(context: ChannelHandlerContext) {
        guard let connection else { return }
        while true {
            var buffer = plaintext ?? context.channel.allocator.buffer(capacity: 16_384)
            // Dropped before the read so `buffer` is the storage's only owner:
            // otherwise the write below copies the whole buffer (copy on write).
            plaintext = nil
            let result = connection.read(into: &buffer)
            plaintext = buffer
            writeCiphertext(context: context, flush: true)  // post-handshake messages, KeyUpdate replies
            switch result {
            case .bytes:
                if buffer.readableBytes >= Self.maximumCoalescedBytes { deliverPlaintext(context: context) }
            case .wantRead:
                // An idle connection keeps no buffer: an empty 16 KiB one held
                // here was most of the memory of each idle connection.
                if buffer.readableBytes == 0 { plaintext = nil }
                return
            case .closeNotify:
                deliverPlaintextBeforeClosing(context: context)
                switch machine.closeNotifyReceived() {
                case .replyAndClose:
                    connection.shutdown()
                    writeCiphertext(context: context, flush: true)
                    context.close(promise: nil)
                case .closeNow:
                    context.close(promise: nil)
                }
                return
            case .failed(let error):
                deliverPlaintextBeforeClosing(context: context)
                fail(context: context, error)
                return
            }
        }
    }

    /// Delivers the last plaintext of a connection about to close, and ends
    /// the read burst with `channelReadComplete` before the close's
    /// `channelInactive`. Handlers downstream may hold what they read until
    /// the burst ends: NIOHTTP2's stream multiplexer keeps each stream that
    /// read in a list it empties only on `channelReadComplete`, and that list
    /// keeps the whole connection (streams, HTTP/2 and TLS state) in memory.
    /// A client that reset a watch and closed its connection in one flight
    /// leaked its connection that way, about 15 KiB each.
    private func deliverPlaintextBeforeClosing(context: ChannelHandlerContext) {
        guard let buffer = plaintext, buffer.readableBytes > 0 else { return }
        deliverPlaintext(context: context)
        context.fireChannelReadComplete()
    }

    private func deliverPlaintext(context: ChannelHandlerContext) {
        guard var buffer = plaintext, buffer.readableBytes > 0 else { return }
        plaintext = nil
        // Handlers downstream may keep slices of what they read (a partial
        // HTTP/2 frame, a streaming request) for as long as a stream lives; a
        // slice keeps its whole buffer alive. A small read goes on in a buffer
        // of its own size, so an idle watch stream does not pin 16 KiB.
        if buffer.readableBytes <= buffer.capacity / 4 {
            var exact = context.channel.allocator.buffer(capacity: buffer.readableBytes)
            exact.writeBuffer(&buffer)
            buffer = exact
        }
        context.fireChannelRead(wrapInboundOut(buffer))
    }

    // MARK: Outbound

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard machine.state != .closed, machine.state != .closing else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        pending.append(PendingWrite(buffer: unwrapOutboundIn(data), promise: promise))
    }

    public func flush(context: ChannelHandlerContext) {
        flushedCount = pending.count
        if machine.isActive { encryptPending(context: context) }
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, machine.isActive { encryptPending(context: context) }
        context.fireChannelWritabilityChanged()
    }

    /// Encrypts flushed writes while the channel is writable.
    private func encryptPending(context: ChannelHandlerContext) {
        guard let connection else { return }
        var wrote = false
        while flushedCount > 0, context.channel.isWritable || !wrote {
            var head = pending.removeFirst()
            if flushedCount > 1, head.buffer.readableBytes < Self.encryptChunkBytes {
                head = coalesce(head, context: context)
            }
            let chunk = min(head.buffer.readableBytes, Self.encryptChunkBytes)
            let result = head.buffer.withUnsafeReadableBytes { connection.write(UnsafeRawBufferPointer(rebasing: $0.prefix(chunk))) }
            switch result {
            case .failure(let error):
                head.promise?.fail(error)
                flushedCount -= 1
                fail(context: context, error)
                return
            case .success(let consumed):
                head.buffer.moveReaderIndex(forwardBy: consumed)
            }
            let done = head.buffer.readableBytes == 0
            if let ciphertext = connection.drainOutput(allocator: context.channel.allocator) {
                context.write(wrapOutboundOut(ciphertext), promise: done ? head.promise : nil)
                wrote = true
            } else if done {
                head.promise?.succeed()
            }
            if done {
                flushedCount -= 1
            } else {
                pending.prepend(head)
            }
        }
        if wrote { context.flush() }
    }

    /// Joins `head` with the flushed writes after it, up to one chunk, so that
    /// they leave as one TLS record: an HTTP/2 frame header and its payload,
    /// written one after the other, would otherwise cost a record (and its
    /// header, tag and AEAD pass) each. The joined write's promise completes
    /// every joined write's promise.
    private func coalesce(_ head: PendingWrite, context: ChannelHandlerContext) -> PendingWrite {
        var total = head.buffer.readableBytes
        var count = 1
        for next in pending.prefix(flushedCount - 1) {
            guard total + next.buffer.readableBytes <= Self.encryptChunkBytes else { break }
            total += next.buffer.readableBytes
            count += 1
        }
        guard count > 1 else { return head }
        var joined = context.channel.allocator.buffer(capacity: total)
        var promises: [EventLoopPromise<Void>] = []
        var first = head
        joined.writeBuffer(&first.buffer)
        if let promise = head.promise { promises.append(promise) }
        for _ in 1..<count {
            var next = pending.removeFirst()
            joined.writeBuffer(&next.buffer)
            if let promise = next.promise { promises.append(promise) }
        }
        flushedCount -= count - 1
        var promise: EventLoopPromise<Void>?
        if promises.count == 1 {
            promise = promises[0]
        } else if !promises.isEmpty {
            let combined = context.eventLoop.makePromise(of: Void.self)
            let each = promises
            combined.futureResult.whenComplete { result in
                for p in each { p.completeWith(result) }
            }
            promise = combined
        }
        return PendingWrite(buffer: joined, promise: promise)
    }

    private func writeCiphertext(context: ChannelHandlerContext, flush: Bool) {
        guard let ciphertext = connection?.drainOutput(allocator: context.channel.allocator) else { return }
        context.write(wrapOutboundOut(ciphertext), promise: nil)
        if flush { context.flush() }
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all else {
            context.close(mode: mode, promise: promise)
            return
        }
        switch machine.closeRequested() {
        case .sendCloseNotifyThenClose:
            flushedCount = pending.count  // everything written before the close goes out before close_notify
            encryptPending(context: context)
            connection?.shutdown()
            guard let ciphertext = connection?.drainOutput(allocator: context.channel.allocator) else {
                context.close(mode: mode, promise: promise)
                return
            }
            context.writeAndFlush(wrapOutboundOut(ciphertext)).assumeIsolated().whenComplete { _ in
                context.close(mode: mode, promise: promise)
            }
        case .closeNow:
            context.close(mode: mode, promise: promise)
        case .alreadyClosed:
            promise?.fail(ChannelError.alreadyClosed)
        }
    }

    // MARK: Failure

    private func fail(context: ChannelHandlerContext, _ error: TLSError) {
        machine.failed()
        timeout?.cancel()
        writeCiphertext(context: context, flush: true)  // let the peer see our alert
        failPendingWrites(error)
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    private func failPendingWrites(_ error: any Error) {
        while let write = pending.popFirst() {
            write.promise?.fail(error)
        }
        flushedCount = 0
    }
}
