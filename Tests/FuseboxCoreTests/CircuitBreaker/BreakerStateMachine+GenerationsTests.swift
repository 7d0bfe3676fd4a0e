import PropertyBased
import Testing

@testable import FuseboxCore

/// Permits belong to their generation; every transition is returned by the
/// event that took it; restoring publishes what it changes.
@Suite struct BreakerStateMachineGenerationsTests {
    /// A breaker tripped at the clock's time and half-opened 10 s later.
    private func halfOpen(_ policy: CircuitBreakerPolicy = .testing(), clock: inout ManualClock) -> BreakerStateMachine {
        var breaker = BreakerStateMachine(policy: policy, at: clock.now, random: SplitMix64(seed: 7))
        _ = breaker.report(OutcomeReport(client: "a", generation: breaker.status.generation, counts: counts(failure: 10)), at: clock.now)
        _ = breaker.advance(to: clock.advance(by: 10_000))
        return breaker
    }

    private func grant(_ breaker: inout BreakerStateMachine, at now: Timestamp) throws -> PermitGrant {
        let (decision, _) = breaker.acquirePermit(at: now)
        guard case .granted(let grant) = decision else { throw PermitRefused() }
        return grant
    }

    private struct PermitRefused: Error {}

    private func probe(_ permit: PermitGrant, _ outcome: Outcome, generation: BreakerGeneration) -> OutcomeReport {
        OutcomeReport(client: "p", generation: generation, probes: [ProbeResult(permitID: permit.id, outcome: outcome)])
    }

    // MARK: acquirePermit returns its step

    @Test func acquirePermitReturnsTheHalfOpenTransitionItTakes() throws {
        var clock = ManualClock()
        var breaker = BreakerStateMachine(policy: .testing(), at: clock.now, random: SplitMix64(seed: 7))
        _ = breaker.report(OutcomeReport(client: "a", generation: breaker.status.generation, counts: counts(failure: 10)), at: clock.now)
        // Nobody advanced the breaker: the permit request finds the OPEN period over.
        let (decision, step) = breaker.acquirePermit(at: clock.advance(by: 10_000))
        #expect(step.transitions.map(\.status.state) == [.halfOpen])
        #expect(step.transitions.first?.status.reason == "open period ended; probing with up to 2 calls")
        #expect(step.transitions.last?.status == breaker.status)
        guard case .granted(let grant) = decision else { Issue.record("permit expected"); return }
        #expect(grant.generation == breaker.status.generation)
    }

    @Test func acquirePermitReturnsTheExpiryReopeningItTakes() throws {
        var clock = ManualClock()
        var breaker = halfOpen(clock: &clock)
        let permit = try grant(&breaker, at: clock.now)
        let (decision, step) = breaker.acquirePermit(at: permit.expiresAt)
        #expect(step.transitions.map(\.status.state) == [.open])
        #expect(step.transitions.first?.status.reason == "probe permit expired after 5000 ms without a result")
        guard case .denied(let denial) = decision else { Issue.record("must be denied while OPEN"); return }
        #expect(denial.generation == breaker.status.generation)
    }

    // MARK: Permits belong to their generation

    /// Today's bug: a permit granted before an override outlived it, and its
    /// late failure (or its expiry) reopened the breaker once the override lifted.
    @Test func anOverrideVoidsOutstandingPermits() throws {
        var clock = ManualClock()
        var breaker = halfOpen(clock: &clock)
        let permit = try grant(&breaker, at: clock.now)
        _ = breaker.setOverride(.forcedOpen, reason: "incident 7", at: clock.advance(by: 100))
        #expect(breaker.permits.outstanding.isEmpty)
        let lifted = breaker.setOverride(nil, reason: "incident over", at: clock.advance(by: 100))
        #expect(lifted.transitions.map(\.status.state) == [.halfOpen])
        #expect(breaker.nextDeadline == nil, "no expiry of a void permit is scheduled")
        #expect(breaker.advance(to: permit.expiresAt.adding(milliseconds: 1)).transitions.isEmpty)
        let late = breaker.report(probe(permit, .failure, generation: breaker.status.generation), at: clock.now)
        #expect(late.transitions.isEmpty)
        #expect(breaker.status.state == .halfOpen)
        let next = try grant(&breaker, at: clock.now)
        #expect(next.generation == breaker.status.generation)
        #expect(next.id != permit.id)
    }

