import NIOCore
import NIOEmbedded
import NIOHTTP2
import XCTest

@testable import FuseboxRPC

/// `ClientKeepaliveHandler` in an `EmbeddedChannel`, on the embedded loop's clock.
final class ClientKeepaliveHandlerTests: XCTestCase {
    private final class Reasons {
        var all: [String] = []
    }

    private func makeChannel(_ reasons: Reasons) throws -> (EmbeddedChannel, EmbeddedEventLoop) {
        let loop = EmbeddedEventLoop()
        let handler = ClientKeepaliveHandler(interval: .seconds(1), timeout: .milliseconds(500)) {
            reasons.all.append($0)
        }
        let channel = EmbeddedChannel(handler: handler, loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 7443)).wait()
        return (channel, loop)
    }

    private func assertPing(_ channel: EmbeddedChannel, file: StaticString = #filePath, line: UInt = #line) throws {
        let frame = try XCTUnwrap(
            try channel.readOutbound(as: HTTP2Frame.self), "no PING written", file: file, line: line)
        guard case .ping(_, ack: false) = frame.payload, frame.streamID == .rootStream else {
            return XCTFail("expected a PING, got \(frame)", file: file, line: line)
        }
    }

    func testASilentConnectionWithACallIsPingedThenClosed() throws {
        let reasons = Reasons()
        let (channel, loop) = try makeChannel(reasons)
        channel.pipeline.fireUserInboundEventTriggered(StreamLifecycleEvent.opened(HTTP2StreamID(1)))
        loop.advanceTime(by: .milliseconds(999))
        XCTAssertNil(try channel.readOutbound(as: HTTP2Frame.self), "PING before the interval")
        loop.advanceTime(by: .milliseconds(1))
        try assertPing(channel)
        loop.advanceTime(by: .milliseconds(499))
        XCTAssertTrue(channel.isActive)
        loop.advanceTime(by: .milliseconds(1))
        XCTAssertFalse(channel.isActive, "not closed after the timeout")
        XCTAssertEqual(reasons.all, ["no answer to keepalive PING within 500 ms"])
    }

    func testAnAnswerKeepsTheConnectionAndTheNextPingComesAnIntervalLater() throws {
        let reasons = Reasons()
        let (channel, loop) = try makeChannel(reasons)
        channel.pipeline.fireUserInboundEventTriggered(StreamLifecycleEvent.opened(HTTP2StreamID(1)))
        loop.advanceTime(by: .seconds(1))
        try assertPing(channel)
        loop.advanceTime(by: .milliseconds(100))
        try channel.writeInbound(HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2PingData(), ack: true)))
        XCTAssertNotNil(try channel.readInbound(as: HTTP2Frame.self), "the ACK is passed on")
        loop.advanceTime(by: .milliseconds(999))
        XCTAssertTrue(channel.isActive)
        XCTAssertNil(try channel.readOutbound(as: HTTP2Frame.self))
        loop.advanceTime(by: .milliseconds(1))
        try assertPing(channel)
        XCTAssertEqual(reasons.all, [])
        channel.pipeline.fireUserInboundEventTriggered(StreamLifecycleEvent.closed(HTTP2StreamID(1)))
        channel.pipeline.fireChannelReadComplete()
        XCTAssertTrue(try channel.finish().isClean)
    }

    /// The frames of calls do not pass the handler; the read completion that
    /// follows them does, and postpones the PING.
    func testAnyReadPostponesThePing() throws {
        let (channel, loop) = try makeChannel(Reasons())
        channel.pipeline.fireUserInboundEventTriggered(StreamLifecycleEvent.opened(HTTP2StreamID(1)))
        for _ in 0..<5 {
            loop.advanceTime(by: .milliseconds(900))
            channel.pipeline.fireChannelReadComplete()
        }
        XCTAssertNil(try channel.readOutbound(as: HTTP2Frame.self), "PINGed a connection that was not silent")
        channel.pipeline.fireUserInboundEventTriggered(StreamLifecycleEvent.closed(HTTP2StreamID(1)))
        XCTAssertTrue(try channel.finish().isClean)
    }

    func testNoPingsWithoutCalls() throws {
        let (channel, loop) = try makeChannel(Reasons())
        loop.advanceTime(by: .hours(1))
        channel.pipeline.fireUserInboundEventTriggered(StreamLifecycleEvent.opened(HTTP2StreamID(1)))
        channel.pipeline.fireUserInboundEventTriggered(StreamLifecycleEvent.closed(HTTP2StreamID(1)))
        loop.advanceTime(by: .hours(1))
        XCTAssertNil(try channel.readOutbound(as: HTTP2Frame.self))
        XCTAssertTrue(try channel.finish().isClean)
    }
}
