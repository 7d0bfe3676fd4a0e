import FuseboxTLS
import NIOCore
import NIOEmbedded
import XCTest

/// The handler in memory: two EmbeddedChannels whose outbound bytes are carried
/// to each other by hand.
final class TLSHandlerTests: XCTestCase {
    private func makePair() throws -> (client: EmbeddedChannel, server: EmbeddedChannel, clientLog: ConnectionLog, serverLog: ConnectionLog) {
        let serverLog = ConnectionLog()
        let clientLog = ConnectionLog()
        let server = EmbeddedChannel()
        try server.pipeline.syncOperations.addHandler(TLSHandler(context: TLSContext(configuration: Certs.server())))
        try server.pipeline.syncOperations.addHandler(RecordingHandler(log: serverLog, echo: false))
        let client = EmbeddedChannel()
        try client.pipeline.syncOperations.addHandler(TLSHandler(context: TLSContext(configuration: Certs.client()), serverName: "localhost"))
        try client.pipeline.syncOperations.addHandler(RecordingHandler(log: clientLog, echo: false))
        server.pipeline.fireChannelActive()
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 443)).wait()
        return (client, server, clientLog, serverLog)
    }

    /// Carries bytes both ways until nothing moves; returns the bytes carried client → server.
    @discardableResult
    private func shuttle(_ client: EmbeddedChannel, _ server: EmbeddedChannel) throws -> Int {
        var toServer = 0
        var moved = true
        while moved {
            moved = false
            while let bytes = try client.readOutbound(as: ByteBuffer.self) {
                toServer += bytes.readableBytes
                try server.writeInbound(bytes)
                moved = true
            }
            while let bytes = try server.readOutbound(as: ByteBuffer.self) {
                try client.writeInbound(bytes)
                moved = true
            }
        }
        return toServer
    }

    func testHandshakeDataAndCloseNotifyInMemory() throws {
        let (client, server, clientLog, serverLog) = try makePair()
        try shuttle(client, server)
        XCTAssertEqual(clientLog.handshake?.applicationProtocol, "h2")
        XCTAssertEqual(serverLog.handshake?.peer?.commonName, "fusebox-admin")
        try client.writeAndFlush(ByteBuffer(string: "hello over TLS")).wait()
        try shuttle(client, server)
        XCTAssertEqual(try server.readInbound(as: ByteBuffer.self), ByteBuffer(string: "hello over TLS"))
        // Closing sends close_notify; the server answers with its own and closes.
        let closed = client.close()
        try shuttle(client, server)
        try closed.wait()
        XCTAssertFalse(server.isActive)
        XCTAssertEqual(serverLog.tlsErrors, [], "close_notify makes a clean close")
        XCTAssertTrue(try server.finish(acceptAlreadyClosed: true).isClean)
    }

    /// The server's handshake ends on the client's Finished, which arrives
    /// together with application data and the start of a record cut short;
    /// the server then swaps its memory BIOs for fresh ones. Nothing in
    /// flight across that swap is lost: both messages arrive, whole.
    func testDataArrivingWithTheHandshakesEndSurvivesTheBufferRelease() throws {
        let (client, server, clientLog, serverLog) = try makePair()
        // ClientHello to the server, its flight back: the client is done and holds its Finished.
        while let bytes = try client.readOutbound(as: ByteBuffer.self) { try server.writeInbound(bytes) }
        while let bytes = try server.readOutbound(as: ByteBuffer.self) { try client.writeInbound(bytes) }
        XCTAssertNotNil(clientLog.handshake)
        XCTAssertNil(serverLog.handshake, "the server waits for the client's Finished")
        try client.writeAndFlush(ByteBuffer(string: "first message")).wait()
        try client.writeAndFlush(ByteBuffer(string: "second message")).wait()
        var flight = ByteBuffer()
        while var bytes = try client.readOutbound(as: ByteBuffer.self) { flight.writeBuffer(&bytes) }
        // All but the last 5 bytes, at once: Finished, the first record, most of the second.
        let cut = flight.readableBytes - 5
        guard let head = flight.readSlice(length: cut) else { return XCTFail("a flight of \(flight.readableBytes) bytes") }
        try server.writeInbound(head)
        XCTAssertEqual(serverLog.handshake?.peer?.commonName, "fusebox-admin")
        try server.writeInbound(flight)
        var received = ""
        while let bytes = try server.readInbound(as: ByteBuffer.self) { received += String(buffer: bytes) }
        XCTAssertEqual(received, "first messagesecond message")
        XCTAssertEqual(serverLog.tlsErrors, [])
        // And the connection goes on with the fresh buffers, both ways.
        try server.writeAndFlush(ByteBuffer(string: "answer")).wait()
        try shuttle(client, server)
        XCTAssertEqual(try client.readInbound(as: ByteBuffer.self), ByteBuffer(string: "answer"))
    }

    func testReadsAreCoalescedPerReadBurst() throws {
        let (client, server, _, _) = try makePair()
        try shuttle(client, server)
        for i in 0..<10 { client.write(ByteBuffer(string: "part \(i);"), promise: nil) }
        client.flush()
        // Deliver all records in one read burst.
        var records = ByteBuffer()
        while var bytes = try client.readOutbound(as: ByteBuffer.self) { records.writeBuffer(&bytes) }
        server.pipeline.fireChannelRead(records)
        server.pipeline.fireChannelReadComplete()
        let first = try XCTUnwrap(try server.readInbound(as: ByteBuffer.self))
        XCTAssertEqual(String(buffer: first), (0..<10).map { "part \($0);" }.joined())
        XCTAssertNil(try server.readInbound(as: ByteBuffer.self), "one coalesced read, not ten")
    }

    /// Writes flushed together leave as one TLS record (an HTTP/2 frame header
    /// and its payload are two writes), and every write's promise completes.
    func testWritesFlushedTogetherLeaveAsOneRecord() throws {
        let (client, server, _, _) = try makePair()
        try shuttle(client, server)
        let header = client.write(ByteBuffer(bytes: [UInt8](repeating: 1, count: 9)))
        let payload = client.write(ByteBuffer(bytes: [UInt8](repeating: 2, count: 22)))
        client.flush()
        var ciphertext = ByteBuffer()
        while var bytes = try client.readOutbound(as: ByteBuffer.self) { ciphertext.writeBuffer(&bytes) }
        // Each TLS record starts with a 5-byte header: type, version, length.
        var records = 0
        var view = ciphertext
        while view.readableBytes >= 5, let length = view.getInteger(at: view.readerIndex + 3, as: UInt16.self) {
            records += 1
            view.moveReaderIndex(forwardBy: 5 + Int(length))
        }
        XCTAssertEqual(records, 1, "two writes flushed together took \(records) records")
        try header.wait()
        try payload.wait()
        server.pipeline.fireChannelRead(ciphertext)
        server.pipeline.fireChannelReadComplete()
        XCTAssertEqual(try server.readInbound(as: ByteBuffer.self), ByteBuffer(bytes: [UInt8](repeating: 1, count: 9) + [UInt8](repeating: 2, count: 22)))
    }

    /// While the channel is not writable, a large flushed write is encrypted one
    /// chunk at a time; the rest waits for writability.
    func testEncryptsOnlyWhileWritable() throws {
        let (client, server, _, _) = try makePair()
        try shuttle(client, server)
        client.isWritable = false
        let written = client.writeAndFlush(ByteBuffer(repeating: 7, count: 1024 * 1024))
        var ciphertext = 0
        while let bytes = try client.readOutbound(as: ByteBuffer.self) { ciphertext += bytes.readableBytes }
        XCTAssertGreaterThan(ciphertext, 0)
        XCTAssertLessThan(ciphertext, 80 * 1024, "only one chunk is encrypted while unwritable")
        client.isWritable = true
        client.pipeline.fireChannelWritabilityChanged()
        let rest = try shuttle(client, server)
        XCTAssertGreaterThan(ciphertext + rest, 1024 * 1024)
        try written.wait()
    }

    func testWritesBeforeTheHandshakeAreSentAfterIt() throws {
        let (client, server, _, _) = try makePair()
        client.write(ByteBuffer(string: "early"), promise: nil)
        client.flush()
        try shuttle(client, server)
        XCTAssertEqual(try server.readInbound(as: ByteBuffer.self), ByteBuffer(string: "early"))
    }
}
