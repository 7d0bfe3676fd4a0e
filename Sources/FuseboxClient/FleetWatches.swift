import Foundation
import FuseboxAPI
import FuseboxCore
import FuseboxRPC
import FuseboxWire
import Logging
import NIOConcurrencyHelpers

/// Runs a stream again and again while the session runs: exponential
/// backoff with full jitter between failures, reset once a stream brought
/// something from fuseboxd.
struct Reconnecting: Sendable {
    let what: String
    let state: SessionState
    /// Stops reconnecting once true.
    var until: @Sendable () -> Bool = { false }

    func run(_ body: @Sendable () async throws -> Void) async {
        var failures = 0
        while !Task.isCancelled, !until() {
            let opened = state.lastContact
            do {
                try await body()
            } catch {
                state.logger.debug("stream ended", metadata: ["stream": "\(what)", "error": "\(error)"])
            }
            if Task.isCancelled || until() { return }
            if state.lastContact > opened { failures = 0 }
            failures += 1
            let configuration = state.configuration
            let delay = Self.delay(
                failures: failures, base: configuration.reconnectBackoffBase, cap: configuration.reconnectBackoffMaximum)
            try? await Task.sleep(for: delay)
        }
    }

    /// Exponential backoff with full jitter: uniform in
    /// [0, min(cap, base × 2^(failures-1))], so a fleet that lost its server
    /// together does not come back in lockstep.
    ///
    /// No generator of ours is passed `inout` here: SystemRandomNumberGenerator
    /// has no size, so every `inout` access to one has the same address (its
    /// type metadata), and ThreadSanitizer reports two delays computed at once
    /// as a race (CI, fresh9, fresh10). The standard library's own draw is not
    /// instrumented.
    static func delay(failures: Int, base: Duration, cap: Duration) -> Duration {
        .milliseconds(Int64(Double.random(in: 0...ceiling(failures: failures, base: base, cap: cap))))
    }

    /// The same with `random` (tests pass a seeded one).
    static func delay(failures: Int, base: Duration, cap: Duration, using random: inout some RandomNumberGenerator) -> Duration {
        .milliseconds(Int64(Double.random(in: 0...ceiling(failures: failures, base: base, cap: cap), using: &random)))
    }

    private static func ceiling(failures: Int, base: Duration, cap: Duration) -> Double {
        max(min(Double(cap.milliseconds), Double(base.milliseconds) * pow(2, Double(min(max(failures, 1) - 1, 30)))), 1)
    }
}

/// The WatchBreakers stream of one registry: the fleet's breaker states,
/// pushed by fuseboxd. Every (re)opened watch, on whichever endpoint is
/// current, starts with a snapshot, which replaces what this client holds;
/// transitions after it apply only when newer.
struct BreakerWatch: Sendable {
    let registry: String
    let state: SessionState
    let client: RPCFailoverClient

    /// Watches until cancelled, reopening the stream after it ends.
    func run() async {
        await Reconnecting(what: "WatchBreakers(\(registry))", state: state).run { try await watchOnce() }
    }

    private func watchOnce() async throws {
        var request = Fusebox_V1_WatchBreakersRequest()
        request.registry = registry
        let opened = NIOLockedValueBox(false)
        defer { if opened.withLockedValue({ $0 }) { state.streamClosed() } }
        try await client.serverStreaming(
            "fusebox.v1.BreakerService", "WatchBreakers", request, as: Fusebox_V1_BreakerEvent.self
        ) { event in
            if !opened.withLockedValue({ o in defer { o = true }; return o }) { state.streamOpened() }
            state.contact()
            switch event.event {
            case .snapshot(let snapshot):
                resync(snapshot.breakers)
            case .transition(let transition):
                guard let status = transition.status, let ref = status.breaker,
                    let breaker = state.breaker(ref.registry, ref.name)
                else { return }
                if let change = breaker.applyFleet(BreakerMapping.status(status)) {
                    state.transitioned(
                        breaker, change, generation: status.generation, reason: transition.reason, clients: transition.contributingClients)
                }
            case nil:
                break
            }
        }
    }

