import NIOConcurrencyHelpers
import Foundation
import FuseboxAPI
import FuseboxCore
import FuseboxWire
import Synchronization

/// Whether a client follows the fleet's breakers or, cut off from fuseboxd
/// for longer than the staleness bound, runs its own.
public enum ClientMode: String, Sendable, Hashable {
    /// Breaker states come from fuseboxd; outcomes go to it.
    case fleet
    /// fuseboxd has been unreachable too long: each breaker is decided by a
    /// local breaker with the same policy until the client reconnects.
    case local
}

/// Wall-clock time as the domain counts it (milliseconds since 1970), the
/// clock fuseboxd stamps statuses with too.
/// Read straight from `clock_gettime` (a guarded call reads it several
/// times; `Date` costs a conversion through `Double` each time).
func wallNow() -> Timestamp {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Timestamp(milliseconds: Int64(ts.tv_sec) * 1_000 + (Int64(ts.tv_nsec) + 500_000) / 1_000_000)
}

/// Monotonic time in nanoseconds, for measuring a call's latency.
func monotonicNanos() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// One breaker as this client holds it: the gate every call reads, the tally
/// every call writes, and (rarely touched, behind a lock) the probe results
/// waiting to be reported and the local breaker used in local mode.
final class SharedBreaker: Sendable {
    let registry: String
    let name: String
    /// The policy the breaker is bound to (reported with its outcomes).
    let policyName: String
    let gate: BreakerGate
    let tally: OutcomeTally
    /// Per-result call counters, moved into swift-metrics by the reporter.
    let calls = CallCounters()

    private struct Slow: Sendable {
        /// The status as fuseboxd last sent it.
        var fleetStatus: BreakerStatus?
        /// Half-open probe results not yet reported.
        var probes: [ProbeResult] = []
        /// The local breaker, in local mode only.
        var local: BreakerStateMachine?
        /// Local probe permits handed out (local mode).
        var localProbes: [ProbeResult] = []
    }

    private let slow = NIOLockedValueBox(Slow())

    init(registry: String, name: String, policyName: String) {
        self.registry = registry
        self.name = name
        self.policyName = policyName
        self.gate = BreakerGate()
        self.tally = OutcomeTally()
    }

    /// Applies a status from fuseboxd if it is newer than the one held.
    /// Returns the state change (old, new) if the gate moved.
    @discardableResult
    func applyFleet(_ status: BreakerStatus) -> (from: BreakerState, to: BreakerState)? {
        let before = gate.snapshot
        guard gate.apply(status.state, generation: status.generation) else { return nil }
        tally.rotate(to: status.generation)
        slow.withLockedValue { $0.fleetStatus = status }
        return (before.state, status.state)
    }

    /// Resynchronises with fuseboxd after local mode or a reconnect: the
    /// server's state wins, even over newer local generations. `status` nil:
    /// the server does not know the breaker yet, so it is CLOSED at generation 0.
    @discardableResult
    func resync(_ status: BreakerStatus?) -> (from: BreakerState, to: BreakerState)? {
        let before = gate.snapshot
        let state = status?.state ?? .closed
        let generation = status?.generation ?? BreakerGeneration(0)
        slow.withLockedValue { s in
            s.fleetStatus = status
            s.local = nil
            s.localProbes = []
            s.probes = []
        }
        guard before.state != state || before.generation != generation else { return nil }
        gate.force(state, generation: generation)
        tally.rotate(to: generation)
        return (before.state, state)
    }

    /// When the breaker may let calls through again, as far as the client
    /// knows: the later of the end of a local open below quorum and the end
    /// of the OPEN period (the fleet's, or the local breaker's in local mode).
    func retryAfter(now: Timestamp) -> Duration? {
        let localOpen = gate.localOpenUntil.flatMap { $0 > now ? $0 : nil }
        return slow.withLockedValue { s -> Duration? in
            let opened = s.local?.status.until ?? s.fleetStatus?.until
            let until = [localOpen, opened].compactMap { $0 }.max()
            return until.map { .milliseconds(max(0, $0.milliseconds(since: now))) }
        }
    }

    // MARK: Local open below quorum

    /// Opens this client's breaker alone until `until`: fuseboxd saw a trip
    /// rule fire on this client's failures below the policy's quorum, so the
    /// fleet's breaker stays as it is. A later `until` extends an open one.
    /// Returns the change to announce (the fleet's state → OPEN) when the
    /// breaker was not open locally before.
    func openBelowQuorum(until: Timestamp) -> (from: BreakerState, to: BreakerState)? {
        let fleet = gate.snapshot.state
        return gate.openLocally(until: until) ? (fleet, .open) : nil
    }

