import FuseboxCore
import PropertyBased
import Testing

@testable import FuseboxClient

@Suite struct BreakerGateTests {
    @Test func admitsByState() {
        let gate = BreakerGate()
        #expect(gate.admit() == .pass(generation: BreakerGeneration(0)))
        #expect(gate.apply(.open, generation: BreakerGeneration(1)))
        #expect(gate.admit() == .reject(state: .open, generation: BreakerGeneration(1)))
        #expect(gate.apply(.halfOpen, generation: BreakerGeneration(2)))
        #expect(gate.admit() == .needsPermit(generation: BreakerGeneration(2)))
        #expect(gate.apply(.shadow, generation: BreakerGeneration(3)))
        #expect(gate.admit() == .pass(generation: BreakerGeneration(3)), "shadow never blocks")
        #expect(gate.apply(.forcedOpen, generation: BreakerGeneration(4)))
        #expect(gate.admit() == .reject(state: .forcedOpen, generation: BreakerGeneration(4)))
    }

    @Test func neverGoesBackToAnOlderGeneration() {
        let gate = BreakerGate()
        #expect(gate.apply(.open, generation: BreakerGeneration(5)))
        #expect(!gate.apply(.closed, generation: BreakerGeneration(4)))
        #expect(!gate.apply(.closed, generation: BreakerGeneration(5)))
        #expect(gate.snapshot == .init(state: .open, generation: BreakerGeneration(5)))
    }

    /// Whatever order concurrent pushes arrive in, the gate ends at the newest generation.
    @Test func concurrentPushesKeepTheNewest() async {
        await propertyCheck(count: 50, input: Gen.int(in: 1...1_000).array(of: 1...200)) { generations in
            let gate = BreakerGate()
            await withTaskGroup(of: Void.self) { group in
                for g in generations {
                    group.addTask { gate.apply(g % 2 == 0 ? .open : .closed, generation: BreakerGeneration(UInt64(g))) }
                }
            }
            let newest = UInt64(generations.max() ?? 0)
            #expect(gate.snapshot.generation == BreakerGeneration(newest))
            #expect(gate.snapshot.state == (newest % 2 == 0 ? .open : .closed))
        }
    }
}

@Suite struct OutcomeTallyTests {
    @Test func countsDrainsAndTracksTrailingFailures() {
        let tally = OutcomeTally(generation: BreakerGeneration(3))
        let g = BreakerGeneration(3)
        for outcome in [Outcome.success, .failure, .slowSuccess, .failure, .slowFailure, .ignored] {
            tally.record(outcome, generation: g)
        }
        let first = tally.drain()
        #expect(first.counts == OutcomeCounts(success: 1, failure: 2, slowSuccess: 1, slowFailure: 1, ignored: 1))
        #expect(first.trailingConsecutiveFailures == 2)
        tally.record(.failure, generation: g)
        let second = tally.drain()
        #expect(second.counts == OutcomeCounts(failure: 1))
        #expect(second.trailingConsecutiveFailures == 3, "the run continues across drains")
    }

    @Test func outcomesOfAnotherGenerationAreDropped() {
        let tally = OutcomeTally(generation: BreakerGeneration(1))
        tally.record(.failure, generation: BreakerGeneration(0))
        tally.rotate(to: BreakerGeneration(2))
        tally.record(.failure, generation: BreakerGeneration(1))
        tally.record(.success, generation: BreakerGeneration(2))
        #expect(tally.drain().counts == OutcomeCounts(success: 1))
        #expect(tally.droppedOutcomes == 2)
    }

    /// Concurrent recorders and a concurrent drainer lose and duplicate nothing.
    @Test func concurrentRecordsAreAllCounted() async {
        let tally = OutcomeTally()
        let g = BreakerGeneration(0)
        let drained = await withTaskGroup(of: UInt64.self, returning: UInt64.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    for i in 0..<10_000 { tally.record(i % 4 == 0 ? .failure : .success, generation: g) }
                    return 0
                }
            }
            group.addTask {
                var total: UInt64 = 0
                for _ in 0..<100 {
                    total += tally.drain().counts.calls
                    await Task.yield()
                }
                return total
            }
            var sum: UInt64 = 0
            for await part in group { sum += part }
            return sum
        }
        #expect(drained + tally.drain().counts.calls == 80_000)
    }
}
