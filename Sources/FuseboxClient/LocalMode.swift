import Atomics
import FuseboxAPI
import FuseboxRPC
import FuseboxCore
import FuseboxWire
import Logging

/// The breakers this client runs by itself: all of them, while fuseboxd is
/// out of reach beyond the staleness bound (local mode, fail-static), and one
/// breaker at a time when fuseboxd saw a trip rule fire on this client's
/// failures below the policy's quorum (a local open for the open period).
struct LocalMode: Sendable {
    let state: SessionState

    /// fuseboxd has been out of reach beyond the staleness bound: every
    /// guard's breaker starts running locally, from its policy.
    func enter() {
        guard state.setMode(.local) else { return }
        state.logger.warning(
            "fuseboxd unreachable beyond the staleness bound; breakers run locally",
            metadata: ["bound": "\(state.configuration.stalenessBound)"])
        let now = wallNow()
        for g in state.guards {
            let rt = g.runtime.load(ordering: .acquiring)
            if let breaker = rt.breaker, let cb = rt.policy.circuitBreaker { breaker.enterLocal(policy: cb, now: now) }
        }
    }

    /// Moves the local breakers on with time (OPEN → HALF_OPEN after the open period).
    func tick(now: Timestamp) {
        for breaker in state.breakers {
            for t in breaker.tickLocal(now: now) {
                state.transitioned(breaker, (t.from, t.status.state), generation: t.status.generation.value, reason: "local breaker: \(t.status.reason)")
            }
        }
    }

    /// A trip rule fired on this client's failures below the policy's quorum:
    /// this client's breaker opens for `open_ms`; the fleet's stays as it is.
    func openBelowQuorum(_ trip: Fusebox_V1_BelowQuorumTrip, now: Timestamp) {
        guard let ref = trip.breaker, let breaker = state.breaker(ref.registry.isEmpty ? "default" : ref.registry, ref.name) else { return }
        guard trip.openMs > 0 else {
            state.logger.debug("trip below quorum without an open period; ignored", metadata: ["breaker": "\(ref.name)", "reason": "\(trip.reason)"])
            return
        }
        let until = now.adding(milliseconds: Int64(trip.openMs))
        if let change = breaker.openBelowQuorum(until: until) {
            state.transitioned(
                breaker, change, generation: breaker.gate.snapshot.generation.value, reason: "local open below quorum: \(trip.reason)",
                clientOnly: true)
        } else {
            state.logger.debug(
                "local open below quorum extended",
                metadata: ["breaker": "\(breaker.name)", "registry": "\(breaker.registry)", "until": "\(until)", "reason": "\(trip.reason)"])
        }
    }

    /// Ends the local opens below quorum whose time has come and announces
    /// that those breakers follow the fleet again. (Calls already pass from
    /// the moment the time has come; this records and announces it, within a
    /// report interval.)
    func endLocalOpens(now: Timestamp) {
        for breaker in state.breakers {
            guard let change = breaker.endBelowQuorumOpen(now: now) else { continue }
            state.transitioned(
                breaker, change, generation: breaker.gate.snapshot.generation.value,
                reason: "local open below quorum ended; following the fleet", clientOnly: true)
        }
    }
}

/// Half-open probe permits: from the local breaker in local mode, else from fuseboxd.
struct PermitRequester: Sendable {
    let state: SessionState
    let client: RPCFailoverClient

    enum Answer {
        case granted(UInt64, local: Bool, generation: BreakerGeneration)
        case denied(retryAfter: Duration?, generation: BreakerGeneration)
    }

    /// Unreachable server, or no answer within `timeout`: denied (the call is
    /// rejected as if OPEN). A denial that shows a newer generation moves the
    /// breaker to it at once, without waiting for the watch.
    func acquire(_ breaker: SharedBreaker, generation: BreakerGeneration, timeout: Duration) async -> Answer {
        if let decision = breaker.acquireLocalPermit(now: wallNow()) {
            switch decision {
            case .granted(let grant): return .granted(grant.id, local: true, generation: grant.generation)
            case .denied(let d): return .denied(retryAfter: d.retryAfterMs.map { .milliseconds($0) }, generation: d.generation)
            }
        }
        var request = Fusebox_V1_AcquirePermitRequest()
        request.breaker = BreakerMapping.ref(breaker.registry, breaker.name)
        request.clientId = state.configuration.clientID
        request.generation = generation.value
        do {
            let response = try await client.unary(
                "fusebox.v1.BreakerService", "AcquirePermit", request, as: Fusebox_V1_AcquirePermitResponse.self,
                options: RPCCallOptions(timeout: timeout))
            state.contact()
            let current = BreakerGeneration(response.generation)
            if response.granted { return .granted(response.permitId, local: false, generation: current) }
            if let fleetState = BreakerMapping.state(response.state), current > generation {
                var status = BreakerStatus(state: fleetState, evaluatedState: fleetState, generation: current, since: wallNow(), reason: response.reason)
                status.until = response.retryAfterMs > 0 ? wallNow().adding(milliseconds: Int64(response.retryAfterMs)) : nil
                if let change = breaker.applyFleet(status) {
                    state.transitioned(breaker, change, generation: current.value, reason: response.reason)
                }
            }
            return .denied(retryAfter: response.retryAfterMs > 0 ? .milliseconds(Int64(response.retryAfterMs)) : nil, generation: current)
        } catch {
            return .denied(retryAfter: nil, generation: generation)
        }
    }
}
