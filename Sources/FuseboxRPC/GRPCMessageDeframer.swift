package import NIOCore

/// Splits a gRPC byte stream into messages: each is a 1-byte compressed flag,
/// a 4-byte big-endian length and the message. Pure; fed bytes as they come.
/// Package-visible for the fuzz target (FuseboxFuzzing) that feeds it.
package struct GRPCMessageDeframer {
    /// Why the stream cannot be deframed.
    package enum Failure: Error, Equatable {
        /// A declared length above the limit (RESOURCE_EXHAUSTED).
        case tooLarge(length: Int, limit: Int)
        /// The compressed flag without a negotiated encoding (INTERNAL).
        case compressedWithoutEncoding
        /// A flag byte other than 0 or 1.
        case invalidFlag(UInt8)
    }

    /// The largest message accepted.
    package let maximumMessageBytes: Int
    private var buffer = ByteBuffer()

    /// A deframer refusing messages over `maximumMessageBytes`.
    package init(maximumMessageBytes: Int) {
        self.maximumMessageBytes = maximumMessageBytes
    }

    /// Bytes received but not yet a whole message.
    package var bufferedBytes: Int { buffer.readableBytes }

    /// Adds bytes as they arrived.
    package mutating func append(_ bytes: ByteBuffer) {
        var bytes = bytes
        if buffer.readableBytes == 0 {
            buffer = bytes
        } else {
            buffer.writeBuffer(&bytes)
        }
    }

    /// The next whole message, nil when more bytes are needed. A length over
    /// the limit fails as soon as the 5-byte prefix is seen, before the body.
    package mutating func next() throws(Failure) -> [UInt8]? {
        guard buffer.readableBytes >= 5,
            let flag = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
            let length = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt32.self)
        else { return nil }
        switch flag {
        case 0: break
        case 1: throw .compressedWithoutEncoding
        default: throw .invalidFlag(flag)
        }
        guard Int(length) <= maximumMessageBytes else {
            throw .tooLarge(length: Int(length), limit: maximumMessageBytes)
        }
        guard buffer.readableBytes >= 5 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 5)
        let message = buffer.readBytes(length: Int(length)) ?? []
        // Release the storage once empty: the buffer is often a slice of a
        // connection's 16 KiB read buffer, and a long-lived stream (a watch)
        // holding it kept that memory alive for the stream's whole life.
        if buffer.readableBytes == 0 { buffer = ByteBuffer() } else { buffer.discardReadBytes() }
        return message
    }

    /// Frames one message (uncompressed).
    static func frame(_ message: [UInt8], allocator: ByteBufferAllocator) -> ByteBuffer {
        var out = allocator.buffer(capacity: 5 + message.count)
        out.writeInteger(UInt8(0))
        out.writeInteger(UInt32(message.count))
        out.writeBytes(message)
        return out
    }
}
