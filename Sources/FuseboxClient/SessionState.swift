import Atomics
import FuseboxCore
import Logging
import NIOConcurrencyHelpers

/// What the parts of a fleet session share: the breakers and guards of this
/// process, the policies held, fleet or local mode, and when fuseboxd last
/// answered. Every change of a breaker's state is announced from here, so it
/// is counted, logged and passed to the hooks the same way whatever caused it.
final class SessionState: Sendable {
    let configuration: FuseboxConfiguration
    let logger: Logger
    let gauges: ClientGauges

    struct BreakerKey: Hashable, Sendable {
        var registry: String
        var name: String
    }

    private struct Shared: Sendable {
        var breakers: [BreakerKey: SharedBreaker] = [:]
        var guards: [BreakerKey: Guard] = [:]
        var policies: PolicySnapshot
        var mode: ClientMode = .fleet
        /// Watch streams open now.
        var liveStreams = 0
        /// The last time fuseboxd answered (a watch event, a report).
        var lastContact: ContinuousClock.Instant = .now
        /// Per registry, the version the WatchRegistry stream last brought in
        /// this run: a reopened watch (on this or another endpoint) resumes
        /// after it. None before the first watch event: the first watch asks
        /// for a snapshot, since a cached version may come from another server's history.
        var watchedVersions: [String: UInt64] = [:]
    }

    // A pthread lock (NIO's), which ThreadSanitizer follows on its contended path too.
    private let shared: NIOLockedValueBox<Shared>

    init(configuration: FuseboxConfiguration, policies: PolicySnapshot, logger: Logger, gauges: ClientGauges) {
        self.configuration = configuration
        self.logger = logger
        self.gauges = gauges
        self.shared = NIOLockedValueBox(Shared(policies: policies))
        gauges.mode(.fleet)
        gauges.policySource(policies.source)
    }

    // MARK: Reading

    var policies: PolicySnapshot { shared.withLockedValue { $0.policies } }
    var mode: ClientMode { shared.withLockedValue { $0.mode } }
    var breakers: [SharedBreaker] { shared.withLockedValue { Array($0.breakers.values) } }
    var guards: [Guard] { shared.withLockedValue { Array($0.guards.values) } }

    func breakers(of registry: String) -> [SharedBreaker] {
        shared.withLockedValue { s in s.breakers.values.filter { $0.registry == registry } }
    }

    func breaker(_ registry: String, _ name: String) -> SharedBreaker? {
        shared.withLockedValue { $0.breakers[BreakerKey(registry: registry, name: name)] }
    }

    func guardFor(_ breaker: SharedBreaker) -> Guard? {
        shared.withLockedValue { $0.guards[BreakerKey(registry: breaker.registry, name: breaker.name)] }
    }

    /// How long the client's view of the fleet has not been confirmed by fuseboxd.
    var staleness: Duration {
        shared.withLockedValue { s in s.liveStreams > 0 ? .zero : ContinuousClock.now - s.lastContact }
    }

    /// Fleet mode, but with every watch stream down for longer than the
    /// staleness bound: time to run the breakers locally. (Only a client whose
    /// watch streams are down goes local: the snapshot a reconnecting watch
    /// receives is what brings it back.)
    var fleetIsStale: Bool {
        shared.withLockedValue { s in
            s.mode == .fleet && s.liveStreams == 0 && ContinuousClock.now - s.lastContact > configuration.stalenessBound
        }
    }

    // MARK: Contact

    var lastContact: ContinuousClock.Instant { shared.withLockedValue { $0.lastContact } }

    func contact() {
        shared.withLockedValue { $0.lastContact = .now }
    }

    func streamOpened() {
        shared.withLockedValue { s in
            s.liveStreams += 1
            s.lastContact = .now
        }
    }

    /// A watch stream ended. Until now it confirmed the client's view (a live
    /// stream, however quiet, is what staleness 0 means), so staleness counts
    /// from here: a stream that was quiet for long and then ends (its replica
    /// lost etcd, say) leaves the whole bound to reconnect elsewhere, instead
    /// of sending the client local at once.
    func streamClosed() {
        shared.withLockedValue { s in
            s.liveStreams -= 1
            if s.liveStreams == 0 { s.lastContact = .now }
        }
    }

    /// Sets the mode; true when it changed.
    func setMode(_ mode: ClientMode) -> Bool {
        let changed = shared.withLockedValue { s in
            defer { s.mode = mode }
            return s.mode != mode
        }
        if changed { gauges.mode(mode) }
        return changed
    }

    // MARK: Guards

    /// The guard `name` of `registry`, made on first use with `make`. An
    /// existing guard is returned as it is (with the policy it was made with).
    func guardNamed(_ name: String, policy policyName: String, registry: String, make: (Policy, SharedBreaker, ClientMode) -> Guard) -> Guard {
        let key = BreakerKey(registry: registry, name: name)
        return shared.withLockedValue { s in
            if let existing = s.guards[key] {
                if existing.policyName != policyName {
                    logger.warning(
                        "guard already exists with another policy; keeping the first",
                        metadata: ["guard": "\(name)", "policy": "\(existing.policyName)", "requested": "\(policyName)"])
                }
                return existing
            }
            let breaker = s.breakers[key] ?? SharedBreaker(registry: registry, name: name, policyName: policyName)
            s.breakers[key] = breaker
            let g = make(resolve(policyName, registry: registry, in: s.policies), breaker, s.mode)
            s.guards[key] = g
            return g
        }
    }

