import XCTest

@testable import FuseboxWire
import FuseboxCore

#if canImport(Glibc)
import Glibc
#endif

/// Under `--sanitize=address`, decodes and encodes every kind of input (good,
/// truncated, mutated, random) and then asks LeakSanitizer whether anything
/// allocated is unreachable: every unpacked protobuf-c message and every arena
/// must be freed. `scripts/test` runs it with the at-exit leak check off, since
/// at exit XCTest itself leaves its test-case objects behind.
final class LeakCheckTests: XCTestCase {
    private typealias LeakCheck = @convention(c) () -> Int32

    func testCodecLeaksNothingUnderLeakSanitizer() throws {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__lsan_do_recoverable_leak_check") else {
            throw XCTSkip("needs LeakSanitizer: run with swift test --sanitize=address")
        }
        let leakCheck = unsafeBitCast(symbol, to: LeakCheck.self)
        var rng = SplitMix64(seed: 42)
        for type in allSampledTypes {
            try exercise(type, rng: &rng)
        }
        XCTAssertEqual(leakCheck(), 0, "LeakSanitizer found leaks; see its report above")
    }

    private func exercise<T: WireSampled>(_ type: T.Type, rng: inout SplitMix64) throws {
        for variant in 0..<T.sampleVariants {
            let bytes = try T.sample(variant).encode()
            _ = try T(decoding: bytes)
            for cut in 0..<bytes.count {
                _ = try? T(decoding: Array(bytes.prefix(cut)))
            }
            for _ in 0..<50 where !bytes.isEmpty {
                var mutated = bytes
                mutated[Int(rng.next() % UInt64(bytes.count))] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
                _ = try? T(decoding: mutated)
            }
        }
        for _ in 0..<100 {
            let random = (0..<Int(rng.next() % 48)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            _ = try? T(decoding: random)
        }
        // An encode that fails half-way still frees its arena.
        var bad = Fusebox_V1_Policy.sample(0)
        bad.description = "nul\u{0}inside"
        XCTAssertThrowsError(try bad.encode())
    }
}