    @Test func anOverrideThatExpiresVoidsPermitsToo() throws {
        var clock = ManualClock()
        var breaker = halfOpen(.testing(permits: 1, successThreshold: 1), clock: &clock)
        let permit = try grant(&breaker, at: clock.now)
        _ = breaker.setOverride(.shadow, until: clock.now.adding(milliseconds: 1_000), reason: "tuning", at: clock.now)
        let lifted = breaker.advance(to: clock.advance(by: 1_000))
        #expect(lifted.transitions.first?.status.reason == "SHADOW override expired")
        // A success of the void permit would close a breaker that needs one.
        let late = breaker.report(probe(permit, .success, generation: breaker.status.generation), at: clock.now)
        #expect(late.transitions.isEmpty)
        #expect(breaker.permits.successes == 0)
        #expect(breaker.status.state == .halfOpen)
    }

    @Test func aResetVoidsPermitsOfTheHalfOpenPeriodBefore() throws {
        var clock = ManualClock()
        var breaker = halfOpen(.testing(permits: 1, successThreshold: 1), clock: &clock)
        let permit = try grant(&breaker, at: clock.now)
        _ = breaker.reset(reason: "operator reset", at: clock.now)
        _ = breaker.report(OutcomeReport(client: "a", generation: breaker.status.generation, counts: counts(failure: 10)), at: clock.now)
        _ = breaker.advance(to: clock.advance(by: 10_000))
        #expect(breaker.status.state == .halfOpen)
        let late = breaker.report(probe(permit, .success, generation: breaker.status.generation), at: clock.now)
        #expect(late.transitions.isEmpty)
        #expect(breaker.status.state == .halfOpen)
    }

    @Test func permitIDsEmbedTheGenerationAndNeverRepeat() {
        let t = Timestamp(milliseconds: 0)
        var permits = HalfOpenPermits(generation: BreakerGeneration(3))
        permits.issued = HalfOpenPermits.maxSerial - 1
        let last = permits.grant(limit: 5, maxWaitMs: 10, at: t)
        #expect(last?.id == (3 << 24) | HalfOpenPermits.maxSerial)
        #expect(permits.isExhausted)
        #expect(permits.grant(limit: 5, maxWaitMs: 10, at: t) == nil, "a 2^24th id would be the next generation's")
        var next = HalfOpenPermits(generation: BreakerGeneration(4))
        #expect(next.grant(limit: 5, maxWaitMs: 10, at: t)?.id == (4 << 24) | 1)
    }

    // MARK: Restoring

    @Test func restoringHalfOpenVoidsPermitsWithATruthfulNewGeneration() throws {
        var clock = ManualClock()
        var before = halfOpen(.testing(permits: 1, successThreshold: 1), clock: &clock)
        let permit = try grant(&before, at: clock.now)
        let persisted = before.status
        let restart = clock.advance(by: 2_000)
        var breaker = BreakerStateMachine(
            policy: .testing(permits: 1, successThreshold: 1), restoring: persisted, override: nil, overrideUntil: nil, at: restart)
        #expect(breaker.status == persisted, "nothing changes until the step is taken")
        #expect(breaker.nextDeadline == restart, "a timer-driven owner is told to take it at once")
        let step = breaker.restoreStep()
        let transition = try #require(step.transitions.first)
        #expect(step.transitions.count == 1)
        #expect(transition.from == .halfOpen)
        #expect(transition.status.state == .halfOpen && transition.status.evaluatedState == .halfOpen)
        #expect(transition.status.generation == persisted.generation.next)
        #expect(transition.status.reason == "fuseboxd restarted; probe permits granted before the restart are void")
        #expect(transition.status.since == restart)
        #expect(breaker.status == transition.status)
        #expect(breaker.restoreStep().transitions.isEmpty)
        #expect(breaker.nextDeadline == nil)
        // The pre-restart permit's result does not count, and its id is not reissued.
        let late = breaker.report(probe(permit, .success, generation: breaker.status.generation), at: clock.now)
        #expect(late.transitions.isEmpty)
        // Its probe may still be running for up to maxWaitMs (5 s): no new permit
        // before then, so the dependency never sees more than permittedCalls probes.
        let (held, _) = breaker.acquirePermit(at: clock.advance(by: 4_999))
        guard case .denied(let denial) = held else { Issue.record("a permit was granted while the void ones may be out"); return }
        #expect(denial.retryAfterMs == 1)
        #expect(denial.reason.contains("may still be out"))
        let fresh = try grant(&breaker, at: clock.advance(by: 1))
        #expect(fresh.id != permit.id)
        #expect(fresh.generation == breaker.status.generation)
    }

    @Test func anOwnerThatSkipsRestoreStepGetsTheTransitionFromTheNextEvent() throws {
        let clock = ManualClock()
        let persisted = BreakerStatus(
            state: .halfOpen, evaluatedState: .halfOpen, generation: BreakerGeneration(9), since: clock.now, reason: "x")
        var breaker = BreakerStateMachine(
            policy: .testing(), restoring: persisted, override: nil, overrideUntil: nil, at: clock.now, holdPermits: 0)
        let (decision, step) = breaker.acquirePermit(at: clock.now)
        #expect(step.transitions.map(\.status.generation) == [BreakerGeneration(10)])
        #expect(step.transitions.first?.status.reason == BreakerStateMachine.restartReason)
        guard case .granted(let grant) = decision else { Issue.record("permit expected"); return }
        #expect(grant.generation == BreakerGeneration(10))
    }

