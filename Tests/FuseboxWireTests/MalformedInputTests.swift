import XCTest

@testable import FuseboxWire
import FuseboxCore

/// Bad bytes get a typed error naming what was wrong; nothing crashes. The test
/// command runs this file again under AddressSanitizer (leaks included).
final class MalformedInputTests: XCTestCase {
    private func decodeError<T: WireMessage>(_ type: T.Type, _ bytes: [UInt8], limits: WireLimits = .default) -> WireError? {
        do {
            _ = try T(decoding: bytes, limits: limits)
            return nil
        } catch {
            return error
        }
    }

    private func assertError<T: WireMessage>(
        _ type: T.Type, _ bytes: [UInt8], _ code: WireError.Code, field: String?,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        guard let error = decodeError(type, bytes) else {
            return XCTFail("\(T.protoName) decoded \(bytes) without error", file: file, line: line)
        }
        XCTAssertEqual(error.code, code, "\(error)", file: file, line: line)
        XCTAssertEqual(error.messageType, T.protoName, file: file, line: line)
        XCTAssertEqual(error.fieldPath, field, "\(error)", file: file, line: line)
        XCTAssertFalse(error.description.isEmpty, file: file, line: line)
    }

    func testTruncatedBuffers() throws {
        var policy = Fusebox_V1_Policy()
        policy.name = "payments"
        let bytes = try policy.encode()  // 0x0a 0x08 "payments"
        assertError(Fusebox_V1_Policy.self, Array(bytes.prefix(5)), .truncated, field: "name")
        assertError(Fusebox_V1_Policy.self, [0x0a], .truncated, field: "name")
        assertError(Fusebox_V1_Policy.self, [0x80], .truncated, field: nil)  // key cut inside its varint
        // A fixed64 cut short, in an unknown field 20 of wire type 1.
        assertError(Fusebox_V1_Policy.self, [0xa1, 0x01, 1, 2, 3], .truncated, field: "#20")

        // Every prefix of every sample either decodes or throws WireError; none crashes.
        var failures = 0
        for type in allSampledTypes {
            failures += try prefixes(type)
        }
        XCTAssertGreaterThan(failures, 1000)
    }

    private func prefixes<T: WireSampled>(_ type: T.Type) throws -> Int {
        let bytes = try T.sample(0).encode()
        var failures = 0
        for length in 0..<bytes.count where decodeError(T.self, Array(bytes.prefix(length))) != nil {
            failures += 1
        }
        return failures
    }

    func testWrongWireTypes() {
        // Policy.name (string) sent as a varint.
        assertError(Fusebox_V1_Policy.self, [0x08, 0x01], .wrongWireType, field: "name")
        // Policy.retry.max_attempts (uint32, field 1) sent length-delimited.
        assertError(Fusebox_V1_Policy.self, [0x2a, 0x03, 0x0a, 0x01, 0x41], .wrongWireType, field: "retry.max_attempts")
        // CircuitBreakerPolicy.failure_rate_threshold_percent (double) as a 4-byte value.
        assertError(Fusebox_V1_CircuitBreakerPolicy.self, [0x15, 0, 0, 0, 0], .wrongWireType, field: "failure_rate_threshold_percent")
        // Groups and undefined wire types.
        assertError(Fusebox_V1_Policy.self, [0x0b, 0x0c], .unsupportedWireType, field: "name")
        assertError(Fusebox_V1_Policy.self, [0x0e], .unsupportedWireType, field: "name")
        assertError(Fusebox_V1_Policy.self, [0x00, 0x01], .invalidFieldNumber, field: nil)
    }

    func testPackedRepeatedScalarsAreAccepted() throws {
        // RetryPolicy.retry_on (field 5, repeated enum) packed: [1, 3].
        let decoded = try Fusebox_V1_RetryPolicy(decoding: [0x2a, 0x02, 0x01, 0x03])
        XCTAssertEqual(decoded.retryOn, [.networkError, .rateLimited])
    }

    func testOversizedLengthPrefixes() {
        // Policy.name claims 2^32-1 bytes.
        assertError(Fusebox_V1_Policy.self, [0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x61], .truncated, field: "name")
        // Nested: Policy.retry claims 100 bytes, 2 remain.
        assertError(Fusebox_V1_Policy.self, [0x2a, 0x64, 0x08, 0x01], .truncated, field: "retry")
        // Inside a nested message: RetryPolicy.retryable_errors (6) claims 50 bytes.
        assertError(Fusebox_V1_Policy.self, [0x2a, 0x03, 0x32, 0x32, 0x61], .truncated, field: "retry.retryable_errors")
        // A varint longer than 10 bytes.
        assertError(Fusebox_V1_Policy.self, [0x0a] + [UInt8](repeating: 0xff, count: 11), .malformedVarint, field: "name")
    }