    /// Ends a local open whose time has come by `now`. Returns the change to
    /// announce (OPEN → the fleet's state) when it ended.
    func endBelowQuorumOpen(now: Timestamp) -> (from: BreakerState, to: BreakerState)? {
        gate.endLocalOpen(ifDueAt: now) ? (.open, gate.snapshot.state) : nil
    }

    // MARK: Probes

    /// Records the result of a half-open probe run under `permit`.
    func recordProbe(_ permit: UInt64, _ outcome: Outcome, local: Bool) {
        slow.withLockedValue { s in
            if local {
                s.localProbes.append(ProbeResult(permitID: permit, outcome: outcome))
            } else {
                s.probes.append(ProbeResult(permitID: permit, outcome: outcome))
            }
        }
    }

    /// Probe results to report, removed.
    func takeProbes() -> [ProbeResult] {
        slow.withLockedValue { s in
            defer { s.probes = [] }
            return s.probes
        }
    }

    // MARK: Local mode

    /// Starts a local breaker that continues from what fuseboxd last said: an
    /// OPEN breaker stays open until its time, a HALF_OPEN one half-opens
    /// again, an operator's override stays.
    func enterLocal(policy: CircuitBreakerPolicy, now: Timestamp) {
        slow.withLockedValue { s in
            let g = gate.snapshot
            let status = s.fleetStatus ?? BreakerStatus(state: g.state, evaluatedState: g.state, generation: g.generation, since: now, reason: "")
            let override: BreakerOverride? = switch status.state {
            case .forcedOpen: .forcedOpen
            case .forcedClosed: .forcedClosed
            case .disabled: .disabled
            case .shadow: .shadow
            default: nil
            }
            s.local = BreakerStateMachine(
                policy: policy, restoring: status, override: override, overrideUntil: override == nil ? nil : status.until, at: now,
                restartReason: "the local breaker took over from the fleet's HALF_OPEN state; it probes locally", holdPermits: 0)
            s.localProbes = []
        }
    }

    /// A policy change while local: the local breaker adopts it (state kept).
    func updateLocalPolicy(_ policy: CircuitBreakerPolicy, now: Timestamp) {
        slow.withLockedValue { s in
            guard var machine = s.local else { return }
            _ = machine.updatePolicy(policy, at: now)
            s.local = machine
        }
    }

    /// Asks the local breaker for a probe permit.
    func acquireLocalPermit(now: Timestamp) -> PermitDecision? {
        slow.withLockedValue { s -> PermitDecision? in
            guard var machine = s.local else { return nil }
            defer { s.local = machine }
            return machine.acquirePermit(at: now).decision
        }
    }

    /// Feeds what was counted since the last tick into the local breaker and
    /// moves the gate to its state. Returns the transitions.
    func tickLocal(now: Timestamp) -> [BreakerTransition] {
        let drained = tally.drain()
        return slow.withLockedValue { s -> [BreakerTransition] in
            guard var machine = s.local else { return [] }
            defer { s.local = machine }
            var transitions = machine.advance(to: now).transitions
            let report = OutcomeReport(
                client: nil, generation: machine.status.generation, counts: drained.counts,
                trailingConsecutiveFailures: Int(clamping: drained.trailingConsecutiveFailures), probes: s.localProbes)
            s.localProbes = []
            if drained.generation == machine.status.generation || !report.probes.isEmpty {
                transitions += machine.report(report, at: now).transitions
            }
            if let last = transitions.last {
                gate.force(last.status.state, generation: last.status.generation)
                tally.rotate(to: last.status.generation)
            }
            return transitions
        }
    }
}

/// Calls by result, counted with atomics on the call path and moved into
/// swift-metrics counters by the reporter.
final class CallCounters: Sendable {
    /// Successful calls, slow ones included.
    let successful = Atomic<UInt64>(0)
    /// Failed calls, slow ones included.
    let failed = Atomic<UInt64>(0)
    let slowSuccessful = Atomic<UInt64>(0)
    let slowFailed = Atomic<UInt64>(0)
    let ignored = Atomic<UInt64>(0)
    let notPermitted = Atomic<UInt64>(0)

    @inline(__always)
    func count(_ outcome: Outcome) {
        switch outcome {
        case .success: successful.add(1, ordering: .relaxed)
        case .failure: failed.add(1, ordering: .relaxed)
        case .slowSuccess:
            successful.add(1, ordering: .relaxed)
            slowSuccessful.add(1, ordering: .relaxed)
        case .slowFailure:
            failed.add(1, ordering: .relaxed)
            slowFailed.add(1, ordering: .relaxed)
        case .ignored: ignored.add(1, ordering: .relaxed)
        }
    }
}