    @Test func restoringOpenOrOverriddenOwesNothing() {
        var clock = ManualClock()
        let until = clock.now.adding(milliseconds: 5_000)
        let open = BreakerStatus(
            state: .open, evaluatedState: .open, generation: BreakerGeneration(4), since: clock.now, until: until, reason: "x")
        var breaker = BreakerStateMachine(policy: .testing(), restoring: open, override: nil, overrideUntil: nil, at: clock.now)
        #expect(breaker.restoreStep().transitions.isEmpty)
        #expect(breaker.nextDeadline == until)
        #expect(breaker.advance(to: clock.advance(by: 5_000)).transitions.first?.status.reason
            == "open period ended; probing with up to 2 calls")
        // Under an override no permit could be granted, so no new generation is owed.
        let forced = BreakerStatus(
            state: .forcedOpen, evaluatedState: .halfOpen, generation: BreakerGeneration(6), since: clock.now, reason: "x")
        breaker = BreakerStateMachine(policy: .testing(), restoring: forced, override: .forcedOpen, overrideUntil: nil, at: clock.now)
        #expect(breaker.restoreStep().transitions.isEmpty)
        #expect(breaker.nextDeadline == nil)
        #expect(breaker.status == forced)
        let lifted = breaker.setOverride(nil, reason: "lift", at: clock.now)
        #expect(lifted.transitions.map(\.status.state) == [.halfOpen])
    }

    // MARK: successThreshold

    @Test func successThresholdDefaultsToPermittedCalls() throws {
        var half = HalfOpenPolicy()
        #expect(half.successThreshold == 1)
        half.permittedCalls = 3
        #expect(half.successThreshold == 3, "follows permittedCalls until set")
        half.successThreshold = 2
        #expect(half.successThreshold == 2)
        half.successThreshold = 0
        #expect(half.successThreshold == 3, "0 means the default, as in the Protos")
        var explicit = HalfOpenPolicy()
        explicit.permittedCalls = 3
        explicit.successThreshold = 3
        #expect(explicit == half && explicit.hashValue == half.hashValue, "the default equals the same value set")

        let policy = CircuitBreakerPolicy.testing(permits: 3, successThreshold: 0)
        var clock = ManualClock()
        var breaker = halfOpen(policy, clock: &clock)
        let permits = try (0..<3).map { _ in try grant(&breaker, at: clock.now) }
        for permit in permits.prefix(2) {
            #expect(breaker.report(probe(permit, .success, generation: breaker.status.generation), at: clock.now).transitions.isEmpty)
        }
        let step = breaker.report(probe(permits[2], .success, generation: breaker.status.generation), at: clock.now)
        #expect(step.transitions.first?.status.reason == "3 successful probes")

        var wrapped = Policy(name: "p")
        wrapped.circuitBreaker = policy
        #expect(PolicyValidator.violations(of: wrapped).isEmpty)
        for preset in Presets.all {
            guard let probing = preset.circuitBreaker?.halfOpen else { continue }
            #expect(probing.successThreshold == probing.permittedCalls, "\(preset.name)")
        }
    }

    // MARK: Properties

    /// Random reports, probes (of current and void permits), permit requests,
    /// time steps, deadlines, overrides, resets, policy updates and restarts:
    /// the generation grows by exactly the transitions returned, the status is
    /// the last one returned, nothing happens before `nextDeadline` and
    /// something at it, permits stay within the policy and belong to the
    /// current generation, ids never repeat, and results of void permits
    /// change nothing.
    @Test func nothingTransitionsSilently() async {
        await propertyCheck(count: 150, input: Gen.int(in: 0...9_999).array(of: 1...250), Gen.int(in: 1...4)) { ops, limit in
            var clock = ManualClock()
            let policies: [CircuitBreakerPolicy] = [
                .testing(minimumCalls: 4, openMs: 1_000, permits: limit, successThreshold: 0, maxWaitMs: 500),
                {
                    var p = CircuitBreakerPolicy.testing(failureRate: 40, minimumCalls: 3, consecutive: 3, openMs: 700, permits: 1, successThreshold: 2, maxWaitMs: 300)
                    p.window = WindowShape(kind: .count, size: 20, buckets: 5)
                    p.openDuration.multiplier = 2
                    p.openDuration.maxMs = 5_000
                    p.openDuration.jitterPercent = 10
                    return p
                }(),
            ]
            var breaker = BreakerStateMachine(policy: policies[0], at: clock.now, random: SplitMix64(seed: UInt64(ops.count)))
            var granted: [PermitGrant] = []
            var ids: Set<UInt64> = []

            func check(_ step: BreakerStep, _ what: String) {
                var expected = breaker.status.generation.value - UInt64(step.transitions.count)
                for t in step.transitions {
                    expected += 1
                    #expect(t.status.generation.value == expected, "\(what)")
                }
                if let last = step.transitions.last {
                    #expect(breaker.status == last.status, "\(what)")
                }
                #expect(breaker.permits.generation == breaker.status.generation, "\(what)")
                // A smaller limit from updatePolicy applies to later grants only.
                #expect(breaker.permits.outstanding.count <= limit, "\(what)")
            }

            for op in ops {
                let g = breaker.status.generation
                let r = op / 13  // the parameter; op % 13 picks the event
                switch op % 13 {
                case 0, 1:
                    let (decision, step) = breaker.acquirePermit(at: clock.now)
                    check(step, "acquirePermit")
                    if case .granted(let p) = decision {
                        #expect(!ids.contains(p.id), "permit id \(p.id) reissued")
                        #expect(p.generation == breaker.status.generation)
                        ids.insert(p.id)
                        granted.append(p)
                    }
                case 2 where !granted.isEmpty:
                    // A probe result, maybe of a permit voided since: time is
                    // applied first so that only the result can change anything.
                    let permit = granted[granted.count - 1 - r % min(granted.count, 4)]
                    let outcome: Outcome = [.failure, .success, .slowSuccess, .ignored][r % 4]
                    check(breaker.advance(to: clock.now), "advance")
                    let before = breaker.status
                    let successes = breaker.permits.successes
                    let step = breaker.report(
                        OutcomeReport(client: "c\(r % 3)", generation: breaker.status.generation, probes: [ProbeResult(permitID: permit.id, outcome: outcome)]),
                        at: clock.now)
                    check(step, "probe")
                    if permit.generation != before.generation {
                        #expect(step.transitions.isEmpty, "a void permit's result changed the breaker")
                        #expect(breaker.permits.successes == successes)
                    }
                case 3, 4:
                    check(breaker.report(
                        OutcomeReport(client: "c\(r % 3)", generation: r % 17 == 0 ? BreakerGeneration(0) : g,
                            counts: counts(success: UInt64(r % 4), failure: UInt64(r % 7), slow: UInt64(r % 2)),
                            trailingConsecutiveFailures: r % 5),
                        at: clock.now), "report")
                case 5:
                    check(breaker.advance(to: clock.advance(by: Int64(r % 400))), "advance")
                case 6:
                    if let deadline = breaker.nextDeadline {
                        if deadline > clock.now {
                            let early = breaker.advance(to: deadline.adding(milliseconds: -1))
                            #expect(early.transitions.isEmpty, "transition before nextDeadline")
                            _ = clock.advance(by: deadline.milliseconds(since: clock.now))
                        }
                        let due = breaker.advance(to: clock.now)
                        check(due, "deadline")
                        #expect(!due.transitions.isEmpty, "nothing happened at nextDeadline")
                    }
                case 7:
                    // Time passes with no event: the next event must take and return what it changed.
                    _ = clock.advance(by: Int64(r % 1_200))
                case 8 where r % 3 == 0:
                    let kind = [BreakerOverride.forcedOpen, .shadow, .disabled, .forcedClosed][r % 4]
                    let until = r % 5 == 0 ? nil : clock.now.adding(milliseconds: Int64(r % 900) + 1)
                    check(breaker.setOverride(kind, until: until, reason: "p", at: clock.now), "setOverride")
                case 9 where r % 2 == 0:
                    check(breaker.setOverride(nil, reason: "lift", at: clock.now), "lift")
                case 10 where r % 4 == 0:
                    check(breaker.reset(reason: "p", at: clock.now), "reset")
                case 11 where r % 2 == 0:
                    check(breaker.updatePolicy(policies[r % 4 == 0 ? 1 : 0], at: clock.now), "updatePolicy")
                case 12 where r % 2 == 0:
                    let override = breaker.activeOverride
                    breaker = BreakerStateMachine(
                        policy: breaker.policy, restoring: breaker.status, override: override?.kind,
                        overrideUntil: override?.until, at: clock.advance(by: Int64(r % 50)), random: SplitMix64(seed: UInt64(op)))
                    if r % 4 == 0 {
                        check(breaker.restoreStep(), "restoreStep")  // else the next event must return it
                    }
                default:
                    check(breaker.advance(to: clock.advance(by: 10)), "tick")
                }
            }
        }
    }
}
