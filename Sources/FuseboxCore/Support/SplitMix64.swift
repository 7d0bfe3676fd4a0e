/// A small, fast, seedable random number generator (SplitMix64).
///
/// State machines that need randomness (jitter) keep one of these as part of
/// their value, seeded by the owner, so tests replay exactly.
public struct SplitMix64: RandomNumberGenerator, Sendable, Hashable {
    private var state: UInt64

    /// A generator starting from `seed`.
    public init(seed: UInt64) {
        state = seed
    }

    /// A generator seeded from the system's generator.
    public init() {
        // The standard library's draw: no `inout` access of ours to a
        // zero-sized SystemRandomNumberGenerator, which ThreadSanitizer sees at
        // one shared address and reports as a race.
        state = UInt64.random(in: .min ... .max)
    }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
