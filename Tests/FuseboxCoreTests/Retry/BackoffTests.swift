import PropertyBased
import Testing

@testable import FuseboxCore

@Suite struct BackoffTests {
    private func backoff(_ kind: BackoffKind = .exponential, initial: Int64 = 100, max: Int64 = 2_000, multiplier: Double = 2, jitter: JitterKind) -> Backoff {
        var policy = BackoffPolicy()
        policy.kind = kind
        policy.initialMs = initial
        policy.maxMs = max
        policy.multiplier = multiplier
        return Backoff(policy: policy, jitter: jitter)
    }

    @Test func exponentialGrowsAndIsCappedBeforeJitter() {
        let b = backoff(jitter: .none)
        #expect((1...7).map { b.baseDelay(retry: $0) } == [100, 200, 400, 800, 1_600, 2_000, 2_000])
        #expect(backoff(.fixed, jitter: .none).baseDelay(retry: 5) == 100)
    }

    /// Every jitter kind stays within [0, cap], and the mean over many draws
    /// matches the formula (full: d/2, equal: 3d/4, proportional and none: d).
    @Test(arguments: [JitterKind.none, .full, .equal, .proportional, .decorrelated])
    func delaysStayWithinCapAndMeanMatches(jitter: JitterKind) async {
        await propertyCheck(count: 40, input: Gen.int(in: 1...6), Gen.int64(in: 10...500), Gen.uint64(in: 0...UInt64.max)) { retry, initial, seed in
            let b = backoff(initial: initial, max: 4_000, jitter: jitter)
            var random = SplitMix64(seed: seed)
            var previous: Int64?
            var sum = 0.0
            let draws = 4_000
            for _ in 0..<draws {
                let d = b.delay(retry: retry, previous: previous, using: &random)
                #expect(d >= 0 && d <= 4_000)
                if jitter == .decorrelated { #expect(d >= initial) }
                previous = d
                sum += Double(d)
            }
            let base = Double(b.baseDelay(retry: retry))
            let mean = sum / Double(draws)
            let expected: Double? =
                switch jitter {
                case .none: base
                case .full: base / 2
                case .equal: base * 0.75
                case .proportional: base < 4_000 / 1.2 ? base : nil  // unclamped only
                case .decorrelated: nil
                }
            if let expected {
                #expect(abs(mean - expected) <= max(2, expected * 0.05), "mean \(mean) vs \(expected)")
            }
        }
    }
}
