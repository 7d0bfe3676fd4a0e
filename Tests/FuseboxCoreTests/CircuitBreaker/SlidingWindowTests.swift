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

    /// A batch takes as many calls' room as it holds: a 100-call window fed
    /// 1,000-call batches holds 100 calls, not 100 batches.
    @Test func countWindowCountsCallsNotBatches() {
        var window = SlidingWindow(shape: WindowShape(kind: .count, size: 100, buckets: 10))
        let t = Timestamp(milliseconds: 0)
        for _ in 0..<100 { window.record(counts(success: 700, failure: 300), client: "a", at: t) }
        #expect(window.snapshot(at: t).counts == counts(success: 70, failure: 30))
        window.record(counts(failure: 40), client: "b", at: t)
        let snapshot = window.snapshot(at: t)
        #expect(snapshot.counts == counts(success: 42, failure: 58))
        #expect(snapshot.failingClients == 2)
        #expect(window.contributions["a"] == counts(success: 42, failure: 18))
    }

    /// Dropping part of a bucket keeps its calls apportioned by largest
    /// remainder, ties going to the anonymous calls, then clients by name,
    /// then success, failure, slow success, slow failure.
    @Test func partlyDroppedBucketIsApportionedByLargestRemainder() {
        var window = SlidingWindow(shape: WindowShape(kind: .count, size: 10, buckets: 1))
        let t = Timestamp(milliseconds: 0)
        window.record(counts(success: 1, failure: 3), client: "a", at: t)
        window.record(counts(success: 3), client: "b", at: t)
        window.record(counts(slow: 3), client: "c", at: t)
        window.record(counts(failure: 5), client: "d", at: t)
        // Keep 5 of the first bucket's 10: quotas a 0.5 + 1.5, b 1.5, c 1.5;
        // floors give 3, the two remaining calls go to a's success and failure.
        let snapshot = window.snapshot(at: t)
        #expect(snapshot.counts == counts(success: 2, failure: 7, slow: 1))
        #expect(window.contributions["a"] == counts(success: 1, failure: 2))
        #expect(window.contributions["b"] == counts(success: 1))
        #expect(window.contributions["c"] == counts(slow: 1))
        #expect(snapshot.failingClients == 2 && snapshot.slowClients == 1 && snapshot.clients == 4)
        // Later trims apportion from the bucket as it was before the first, so
        // rounding does not drift: keeping 2 of 10 gives a 1 failure, b 1 success.
        window.record(counts(success: 3), client: "e", at: t)
        #expect(window.contributions["a"] == counts(failure: 1))
        #expect(window.contributions["b"] == counts(success: 1))
        #expect(window.contributions["c"] == nil)
        #expect(window.snapshot(at: t).counts == counts(success: 4, failure: 6))
    }

    @Test func apportionSumsToTheKeptCallsAndStaysWithinOneOfTheQuota() async {
        await propertyCheck(count: 300, input: Gen.uint64(in: 0...50).array(of: 4...16), Gen.uint64(in: 0...UInt64.max)) { values, seed in
            let cells = stride(from: 0, to: values.count - 3, by: 4).map {
                OutcomeCounts(success: values[$0], failure: values[$0 + 1], slowSuccess: values[$0 + 2], slowFailure: values[$0 + 3])
            }
            let total = cells.reduce(UInt64(0)) { $0 + $1.calls }
            let kept = total == 0 ? 0 : seed % (total + 1)
            let shares = SlidingWindow.apportion(kept, over: cells)
            #expect(shares.reduce(UInt64(0)) { $0 + $1.calls } == kept)
            for (cell, share) in zip(cells, shares) {
                for outcome in [Outcome.success, .failure, .slowSuccess, .slowFailure] {
                    let quota = total == 0 ? 0 : Double(kept) * Double(cell[outcome]) / Double(total)
                    #expect(abs(Double(share[outcome]) - quota) < 1)
                }
            }
        }
    }

    /// Random batches (1 call to three windows' worth, from four clients and
    /// anonymous reporters) against a naive model that keeps the last `size`
    /// calls, a batch counting as its calls evenly spread: the window holds
    /// exactly min(recorded, size) calls, its totals are consistent integers,
    /// and every count, per outcome and per client, is within one bucket's
    /// capacity of the model (within one call when a bucket holds one call).
    @Test func countWindowMatchesANaiveModelOfTheLastCalls() async {
        await propertyCheck(
            count: 300, input: Gen.uint64(in: 0...UInt64.max).array(of: 0...120), Gen.int(in: 1...60), Gen.int(in: 1...12)
        ) { seeds, size, bucketsWanted in
            let shape = WindowShape(kind: .count, size: size, buckets: min(bucketsWanted, size))
            let capacity = Double(shape.bucketCapacity)
            var window = SlidingWindow(shape: shape)
            let t = Timestamp(milliseconds: 0)
            var batches: [(client: String?, counts: OutcomeCounts)] = []
            for seed in seeds {
                var random = SplitMix64(seed: seed)
                let calls = random.next() % 4 == 0 ? 1 + random.next() % UInt64(3 * size) : 1 + random.next() % 5
                var batch = OutcomeCounts()
                for _ in 0..<calls {
                    batch.add([Outcome.success, .failure, .slowSuccess, .slowFailure][Int(random.next() % 4)])
                }
                batch.ignored = random.next() % 3
                let pick = Int(random.next() % 5)
                let client: String? = pick == 4 ? nil : "c\(pick)"
                window.record(batch, client: client, at: t)
                batches.append((client, batch))
            }
            // The model: the newest batches whole, the oldest one in part.
            var model: [String: [Outcome: Double]] = [:]
            var room = Double(size)
            for (client, batch) in batches.reversed() where room > 0 {
                let fraction = min(1, room / Double(batch.calls))
                for outcome in [Outcome.success, .failure, .slowSuccess, .slowFailure] {
                    model[client ?? "", default: [:]][outcome, default: 0] += Double(batch[outcome]) * fraction
                }
                room -= Double(batch.calls) * fraction
            }
            let snapshot = window.snapshot(at: t)
            let recorded = batches.reduce(UInt64(0)) { $0 + $1.counts.calls }
            #expect(snapshot.counts.calls == min(recorded, UInt64(size)))
            #expect(snapshot.counts.ignored == 0)
            var named = OutcomeCounts()
            for counts in window.contributions.values { named.add(counts) }
            for outcome in [Outcome.success, .failure, .slowSuccess, .slowFailure] {
                #expect(named[outcome] <= snapshot.counts[outcome])
                let expected = model.values.reduce(0) { $0 + ($1[outcome] ?? 0) }
                #expect(abs(Double(snapshot.counts[outcome]) - expected) < capacity, "\(outcome)")
                for (client, counts) in window.contributions {
                    #expect(abs(Double(counts[outcome]) - (model[client]?[outcome] ?? 0)) < capacity, "\(client) \(outcome)")
                }
            }
            #expect(window.contributions.values.allSatisfy { $0.calls > 0 })
            #expect(snapshot.clients == window.contributions.count)
            #expect(snapshot.failingClients == window.contributions.values.filter { $0.failures > 0 }.count)
            #expect(snapshot.slowClients == window.contributions.values.filter { $0.slowCalls > 0 }.count)
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