    func testEmbeddedNULIsRejectedWithItsFieldPath() {
        assertError(Fusebox_V1_Policy.self, [0x0a, 0x03, 0x61, 0x00, 0x62], .embeddedNUL, field: "name")
        // Policy.labels (3) entry {key (1) = "a\0"}.
        assertError(Fusebox_V1_Policy.self, [0x1a, 0x04, 0x0a, 0x02, 0x61, 0x00], .embeddedNUL, field: "labels.key")
        // PolicyChange.after (6).circuit_breaker (4).ignored_errors (10) = "\0".
        assertError(
            Fusebox_V1_PolicyChange.self, [0x32, 0x05, 0x22, 0x03, 0x52, 0x01, 0x00],
            .embeddedNUL, field: "after.circuit_breaker.ignored_errors")
    }

    func testBytesFieldsMayHoldNUL() throws {
        var body = Fusebox_V1_StaticResponse()
        body.body = [0, 0, 1]
        XCTAssertEqual(try Fusebox_V1_StaticResponse(decoding: body.encode()).body, [0, 0, 1])
    }

    func testInvalidUTF8IsRejected() {
        assertError(Fusebox_V1_Policy.self, [0x0a, 0x02, 0xff, 0xfe], .invalidUTF8, field: "name")
        // An overlong encoding of NUL (C0 80) and a lone surrogate (ED A0 80).
        assertError(Fusebox_V1_Policy.self, [0x12, 0x02, 0xc0, 0x80], .invalidUTF8, field: "description")
        assertError(Fusebox_V1_BreakerRef.self, [0x12, 0x03, 0xed, 0xa0, 0x80], .invalidUTF8, field: "name")
        // Cut inside a multi-byte character.
        assertError(Fusebox_V1_BreakerRef.self, [0x0a, 0x02, 0xc3, 0x61], .invalidUTF8, field: "registry")
    }

    func testSizeLimit() throws {
        let small = try Fusebox_V1_Policy.sample(0).encode()
        guard let error = decodeError(Fusebox_V1_Policy.self, small, limits: WireLimits(maxMessageBytes: 10)) else {
            return XCTFail("limit not enforced")
        }
        XCTAssertEqual(error.code, .messageTooLarge)
        XCTAssertTrue(error.message.contains("exceed the limit of 10 bytes"), error.message)

        // The default 4 MiB: exactly at the limit decodes, one byte more does not.
        let limit = WireLimits.default.maxMessageBytes
        XCTAssertEqual(limit, 4 * 1024 * 1024)
        var response = Fusebox_V1_StaticResponse()
        response.body = [UInt8](repeating: 7, count: limit - 5)  // 1 key + 4 length bytes
        let atLimit = try response.encode()
        XCTAssertEqual(atLimit.count, limit)
        XCTAssertEqual(try Fusebox_V1_StaticResponse(decoding: atLimit).body.count, limit - 5)
        response.body.append(7)
        XCTAssertEqual(decodeError(Fusebox_V1_StaticResponse.self, try response.encode())?.code, .messageTooLarge)
    }

    /// 10,000 random byte strings and 10,000 mutated valid messages, each decoded
    /// as a message type in turn: each decodes or gives a WireError.
    func testRandomAndMutatedInputNeverCrashes() throws {
        var rng = SplitMix64(seed: 0x5EED_F05E)
        let types = allWireMessageTypes
        var outcomes = (ok: 0, failed: 0)
        for i in 0..<10_000 {
            let length = Int(rng.next() % 64)
            let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let type = types[i % types.count]
            if tryDecode(type, bytes) { outcomes.ok += 1 } else { outcomes.failed += 1 }
        }
        let seeds = try allSampledTypes.map { try encodeSample($0) }
        for i in 0..<10_000 {
            var bytes = seeds[i % seeds.count]
            guard !bytes.isEmpty else { continue }
            for _ in 0..<(1 + Int(rng.next() % 3)) {
                let at = Int(rng.next() % UInt64(bytes.count))
                bytes[at] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
            }
            let type = allSampledTypes[i % seeds.count]
            if tryDecode(type, bytes) { outcomes.ok += 1 } else { outcomes.failed += 1 }
        }
        XCTAssertGreaterThan(outcomes.ok, 100, "some mutations still decode")
        XCTAssertGreaterThan(outcomes.failed, 5_000, "most random input is rejected")
    }

    private func encodeSample<T: WireSampled>(_ type: T.Type) throws -> [UInt8] {
        try T.sample(0).encode()
    }

    private func tryDecode<T: WireMessage>(_ type: T.Type, _ bytes: [UInt8]) -> Bool {
        decodeError(T.self, bytes) == nil
    }
}
