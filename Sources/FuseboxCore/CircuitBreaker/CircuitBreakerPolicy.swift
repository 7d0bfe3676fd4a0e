/// How a circuit breaker measures calls and when it trips. Values are as the
/// operator wrote them, with the documented defaults already applied; a
/// threshold of 0 disables its rule.
public struct CircuitBreakerPolicy: Sendable, Hashable {
    /// The sliding window the rates are computed over.
    public var window: WindowShape = WindowShape()
    /// Trip at or above this failure percentage (0-100). 0 disables the rule.
    public var failureRateThreshold: Double = 0
    /// Trip at or above this slow-call percentage (0-100). 0 disables the rule.
    public var slowCallRateThreshold: Double = 0
    /// An attempt strictly longer than this is slow. Default 60,000 ms.
    public var slowCallDurationThresholdMs: Int64 = 60_000
    /// The rate rules apply only with at least this many calls in the window. Default 10.
    public var minimumCalls: Int = 10
    /// Trip after this many consecutive failures. 0 disables the rule.
    public var consecutiveFailuresThreshold: Int = 0
    /// A fleet-wide trip needs failures from at least this many distinct clients. Default 1.
    public var minimumClients: Int = 1
    /// How long OPEN lasts, and how it grows on repeated trips.
    public var openDuration: OpenDurationPolicy = OpenDurationPolicy()
    /// How HALF_OPEN probes.
    public var halfOpen: HalfOpenPolicy = HalfOpenPolicy()
    /// Error codes counted as `.ignored`.
    public var ignoredErrors: Set<String> = []

    /// A policy with every default.
    public init() {}
}

/// Duration of the OPEN state.
public struct OpenDurationPolicy: Sendable, Hashable {
    /// First OPEN period. Default 60,000 ms.
    public var baseMs: Int64 = 60_000
    /// Growth factor after each failed probe (≥ 1). Default 1: no growth.
    public var multiplier: Double = 1
    /// Bound of the grown duration, applied before jitter. Default (and at most) 24 h.
    public var maxMs: Int64 = OpenDurationPolicy.dayMs
    /// Random spread added to each period, in percent of it (0-100). Default 0.
    public var jitterPercent: Int = 0

    /// 24 hours in milliseconds, the longest an OPEN period may last.
    public static let dayMs: Int64 = 86_400_000

    /// The defaults.
    public init() {}

    /// The OPEN period after `reopenings` failed probes in a row (0 for the
    /// first trip): base × multiplier^reopenings, capped at `maxMs`, then jitter
    /// adds up to `jitterPercent`% of it.
    public func duration(reopenings: Int, using random: inout some RandomNumberGenerator) -> Int64 {
        let grown = Double(baseMs) * Foundationless.pow(max(multiplier, 1), reopenings)
        let capped = Int64(min(grown, Double(min(maxMs, Self.dayMs))))
        guard jitterPercent > 0, capped > 0 else { return capped }
        let spread = capped * Int64(min(jitterPercent, 100)) / 100
        return capped + Int64.random(in: 0...spread, using: &random)
    }
}

/// Probing in HALF_OPEN.
public struct HalfOpenPolicy: Sendable, Hashable {
    /// Permits granted at most at once, fleet-wide. Default 1.
    public var permittedCalls: Int = 1
    /// A permit not reported within this time expires as a failed probe. Default 30,000 ms.
    public var maxWaitMs: Int64 = 30_000
    /// Successful probes that close the breaker. Default: `permittedCalls`.
    ///
    /// As in the Protos, 0 means the default: until a threshold is set (or
    /// after 0 is set) this reads `permittedCalls`, whatever `permittedCalls`
    /// is. This getter is the one place the default is resolved; the wire
    /// mapping, the YAML and the state machine all read it.
    public var successThreshold: Int {
        get { successThresholdSetting == 0 ? permittedCalls : successThresholdSetting }
        set { successThresholdSetting = newValue }
    }

    /// The threshold as set; 0 while it follows `permittedCalls`.
    public private(set) var successThresholdSetting = 0

    /// The defaults.
    public init() {}

    /// Policies are equal when they probe alike: a threshold left at its
    /// default equals the same number set explicitly.
    public static func == (lhs: HalfOpenPolicy, rhs: HalfOpenPolicy) -> Bool {
        lhs.permittedCalls == rhs.permittedCalls && lhs.maxWaitMs == rhs.maxWaitMs
            && lhs.successThreshold == rhs.successThreshold
    }

    /// Hashes what `==` compares.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(permittedCalls)
        hasher.combine(maxWaitMs)
        hasher.combine(successThreshold)
    }
}

/// Shape of a sliding window: count- or time-based ring of buckets.
public struct WindowShape: Sendable, Hashable {
    /// Count- or time-based.
    public enum Kind: Sendable, Hashable {
        /// The last `size` calls.
        case count
        /// The calls of the last `size` seconds.
        case time
    }

    /// Count- or time-based. Default count.
    public var kind: Kind = .count
    /// Calls (count) or seconds (time) covered. Default 100 calls.
    public var size: Int = 100
    /// Buckets in the ring. Default: one per call (count, at most 10,000) or per second (time).
    /// A count window keeps its calls' order at the grain of ⌈size / buckets⌉ calls.
    public var buckets: Int = 100

    /// A count window of 100 calls.
    public init() {}

    /// A window shape.
    public init(kind: Kind, size: Int, buckets: Int? = nil) {
        self.kind = kind
        self.size = size
        self.buckets = buckets ?? Self.defaultBuckets(kind: kind, size: size)
    }

    /// One bucket per call (count, at most 10,000) or per second (time).
    public static func defaultBuckets(kind: Kind, size: Int) -> Int {
        kind == .count ? min(max(size, 1), 10_000) : max(size, 1)
    }

    /// Calls one count bucket holds (count windows).
    var bucketCapacity: UInt64 { UInt64(max(1, (size + buckets - 1) / max(buckets, 1))) }
    /// Milliseconds one bucket covers (time windows).
    var bucketMs: Int64 { max(1, Int64(size) * 1000 / Int64(max(buckets, 1))) }
}

/// Small numeric helpers, so FuseboxCore needs no Foundation.
enum Foundationless {
    /// base^exponent for a non-negative integer exponent, saturating at infinity.
    static func pow(_ base: Double, _ exponent: Int) -> Double {
        var result = 1.0
        var n = exponent
        var b = base
        while n > 0 {
            if n & 1 == 1 { result *= b }
            b *= b
            n >>= 1
            if result.isInfinite { return result }
        }
        return result
    }

    /// `value` with at most one decimal, e.g. 62 or 62.5.
    static func percent(_ value: Double) -> String {
        let tenths = (value * 10).rounded()
        return tenths.truncatingRemainder(dividingBy: 10) == 0
            ? String(Int64(tenths / 10)) : String(Double(Int64(tenths)) / 10)
    }
}