    /// Guards hold the session and the session held its guards: let go of
    /// them once the session ended, or every ended session stays in memory
    /// (guards still in the service's hands keep working against what they hold).
    func releaseGuards() {
        shared.withLockedValue { $0.guards = [:] }
    }

    /// The policy a guard runs with: the registry's, else the preset of that
    /// name, else one with no patterns (the call just runs).
    func resolve(_ name: String, registry: String, in policies: PolicySnapshot) -> Policy {
        if let p = policies.policy(name, registry: registry) { return p }
        if let preset = Presets.named(name) {
            logger.warning("policy not in registry; using the preset of that name", metadata: ["policy": "\(name)", "registry": "\(registry)"])
            return preset
        }
        logger.error("policy not found; calls run unguarded until it is created", metadata: ["policy": "\(name)", "registry": "\(registry)"])
        return Policy(name: name)
    }

    // MARK: Policies

    /// The policies of `registry` as a watch brought them: replaced whole
    /// (`version`), or with one policy added, changed or removed.
    enum PolicyUpdate {
        case replace([String: Policy])
        case put(Policy)
        case remove(String)
    }

    /// Applies `update` and the registry's new `version`, and swaps the
    /// changed policies into the registry's guards. Returns the registry's
    /// policies after it, and whether they changed.
    @discardableResult
    func apply(_ update: PolicyUpdate, registry: String, version: UInt64) -> (policies: [String: Policy], changed: Bool) {
        let (after, changed) = shared.withLockedValue { s -> ([String: Policy], Bool) in
            let before = s.policies.registries[registry]
            switch update {
            case .replace(let policies): s.policies.registries[registry] = policies
            case .put(let policy): s.policies.registries[registry, default: [:]][policy.name] = policy
            case .remove(let name): s.policies.registries[registry]?[name] = nil
            }
            s.policies.versions[registry] = version
            s.watchedVersions[registry] = version
            let after = s.policies.registries[registry] ?? [:]
            return (after, before != after)
        }
        if changed { policiesChanged(registry: registry) }
        return (after, changed)
    }

    /// The version the registry watch last brought in this run (nil before its first event).
    func watchedVersion(_ registry: String) -> UInt64? {
        shared.withLockedValue { $0.watchedVersions[registry] }
    }

    /// Swaps in changed policies for the guards of `registry`.
    private func policiesChanged(registry: String) {
        let (guards, snapshot) = shared.withLockedValue { s in (s.guards.filter { $0.key.registry == registry }.map(\.value), s.policies) }
        for g in guards {
            let policy = resolve(g.policyName, registry: registry, in: snapshot)
            let old = g.runtime.load(ordering: .acquiring)
            guard old.policy != policy else { continue }
            let breaker = breaker(registry, g.name)
            if let breaker, let cb = policy.circuitBreaker { breaker.updateLocalPolicy(cb, now: wallNow()) }
            g.runtime.store(
                GuardRuntime(
                    policy: policy, registry: g.registry, name: g.name, breaker: breaker, previous: old, now: wallNow(),
                    timer: g.session.deadlines),
                ordering: .releasing)
            logger.info("policy updated", metadata: ["guard": "\(g.name)", "policy": "\(policy.name)"])
        }
    }

    // MARK: Announcing

    /// Counts, logs and announces (`onStateChange`, `onEvent`) a change of a
    /// breaker's state. `clientOnly`: this client's breaker alone changed (a
    /// local open below quorum or its end); it is logged with its reason as the message.
    func transitioned(
        _ breaker: SharedBreaker, _ change: (from: BreakerState, to: BreakerState), generation: UInt64, reason: String,
        clientOnly: Bool = false, clients: [String] = []
    ) {
        guardFor(breaker)?.metrics.stateChanged(from: change.from, to: change.to)
        let metadata: Logger.Metadata = [
            "breaker": "\(breaker.name)", "registry": "\(breaker.registry)", "from": "\(change.from.displayName)",
            "to": "\(change.to.displayName)", "generation": "\(generation)", "reason": "\(reason)",
        ]
        if clientOnly {
            logger.notice("\(reason)", metadata: metadata)
        } else {
            logger.info("breaker state changed", metadata: metadata)
        }
        guard configuration.onStateChange != nil || configuration.onEvent != nil else { return }
        let announced = BreakerStateChange(
            registry: breaker.registry, breaker: breaker.name, from: change.from, to: change.to, generation: generation,
            reason: reason, clientOnly: clientOnly, contributingClients: clients)
        configuration.onStateChange?(announced)
        configuration.onEvent?(GuardEvent(registry: breaker.registry, guardName: breaker.name, kind: .stateChanged(announced)))
    }
}
