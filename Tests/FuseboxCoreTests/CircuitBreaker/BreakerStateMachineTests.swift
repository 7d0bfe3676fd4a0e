import PropertyBased
import Testing

@testable import FuseboxCore

@Suite struct BreakerStateMachineTests {
    private func makeBreaker(_ policy: CircuitBreakerPolicy = .testing(), clock: ManualClock = ManualClock()) -> BreakerStateMachine {
        BreakerStateMachine(policy: policy, at: clock.now, random: SplitMix64(seed: 7))
    }

    private func trip(_ breaker: inout BreakerStateMachine, at now: Timestamp, clients: [String] = ["a"]) -> BreakerStep {
        var step = BreakerStep()
        for client in clients {
            let s = breaker.report(OutcomeReport(client: client, generation: breaker.status.generation, counts: counts(failure: 10)), at: now)
            step.transitions += s.transitions
        }
        return step
    }

    @Test func tripsOpenWithReasonClientsAndNewGeneration() throws {
        var clock = ManualClock()
        var breaker = makeBreaker(clock: clock)
        _ = breaker.report(OutcomeReport(client: "b", generation: breaker.status.generation, counts: counts(success: 8)), at: clock.now)
        let step = breaker.report(
            OutcomeReport(client: "a", generation: breaker.status.generation, counts: counts(failure: 12)), at: clock.advance(by: 1))
        let transition = try #require(step.transitions.first)
        #expect(transition.from == .closed)
        #expect(transition.status.state == .open)
        #expect(transition.status.generation == BreakerGeneration(1))
        #expect(transition.status.reason == "failure rate 60% ≥ 50% over 20 calls from 2 clients")
        #expect(transition.contributingClients == ["a"])
        #expect(transition.status.until == clock.now.adding(milliseconds: 10_000))
        #expect(breaker.nextDeadline == clock.now.adding(milliseconds: 10_000))
        #expect(breaker.trips == 1)
    }

    @Test func openMovesToHalfOpenOnlyWhenTheOwnerAdvancesTime() throws {
        var clock = ManualClock()
        var breaker = makeBreaker(clock: clock)
        _ = trip(&breaker, at: clock.now)
        #expect(breaker.advance(to: clock.advance(by: 9_999)).transitions.isEmpty)
        #expect(breaker.status.state == .open)
        let step = breaker.advance(to: clock.advance(by: 1))
        #expect(step.transitions.map(\.status.state) == [.halfOpen])
        #expect(breaker.status.generation == BreakerGeneration(2))
    }

    @Test func halfOpenGrantsAtMostNPermitsAndClosesAfterSuccesses() throws {
        var clock = ManualClock()
        var breaker = makeBreaker(clock: clock)
        _ = trip(&breaker, at: clock.now)
        _ = breaker.advance(to: clock.advance(by: 10_000))
        guard case .granted(let p1) = breaker.acquirePermit(at: clock.now).decision,
            case .granted(let p2) = breaker.acquirePermit(at: clock.now).decision
        else { Issue.record("two permits expected"); return }
        guard case .denied(let denial) = breaker.acquirePermit(at: clock.now).decision else {
            Issue.record("third permit must be denied"); return
        }
        #expect(denial.reason == "2 of 2 permits outstanding")
        #expect(denial.retryAfterMs == 5_000)
        let generation = breaker.status.generation
        var step = breaker.report(OutcomeReport(client: "a", generation: generation, probes: [ProbeResult(permitID: p1.id, outcome: .success)]), at: clock.now)
        #expect(step.transitions.isEmpty)
        step = breaker.report(OutcomeReport(client: "b", generation: generation, probes: [ProbeResult(permitID: p2.id, outcome: .slowSuccess)]), at: clock.now)
        #expect(step.transitions.map(\.status.state) == [.closed])
        #expect(step.transitions.first?.status.reason == "2 successful probes")
    }

