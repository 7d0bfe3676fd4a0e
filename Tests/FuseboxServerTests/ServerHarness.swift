import Foundation
import FuseboxAPI
import FuseboxCore
import FuseboxRPC
import FuseboxServer
import FuseboxTLS
import FuseboxTesting
import FuseboxWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest

/// Collects the events of a WatchBreakers stream.
final class BreakerWatch: Sendable {
    let events = NIOLockedValueBox<[Fusebox_V1_BreakerEvent]>([])
    let task: Task<Void, any Error>

    init(client: RPCClient, registry: String = "", prefix: String = "") {
        var request = Fusebox_V1_WatchBreakersRequest()
        request.registry = registry
        request.namePrefix = prefix
        let events = self.events
        task = Task {
            try await client.serverStreaming("fusebox.v1.BreakerService", "WatchBreakers", request, as: Fusebox_V1_BreakerEvent.self) { event in
                events.withLockedValue { $0.append(event) }
            }
        }
    }

    /// Whether the stream's first event, the snapshot, has arrived: from then on
    /// the server holds the subscription, and no transition can fall before it.
    var subscribed: Bool {
        events.withLockedValue { all in
            if case .snapshot? = all.first?.event { return true }
            return false
        }
    }

    /// (state, generation) of every transition seen.
    var transitions: [(Fusebox_V1_BreakerState, UInt64)] {
        events.withLockedValue { all in
            all.compactMap { event in
                guard case .transition(let t)? = event.event, let status = t.status else { return nil }
                return (status.state, status.generation)
            }
        }
    }
}

func ref(_ name: String, registry: String = "default") -> Fusebox_V1_BreakerRef {
    var r = Fusebox_V1_BreakerRef()
    r.registry = registry
    r.name = name
    return r
}

func batch(client: String, breaker: String, policy: String = "fleet", generation: UInt64, success: UInt64 = 0, failure: UInt64 = 0, probes: [(UInt64, Fusebox_V1_Outcome)] = []) -> Fusebox_V1_OutcomeBatch {
    var entry = Fusebox_V1_BreakerOutcomes()
    entry.breaker = ref(breaker)
    entry.policy = policy
    entry.generation = generation
    var counts = Fusebox_V1_OutcomeCounts()
    counts.success = success
    counts.failure = failure
    entry.counts = counts
    entry.trailingConsecutiveFailures = failure > 0 && success == 0 ? UInt32(failure) : 0
    entry.probes = probes.map { id, outcome in
        var p = Fusebox_V1_ProbeResult()
        p.permitId = id
        p.outcome = outcome
        return p
    }
    var b = Fusebox_V1_OutcomeBatch()
    b.clientId = client
    b.breakers = [entry]
    return b
}

/// A policy `name` whose breaker trips at 50% failures of at least 10 calls.
func fleetPolicy(_ name: String, minimumClients: Int = 1, permits: Int = 2, openMs: Int64 = 300, maxWaitMs: Int64 = 30_000) -> Policy {
    var policy = Policy(name: name)
    var cb = CircuitBreakerPolicy()
    cb.failureRateThreshold = 50
    cb.minimumCalls = 10
    cb.minimumClients = minimumClients
    cb.openDuration.baseMs = openMs
    cb.halfOpen.permittedCalls = permits
    cb.halfOpen.successThreshold = permits
    cb.halfOpen.maxWaitMs = maxWaitMs
    policy.circuitBreaker = cb
    return policy
}

/// Stores `fleetPolicy(name, …)` in `default` through the API.
func putFleetPolicy(_ admin: RPCClient, name: String = "fleet", minimumClients: Int = 1, permits: Int = 2, openMs: Int64 = 300, maxWaitMs: Int64 = 30_000) async throws {
    try await ServerHarness.put(fleetPolicy(name, minimumClients: minimumClients, permits: permits, openMs: openMs, maxWaitMs: maxWaitMs), with: admin)
}
