import XCTest

@testable import FuseboxWire

final class RoundTripTests: XCTestCase {
    /// Every message type, in every sample variant (one per oneof case), survives
    /// encode → decode unchanged, and its sample really sets fields.
    func testEveryMessageTypeRoundTrips() throws {
        var checked = 0
        for type in allSampledTypes {
            checked += try roundTrip(type)
        }
        XCTAssertEqual(Set(allSampledTypes.map { $0.protoName }).count, allWireMessageTypes.count)
        XCTAssertGreaterThan(checked, allWireMessageTypes.count, "oneof variants add samples")
    }

    private func roundTrip<T: WireSampled>(_ type: T.Type) throws -> Int {
        for variant in 0..<T.sampleVariants {
            let sample = T.sample(variant)
            if T.fieldCount > 0 {
                XCTAssertNotEqual(sample, T(), "\(T.protoName) sample \(variant) is all defaults")
            }
            let bytes = try sample.encode()
            let decoded = try T(decoding: bytes)
            XCTAssertEqual(decoded, sample, "\(T.protoName) variant \(variant)")
            XCTAssertEqual(try decoded.encode(), bytes, "\(T.protoName) re-encodes to the same bytes")
        }
        return T.sampleVariants
    }

    func testDefaultMessagesEncodeToNothing() throws {
        for type in allWireMessageTypes {
            XCTAssertEqual(try encodeDefault(type), [], "\(type.protoName)")
        }
    }

    private func encodeDefault<T: WireMessage>(_ type: T.Type) throws -> [UInt8] {
        try T().encode()
    }

    func testEveryOneofCaseSurvives() throws {
        var event = Fusebox_V1_BreakerEvent()
        var transition = Fusebox_V1_BreakerTransition()
        transition.reason = "failure rate 62% ≥ 50% over 40 calls from 7 clients"
        transition.contributingClients = ["a", "b"]
        event.event = .transition(transition)
        XCTAssertEqual(try Fusebox_V1_BreakerEvent(decoding: event.encode()), event)

        var fallback = Fusebox_V1_FallbackPolicy()
        fallback.action = .staleCache(false)  // a oneof member at its default is still present
        let decoded = try Fusebox_V1_FallbackPolicy(decoding: fallback.encode())
        XCTAssertEqual(decoded.action, .staleCache(false))
    }

    func testUnknownEnumValuesArePreservedExplicitly() throws {
        // BreakerStatus.state (field 3) = 99, evaluated_state (field 4) = -1.
        let bytes: [UInt8] = [0x18, 99, 0x20] + [UInt8](repeating: 0xff, count: 9) + [0x01]
        let status = try Fusebox_V1_BreakerStatus(decoding: bytes)
        XCTAssertEqual(status.state, .unrecognized(99))
        XCTAssertEqual(status.evaluatedState, .unrecognized(-1))
        XCTAssertEqual(try status.encode(), bytes)
        XCTAssertEqual(Fusebox_V1_BreakerState(rawValue: 3), .halfOpen)
        XCTAssertEqual(Fusebox_V1_BreakerState.allCases.count, 8)
    }

    func testUnknownFieldsAreSkipped() throws {
        var policy = Fusebox_V1_Policy()
        policy.name = "api"
        // Field 100, varint 7; field 101, 3 bytes.
        let extra: [UInt8] = [0xa0, 0x06, 0x07, 0xaa, 0x06, 0x03, 1, 2, 3]
        XCTAssertEqual(try Fusebox_V1_Policy(decoding: policy.encode() + extra), policy)
    }

    func testEncodingAStringWithNULThrowsInsteadOfTruncating() {
        var policy = Fusebox_V1_Policy()
        policy.retry = Fusebox_V1_RetryPolicy()
        policy.retry?.retryableErrors = ["http.503", "bad\u{0}code"]
        XCTAssertThrowsError(try policy.encode()) { error in
            guard let error = error as? WireError else { return XCTFail("\(error)") }
            XCTAssertEqual(error.code, .embeddedNUL)
            XCTAssertEqual(error.messageType, "fusebox.v1.RetryPolicy")
            XCTAssertEqual(error.fieldPath, "retryable_errors")
        }
    }
}
