/// A random number generator for backoff jitter, seeded from the system's.
///
/// It has state (SplitMix64), unlike `SystemRandomNumberGenerator`: passing
/// an empty struct `inout` into a closure under a lock made ThreadSanitizer's
/// access checks dereference a meaningless address and crash the test run.
public struct JitterSource: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// Seeded from the system's generator.
    public init() {
        // The standard library's draw: no `inout` access of ours to a
        // zero-sized SystemRandomNumberGenerator, which ThreadSanitizer sees at
        // one shared address and reports as a race.
        state = UInt64.random(in: .min ... .max)
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
