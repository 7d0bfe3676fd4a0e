import PropertyBased
import Testing

@testable import FuseboxCore

@Suite struct BulkheadStateMachineTests {
    @Test func admitsQueuesAndRejects() {
        var clock = ManualClock()
        var bulkhead = BulkheadStateMachine(policy: BulkheadPolicy(maxConcurrent: 2, maxQueued: 1, maxWaitMs: 100))
        #expect(bulkhead.acquire(1, at: clock.now) == .run)
        #expect(bulkhead.acquire(2, at: clock.now) == .run)
        #expect(bulkhead.acquire(3, at: clock.now) == .queued(deadline: clock.now.adding(milliseconds: 100)))
        #expect(bulkhead.acquire(4, at: clock.now) == .rejected)
        #expect(bulkhead.counts.active == 2 && bulkhead.counts.queued == 1 && bulkhead.counts.rejected == 1)
        var expired: [UInt64] = []
        #expect(bulkhead.release(at: clock.advance(by: 10), expired: &expired) == 3)
        #expect(bulkhead.counts.active == 2 && bulkhead.counts.queued == 0)
    }

    @Test func higherPriorityGoesFirstAndFIFOWithinAPriority() {
        let clock = ManualClock()
        var bulkhead = BulkheadStateMachine(policy: BulkheadPolicy(maxConcurrent: 1, maxQueued: 10))
        _ = bulkhead.acquire(0, at: clock.now)
        _ = bulkhead.acquire(1, priority: 0, at: clock.now)
        _ = bulkhead.acquire(2, priority: 5, at: clock.now)
        _ = bulkhead.acquire(3, priority: 0, at: clock.now)
        _ = bulkhead.acquire(4, priority: 5, at: clock.now)
        var expired: [UInt64] = []
        let order = (0..<4).compactMap { _ in bulkhead.release(at: clock.now, expired: &expired) }
        #expect(order == [2, 4, 1, 3])
    }

    @Test func waitersTimeOutAtTheirDeadline() {
        var clock = ManualClock()
        var bulkhead = BulkheadStateMachine(policy: BulkheadPolicy(maxConcurrent: 1, maxQueued: 5, maxWaitMs: 50))
        _ = bulkhead.acquire(0, at: clock.now)
        _ = bulkhead.acquire(1, at: clock.now)
        _ = bulkhead.acquire(2, at: clock.advance(by: 20))
        #expect(bulkhead.nextDeadline == clock.now.adding(milliseconds: 30))
        #expect(bulkhead.expire(at: clock.advance(by: 30)) == [1])
        let cancelled = bulkhead.cancel(2)
        let again = bulkhead.cancel(2)
        #expect(cancelled && !again)
        #expect(bulkhead.counts.queued == 0 && bulkhead.counts.rejected == 1)
    }

    /// Whatever the interleaving, never more than maxConcurrent run, and every
    /// queued call ends exactly once: started, expired or cancelled.
    @Test func neverOverAdmitsAndNeverLosesOrDuplicatesACall() async {
        await propertyCheck(count: 200, input: Gen.int(in: 0...999).array(of: 1...400), Gen.int(in: 1...4), Gen.int(in: 0...6)) { ops, maxConcurrent, maxQueued in
            var clock = ManualClock()
            var bulkhead = BulkheadStateMachine(policy: BulkheadPolicy(maxConcurrent: maxConcurrent, maxQueued: maxQueued, maxWaitMs: 100))
            var running: Set<UInt64> = []
            var waiting: Set<UInt64> = []
            var ended: [UInt64] = []
            var next: UInt64 = 0
            func started(_ id: UInt64?) {
                guard let id else { return }
                #expect(waiting.remove(id) != nil, "started a call that was not waiting")
                running.insert(id)
            }
            for op in ops {
                switch op % 5 {
                case 0, 1:
                    next += 1
                    switch bulkhead.acquire(next, priority: op % 3, at: clock.now) {
                    case .run: running.insert(next)
                    case .queued: waiting.insert(next)
                    case .rejected: ended.append(next)
                    }
                case 2 where !running.isEmpty:
                    let id = running.sorted()[op % running.count]
                    running.remove(id)
                    ended.append(id)
                    var expired: [UInt64] = []
                    started(bulkhead.release(at: clock.now, expired: &expired))
                    for id in expired {
                        #expect(waiting.remove(id) != nil, "expired a call that was not waiting")
                        ended.append(id)
                    }
                case 3 where !waiting.isEmpty:
                    let id = waiting.sorted()[op % waiting.count]
                    let cancelled = bulkhead.cancel(id)
                    #expect(cancelled)
                    waiting.remove(id)
                    ended.append(id)
                default:
                    for id in bulkhead.expire(at: clock.advance(by: Int64(op % 60))) {
                        #expect(waiting.remove(id) != nil, "expired a call that was not waiting")
                        ended.append(id)
                    }
                }
                #expect(running.count <= maxConcurrent)
                #expect(bulkhead.counts.active == running.count)
                #expect(bulkhead.counts.queued == waiting.count)
            }
            #expect(Set(ended).count == ended.count, "a call ended twice")
            #expect(Set(ended).isDisjoint(with: running.union(waiting)))
            #expect(ended.count + running.count + waiting.count == Int(next))
        }
    }
}
