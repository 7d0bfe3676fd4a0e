import NIOCore
import XCTest

@testable import FuseboxRPC

final class GRPCWireTests: XCTestCase {
    func testTimeoutParsingAndFormatting() {
        XCTAssertEqual(GRPCWire.parseTimeout("100m"), 100_000_000)
        XCTAssertEqual(GRPCWire.parseTimeout("2S"), 2_000_000_000)
        XCTAssertEqual(GRPCWire.parseTimeout("1H"), 3_600_000_000_000)
        XCTAssertEqual(GRPCWire.parseTimeout("5n"), 5)
        XCTAssertNil(GRPCWire.parseTimeout("123456789S"), "at most 8 digits")
        XCTAssertNil(GRPCWire.parseTimeout("10x"))
        XCTAssertNil(GRPCWire.parseTimeout("S"))
        XCTAssertNil(GRPCWire.parseTimeout("-1S"))
        for nanos: Int64 in [1, 999, 1_500_000, 30_000_000_000, 86_400_000_000_000] {
            let text = GRPCWire.formatTimeout(nanoseconds: nanos)
            XCTAssertLessThanOrEqual(text.count, 9)
            XCTAssertGreaterThanOrEqual(GRPCWire.parseTimeout(text) ?? 0, nanos, text)
        }
    }

    func testPercentEncodingRoundTrips() {
        let text = "policy \"x\": 62% ≥ 50% — ✗\nnext line"
        let encoded = GRPCWire.percentEncode(text)
        XCTAssertTrue(encoded.utf8.allSatisfy { $0 >= 0x20 && $0 <= 0x7E }, encoded)
        XCTAssertTrue(encoded.contains("62%25"))
        XCTAssertEqual(GRPCWire.percentDecode(encoded), text)
        XCTAssertEqual(GRPCWire.percentDecode("bad %zz escape %"), "bad %zz escape %", "malformed escapes stay")
    }

    func testDeframerHandlesSplitsLimitsAndFlags() throws {
        var deframer = GRPCMessageDeframer(maximumMessageBytes: 10)
        let framed = GRPCMessageDeframer.frame([1, 2, 3], allocator: ByteBufferAllocator())
            + GRPCMessageDeframer.frame([], allocator: ByteBufferAllocator())
        // Byte at a time.
        var messages: [[UInt8]] = []
        for byte in framed.readableBytesView {
            deframer.append(ByteBuffer(bytes: [byte]))
            while let m = try deframer.next() { messages.append(m) }
        }
        XCTAssertEqual(messages, [[1, 2, 3], []])
        var tooLarge = GRPCMessageDeframer(maximumMessageBytes: 10)
        tooLarge.append(ByteBuffer(bytes: [0, 0, 0, 0, 11]))
        XCTAssertThrowsError(try tooLarge.next()) { XCTAssertEqual($0 as? GRPCMessageDeframer.Failure, .tooLarge(length: 11, limit: 10)) }
        var compressed = GRPCMessageDeframer(maximumMessageBytes: 10)
        compressed.append(ByteBuffer(bytes: [1, 0, 0, 0, 1, 9]))
        XCTAssertThrowsError(try compressed.next()) { XCTAssertEqual($0 as? GRPCMessageDeframer.Failure, .compressedWithoutEncoding) }
    }

    func testStatusCodesMatchTheSpec() {
        XCTAssertEqual(RPCStatusCode.allCases.count, 17)
        XCTAssertEqual(RPCStatusCode.unauthenticated.rawValue, 16)
        XCTAssertEqual("\(RPCStatusCode.failedPrecondition)", "FAILED_PRECONDITION")
    }
}

private func + (lhs: ByteBuffer, rhs: ByteBuffer) -> ByteBuffer {
    var out = lhs
    var r = rhs
    out.writeBuffer(&r)
    return out
}