    /// Applies the server's snapshot of the registry: its state wins over
    /// anything held, local breakers included.
    func resync(_ statuses: [Fusebox_V1_BreakerStatus]) {
        var byName: [String: Fusebox_V1_BreakerStatus] = [:]
        for s in statuses { if let ref = s.breaker { byName[ref.name] = s } }
        for breaker in state.breakers(of: registry) {
            let status = byName[breaker.name].map(BreakerMapping.status)
            if let change = breaker.resync(status) {
                state.transitioned(breaker, change, generation: status?.generation.value ?? 0, reason: "resynchronised with fuseboxd")
            }
        }
        if state.setMode(.fleet) {
            state.logger.notice("fuseboxd reachable again; breakers follow the fleet", metadata: ["registry": "\(registry)"])
        }
    }
}

/// The WatchRegistry stream of one registry: its policies, pushed by
/// fuseboxd, swapped into the guards that use them and written to the disk
/// cache for a start without the server.
struct RegistryWatch: Sendable {
    let registry: String
    let state: SessionState
    let client: RPCFailoverClient

    /// Watches until cancelled, reopening the stream after it ends.
    func run() async {
        await Reconnecting(what: "WatchRegistry(\(registry))", state: state).run { try await watchOnce() }
    }

    /// The first watch starts from a snapshot; a reopened one (after a lost
    /// connection, on whichever endpoint is current) asks for the changes
    /// after the last version it saw (`from_version`), and the server answers
    /// with those changes, or a snapshot when its history no longer reaches back that far.
    private func watchOnce() async throws {
        var request = Fusebox_V1_WatchRegistryRequest()
        request.registry = registry
        request.fromVersion = state.watchedVersion(registry) ?? 0
        try await client.serverStreaming(
            "fusebox.v1.RegistryService", "WatchRegistry", request, as: Fusebox_V1_RegistryEvent.self
        ) { event in
            state.contact()
            switch event.event {
            case .snapshot(let snapshot): replace(snapshot)
            case .change(let change): apply(change)
            case nil: return
            }
        }
    }

    private func replace(_ snapshot: Fusebox_V1_RegistrySnapshot) {
        var policies: [String: Policy] = [:]
        for record in snapshot.policies {
            guard let wire = record.policy else { continue }
            switch PolicyMapping.policy(from: wire) {
            case .success(let p): policies[p.name] = p
            case .failure(let e): state.logger.error("ignoring a policy this SDK cannot read", metadata: ["error": "\(e)"])
            }
        }
        state.apply(.replace(policies), registry: registry, version: snapshot.version)
        writeCache(snapshot)
    }

    private func apply(_ change: Fusebox_V1_PolicyChange) {
        let update: SessionState.PolicyUpdate
        if let policy = change.after.flatMap({ try? PolicyMapping.policy(from: $0).get() }) {
            update = .put(policy)
        } else {
            update = .remove(change.policyName)
        }
        let (policies, _) = state.apply(update, registry: registry, version: change.version)
        var snapshot = Fusebox_V1_RegistrySnapshot()
        snapshot.version = change.version
        snapshot.policies = policies.values.sorted { $0.name < $1.name }.map { p in
            var r = Fusebox_V1_PolicyRecord()
            r.policy = PolicyMapping.wire(p)
            return r
        }
        writeCache(snapshot)
    }

    private func writeCache(_ snapshot: Fusebox_V1_RegistrySnapshot) {
        do {
            try PolicySnapshot.writeCache(snapshot, registry: registry, cacheDirectory: state.configuration.cacheDirectory)
        } catch {
            state.logger.warning(
                "could not write the policy cache; a start without fuseboxd would use an older one",
                metadata: ["registry": "\(registry)", "directory": "\(state.configuration.cacheDirectory)", "error": "\(error)"])
        }
    }
}

extension Duration {
    var milliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
