import PropertyBased
import Testing

@testable import FuseboxCore

@Suite struct SlidingWindowTests {
    @Test func countWindowKeepsTheLastNCalls() {
        var window = SlidingWindow(shape: WindowShape(kind: .count, size: 4))
        let t = Timestamp(milliseconds: 0)
        for outcome in [Outcome.failure, .failure, .success, .success, .success, .failure] {
            window.record(outcome, at: t)
        }
        // Last four: success, success, success, failure.
        let snapshot = window.snapshot(at: t)
        #expect(snapshot.counts == counts(success: 3, failure: 1))
        #expect(snapshot.failureRate == 25)
    }

    @Test func timeWindowDropsExpiredBuckets() {
        var window = SlidingWindow(shape: WindowShape(kind: .time, size: 10, buckets: 10))
        window.record(.failure, at: Timestamp(milliseconds: 0))
        window.record(.success, at: Timestamp(milliseconds: 5_500))
        #expect(window.snapshot(at: Timestamp(milliseconds: 9_999)).counts == counts(success: 1, failure: 1))
        #expect(window.snapshot(at: Timestamp(milliseconds: 10_000)).counts == counts(success: 1))
        #expect(window.snapshot(at: Timestamp(milliseconds: 16_000)).counts == counts())
        // A long idle gap clears everything in one step.
        window.record(.failure, at: Timestamp(milliseconds: 1_000_000))
        #expect(window.snapshot(at: Timestamp(milliseconds: 1_000_000)).counts == counts(failure: 1))
    }

    @Test func failingClientsAreCountedDistinctlyAndExpire() {
        var window = SlidingWindow(shape: WindowShape(kind: .count, size: 3))
        let t = Timestamp(milliseconds: 0)
        window.record(.failure, client: "a", at: t)
        window.record(.failure, client: "a", at: t)
        window.record(.failure, client: "b", at: t)
        #expect(window.snapshot(at: t).failingClients == 2)
        window.record(.success, client: "c", at: t)  // evicts a's first failure
        window.record(.success, client: "c", at: t)  // evicts a's second failure
        let snapshot = window.snapshot(at: t)
        #expect(snapshot.failingClients == 1)
        #expect(snapshot.clients == 2)
        #expect(window.contributions["a"] == nil)
        #expect(window.contributions["c"] == counts(success: 2))
    }

    /// A count window's snapshot equals a naive recount of the calls it should
    /// hold: of the n calls (ignored outcomes take no slot and are not kept),
    /// the last (buckets-1) × capacity + ((n-1) mod capacity) + 1.
    @Test func countSnapshotEqualsNaiveRecount() async {
        await propertyCheck(
            count: 300, input: Gen<Outcome>.case.array(of: 0...400), Gen.int(in: 1...50), Gen.int(in: 1...10)
        ) { outcomes, size, bucketsWanted in
            let shape = WindowShape(kind: .count, size: size, buckets: min(bucketsWanted, size))
            var window = SlidingWindow(shape: shape)
            let t = Timestamp(milliseconds: 0)
            for outcome in outcomes { window.record(outcome, at: t) }
            let calls = outcomes.filter { $0 != .ignored }
            let capacity = Int(shape.bucketCapacity)
            let n = calls.count
            let held = n == 0 ? 0 : min(n, (shape.buckets - 1) * capacity + (n - 1) % capacity + 1)
            var expected = OutcomeCounts()
            for outcome in calls.suffix(held) { expected.add(outcome) }
            #expect(window.snapshot(at: t).counts == expected)
        }
    }

    /// A time window's snapshot equals a naive recount of the calls whose
    /// bucket lies within the last `buckets` buckets.
    @Test func timeSnapshotEqualsNaiveRecount() async {
        await propertyCheck(
            count: 300, input: Gen.int(in: 0...2_000).array(of: 0...300), Gen<Outcome>.case.array(of: 300), Gen.int(in: 1...20)
        ) { gaps, outcomes, size in
            let shape = WindowShape(kind: .time, size: size)
            var window = SlidingWindow(shape: shape)
            var now: Int64 = 0
            var events: [(Int64, Outcome)] = []
            for (gap, outcome) in zip(gaps, outcomes) {
                now += Int64(gap)
                window.record(outcome, at: Timestamp(milliseconds: now))
                events.append((now, outcome))
            }
            let width = shape.bucketMs
            var expected = OutcomeCounts()
            for (t, outcome) in events where outcome != .ignored && t / width > now / width - Int64(shape.buckets) {
                expected.add(outcome)
            }
            #expect(window.snapshot(at: Timestamp(milliseconds: now)).counts == expected)
        }
    }
}