    @Test func failedProbeReopensWithGrowingDuration() throws {
        var clock = ManualClock()
        var policy = CircuitBreakerPolicy.testing()
        policy.openDuration.multiplier = 2
        policy.openDuration.maxMs = 30_000
        var breaker = makeBreaker(policy, clock: clock)
        _ = trip(&breaker, at: clock.now)
        var expected: [Int64] = []
        for _ in 0..<3 {
            _ = breaker.advance(to: clock.advance(by: 60_000))
            guard case .granted(let permit) = breaker.acquirePermit(at: clock.now).decision else { Issue.record("permit"); return }
            let step = breaker.report(
                OutcomeReport(generation: breaker.status.generation, probes: [ProbeResult(permitID: permit.id, outcome: .failure)]), at: clock.now)
            #expect(step.transitions.first?.status.state == .open)
            #expect(step.transitions.first?.status.reason == "probe failed")
            expected.append(try #require(breaker.status.until).milliseconds(since: clock.now))
        }
        #expect(expected == [20_000, 30_000, 30_000])  // 10 s × 2, × 4 capped at 30 s
    }

    @Test func expiredPermitCountsAsFailureAndItsLateResultIsIgnored() throws {
        var clock = ManualClock()
        var breaker = makeBreaker(clock: clock)
        _ = trip(&breaker, at: clock.now)
        _ = breaker.advance(to: clock.advance(by: 10_000))
        guard case .granted(let permit) = breaker.acquirePermit(at: clock.now).decision else { Issue.record("permit"); return }
        #expect(breaker.nextDeadline == permit.expiresAt)
        let step = breaker.advance(to: permit.expiresAt)
        #expect(step.transitions.map(\.status.state) == [.open])
        #expect(step.transitions.first?.status.reason == "probe permit expired after 5000 ms without a result")
        let generation = breaker.status.generation
        let late = breaker.report(OutcomeReport(generation: generation, probes: [ProbeResult(permitID: permit.id, outcome: .success)]), at: clock.now)
        #expect(late.transitions.isEmpty)
        #expect(breaker.status.state == .open)
    }

    @Test func staleOutcomesDoNotCount() {
        let clock = ManualClock()
        var breaker = makeBreaker(clock: clock)
        _ = breaker.setOverride(.disabled, reason: "test", at: clock.now)
        _ = breaker.setOverride(nil, reason: "lift", at: clock.now)
        #expect(breaker.status.generation == BreakerGeneration(2))
        let step = breaker.report(OutcomeReport(client: "a", generation: BreakerGeneration(1), counts: counts(failure: 50)), at: clock.now)
        #expect(step.stale)
        #expect(step.transitions.isEmpty)
        #expect(breaker.windowSnapshot(at: clock.now).counts.calls == 0)
    }

    @Test func batchesFromManyReportersMergeIntoOneWindow() {
        let clock = ManualClock()
        var breaker = makeBreaker(.testing(minimumCalls: 30), clock: clock)
        for client in ["a", "b", "c"] {
            _ = breaker.report(OutcomeReport(client: client, generation: breaker.status.generation, counts: counts(success: 6, failure: 4)), at: clock.now)
        }
        let snapshot = breaker.windowSnapshot(at: clock.now)
        #expect(snapshot.counts == counts(success: 18, failure: 12))
        #expect(snapshot.clients == 3)
        #expect(snapshot.failingClients == 3)
        #expect(breaker.contributions["b"] == counts(success: 6, failure: 4))
        #expect(breaker.status.state == .closed)
    }

    @Test func consecutiveFailuresRunAcrossBatchesAndResetOnSuccess() {
        let clock = ManualClock()
        var breaker = makeBreaker(.testing(failureRate: 0, consecutive: 5), clock: clock)
        let g = breaker.status.generation
        _ = breaker.report(OutcomeReport(client: "a", generation: g, counts: counts(failure: 3), trailingConsecutiveFailures: 3), at: clock.now)
        _ = breaker.report(OutcomeReport(client: "b", generation: g, counts: counts(success: 1, failure: 2), trailingConsecutiveFailures: 1), at: clock.now)
        #expect(breaker.currentConsecutiveFailures == 1)
        _ = breaker.report(OutcomeReport(client: "a", generation: g, counts: counts(failure: 3), trailingConsecutiveFailures: 6), at: clock.now)
        #expect(breaker.status.state == .closed)
        let step = breaker.report(OutcomeReport(client: "c", generation: g, counts: counts(failure: 1), trailingConsecutiveFailures: 1), at: clock.now)
        #expect(step.transitions.first?.status.reason == "5 consecutive failures ≥ 5 from 3 clients")
    }

    @Test func oneSickClientCannotTripABreakerThatNeedsTwo() {
        let clock = ManualClock()
        var breaker = makeBreaker(.testing(minimumClients: 2), clock: clock)
        var step = breaker.report(OutcomeReport(client: "sick", generation: breaker.status.generation, counts: counts(failure: 100)), at: clock.now)
        #expect(step.transitions.isEmpty)
        #expect(step.belowQuorum?.contains("only 1 of 2 required clients failing") == true)
        step = breaker.report(OutcomeReport(client: "other", generation: breaker.status.generation, counts: counts(failure: 1)), at: clock.now)
        #expect(step.transitions.map(\.status.state) == [.open])
        #expect(step.transitions.first?.contributingClients == ["other", "sick"])
    }

    @Test func forcedOpenRejectsAndIgnoresOutcomesUntilItExpires() {
        var clock = ManualClock()
        var breaker = makeBreaker(clock: clock)
        let until = clock.now.adding(milliseconds: 60_000)
        let step = breaker.setOverride(.forcedOpen, until: until, reason: "incident 42", at: clock.now)
        #expect(step.transitions.first?.status.state == .forcedOpen)
        #expect(step.transitions.first?.status.until == until)
        #expect(!breaker.status.state.allowsCallsWithoutPermit)
        _ = breaker.report(OutcomeReport(generation: breaker.status.generation, counts: counts(failure: 50)), at: clock.now)
        #expect(breaker.windowSnapshot(at: clock.now).counts.calls == 0)
        #expect(breaker.nextDeadline == until)
        let lifted = breaker.advance(to: clock.advance(by: 60_000))
        #expect(lifted.transitions.map(\.status.state) == [.closed])
        #expect(lifted.transitions.first?.status.reason == "FORCED_OPEN override expired")
    }

    @Test func forcedClosedAndDisabledMeasureButNeverTrip() {
        for kind in [BreakerOverride.forcedClosed, .disabled] {
            let clock = ManualClock()
            var breaker = makeBreaker(clock: clock)
            _ = breaker.setOverride(kind, reason: "maintenance", at: clock.now)
            let step = breaker.report(OutcomeReport(generation: breaker.status.generation, counts: counts(failure: 50)), at: clock.now)
            #expect(step.transitions.isEmpty)
            #expect(breaker.status.state == kind.state)
            #expect(breaker.windowSnapshot(at: clock.now).counts.failure == 50)
        }
    }

    @Test func shadowPublishesWhatItWouldDoAndNeverBlocks() {
        var clock = ManualClock()
        var breaker = makeBreaker(clock: clock)
        _ = breaker.setOverride(.shadow, reason: "tuning", at: clock.now)
        let step = breaker.report(OutcomeReport(generation: breaker.status.generation, counts: counts(failure: 10)), at: clock.now)
        #expect(step.transitions.first?.status.state == .shadow)
        #expect(step.transitions.first?.status.evaluatedState == .open)
        #expect(breaker.status.state.allowsCallsWithoutPermit)
        _ = breaker.advance(to: clock.advance(by: 10_000))
        #expect(breaker.status.evaluatedState == .halfOpen)
        // Ordinary calls stand in for probes in shadow mode.
        _ = breaker.report(OutcomeReport(generation: breaker.status.generation, counts: counts(success: 2)), at: clock.now)
        #expect(breaker.status.evaluatedState == .closed)
        #expect(breaker.status.state == .shadow)
    }

    @Test func resetClosesAndClearsEverything() {
        let clock = ManualClock()
        var breaker = makeBreaker(clock: clock)
        _ = trip(&breaker, at: clock.now)
        _ = breaker.setOverride(.forcedOpen, reason: "x", at: clock.now)
        let step = breaker.reset(reason: "operator reset", at: clock.now)
        #expect(step.transitions.first?.from == .forcedOpen)
        #expect(breaker.status.state == .closed)
        #expect(breaker.trips == 0)
        #expect(breaker.activeOverride == nil)
        #expect(breaker.nextDeadline == nil)
    }

    @Test func openDurationJitterStaysWithinItsBound() {
        var policy = OpenDurationPolicy()
        policy.baseMs = 10_000
        policy.jitterPercent = 20
        var random = SplitMix64(seed: 1)
        let durations = (0..<1_000).map { _ in policy.duration(reopenings: 0, using: &random) }
        #expect(durations.allSatisfy { (10_000...12_000).contains($0) })
        #expect(Set(durations).count > 100)
    }

    @Test func generationContinuesFromPersistedValue() {
        let clock = ManualClock()
        var breaker = BreakerStateMachine(policy: .testing(), generation: BreakerGeneration(41), at: clock.now, random: SplitMix64(seed: 1))
        _ = trip(&breaker, at: clock.now)
        #expect(breaker.status.generation == BreakerGeneration(42))
    }

    // MARK: Properties

    /// Any interleaving of acquires, probe results, expiries, reports and time
    /// never leaves more than N permits outstanding, and every transition's
    /// generation is exactly one above the previous.
    @Test func permitsStayBoundedAndGenerationsStrictlyIncrease() async {
        await propertyCheck(count: 200, input: Gen.int(in: 0...999).array(of: 1...300), Gen.int(in: 1...5)) { ops, permits in
            var clock = ManualClock()
            var breaker = BreakerStateMachine(
                policy: .testing(minimumCalls: 4, openMs: 1_000, permits: permits, successThreshold: permits, maxWaitMs: 500),
                at: clock.now, random: SplitMix64(seed: UInt64(ops.count)))
            var granted: [UInt64] = []
            var last = breaker.status.generation
            func check(_ step: BreakerStep) {
                for t in step.transitions {
                    #expect(t.status.generation == last.next)
                    last = t.status.generation
                }
            }
            for op in ops {
                let g = breaker.status.generation
                switch op % 8 {
                case 0, 1:
                    let (decision, step) = breaker.acquirePermit(at: clock.now)
                    check(step)
                    if case .granted(let p) = decision { granted.append(p.id) }
                case 2 where !granted.isEmpty:
                    let id = granted.remove(at: op % granted.count)
                    let outcome: Outcome = op % 3 == 0 ? .failure : (op % 3 == 1 ? .success : .ignored)
                    check(breaker.report(OutcomeReport(client: "c\(op % 4)", generation: g, probes: [ProbeResult(permitID: id, outcome: outcome)]), at: clock.now))
                case 3:
                    check(breaker.advance(to: clock.advance(by: Int64(op))))
                case 4:
                    check(breaker.report(OutcomeReport(client: "c\(op % 4)", generation: g, counts: counts(success: UInt64(op % 3), failure: UInt64(op % 5))), at: clock.now))
                case 5 where op % 40 == 5:
                    check(breaker.setOverride([BreakerOverride.forcedOpen, .shadow, .disabled, .forcedClosed][op % 4], until: clock.now.adding(milliseconds: 700), reason: "p", at: clock.now))
                case 6 where op % 50 == 6:
                    check(breaker.reset(reason: "p", at: clock.now))
                default:
                    check(breaker.advance(to: clock.advance(by: 10)))
                }
                #expect(breaker.permits.outstanding.count <= permits)
                #expect(breaker.status.generation == last)
            }
        }
    }
}
