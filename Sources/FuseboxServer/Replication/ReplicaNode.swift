import Foundation
public import FuseboxAuthority
import FuseboxCore
public import FuseboxEtcd
import FuseboxRPC
public import FuseboxTLS
import CoreMetrics
import Logging
import NIOConcurrencyHelpers
public import NIOCore

/// One replica of a replicated fuseboxd: it keeps this replica's copies of
/// policies and breakers from etcd's watch, takes part in the election of
/// the one leader that decides breaker transitions, decides them while it
/// leads, and reports itself in `P/replicas/<id>` (docs/REPLICATION.md).
public final class ReplicaNode: Sendable {
    /// What a replica needs besides etcd.
    public struct Settings: Sendable {
        /// This replica's name, unique in the cluster.
        public var replicaId: String
        /// `host:port` other replicas reach this replica's gRPC port at;
        /// empty: the address the server binds (set by the server once bound).
        public var advertise: String
        /// TTL of the leader's lease, in seconds.
        public var leaseSeconds: Int64 = 5
        /// The server's version, for `fusebox cluster status`.
        public var version = "dev"
        /// TLS to the leader when forwarding (a certificate with the `replica` role).
        public var peerTLS: TLSConfiguration

        /// Settings.
        public init(replicaId: String, advertise: String, peerTLS: TLSConfiguration) {
            self.replicaId = replicaId
            self.advertise = advertise
            self.peerTLS = peerTLS
        }
    }

    /// Who decides, as this replica sees it now.
    public enum Role: Sendable {
        /// This replica: its coordinator.
        case leader(BreakerCoordinator)
        /// Another replica, at this address.
        case follower(id: String, address: String)
        /// Nobody known (an election is under way, or etcd is out of reach).
        case none(String)
    }

    struct State {
        var role: Role = .none("no leader elected yet")
        var leaseID: Int64 = 0
        /// stepDownForShutdown() was called: stand for election no more.
        var shuttingDown = false
        var etcdReachable = true
        var feedsLive = (policies: false, breakers: false)
        var forwarders: [String: RPCClient] = [:]
        var startedAtMs: Int64 = 0
        var advertise = ""
    }

    let client: EtcdClient
    /// The shared store (policies, audit).
    public let store: EtcdStore
    let settings: Settings
    let registry: PolicyRegistry
    /// This replica's copy of the breakers, from etcd's watch.
    public let mirror = BreakerMirror()
    /// Reports on their way to the leader while this replica follows.
    public let reports = ReportForwarder()
    let clock: any FleetClock
    let limits: AuthorityLimits
    let group: any EventLoopGroup
    let state = NIOLockedValueBox(State())
    let logger = Logger(label: "fusebox.replication")
    /// Told whenever this replica starts or stops serving (etcd reachable and its copies live).
    let onServingChange: @Sendable (Bool) -> Void

    /// A replica over `client`; `registry` must have been made with `shared: true` over `store`.
    public init(
        client: EtcdClient, store: EtcdStore, registry: PolicyRegistry, settings: Settings, clock: any FleetClock,
        limits: AuthorityLimits, group: any EventLoopGroup, onServingChange: @escaping @Sendable (Bool) -> Void
    ) {
        self.client = client
        self.store = store
        self.registry = registry
        self.settings = settings
        self.clock = clock
        self.limits = limits
        self.group = group
        self.onServingChange = onServingChange
        state.withLockedValue { s in
            s.startedAtMs = clock.now().milliseconds
            s.advertise = settings.advertise
        }
        registry.addListener { [weak self] change in
            guard case .leader(let coordinator)? = self?.role else { return }
            coordinator.policyChanged(registry: change.registry, name: change.name, policy: change.after)
        }
    }

    /// The address other replicas reach this one at.
    public var advertise: String {
        get { state.withLockedValue { $0.advertise } }
        set { state.withLockedValue { $0.advertise = newValue } }
    }

    /// Who decides now.
    public var role: Role { state.withLockedValue { $0.role } }

    /// When this replica started (Unix milliseconds).
    public var startedAtMs: Int64 { state.withLockedValue { $0.startedAtMs } }

    /// True while this replica can serve: etcd answers and both copies follow its watch.
    /// Whether etcd answers this replica (its feeds may still be catching up).
    public var etcdReachable: Bool { state.withLockedValue { $0.etcdReachable } }

    public var isServing: Bool {
        state.withLockedValue { $0.etcdReachable && $0.feedsLive.policies && $0.feedsLive.breakers }
    }

    /// Runs until cancelled: the feeds, the election and the heartbeat.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.runPolicyFeed() }
            group.addTask { await self.runBreakerFeed() }
            group.addTask { await self.runElection() }
            group.addTask { await self.runHeartbeat() }
            group.addTask { await self.reports.run() }
            group.addTask { await self.mirror.hub.runResync() }
        }
        let clients = state.withLockedValue { s -> [RPCClient] in
            defer { s.forwarders = [:] }
            return Array(s.forwarders.values)
        }
        for c in clients { await c.close() }
    }

    /// Gives up leadership at once (revokes the lease), so that another
    /// replica takes over within about a second instead of the lease TTL.
    /// From then on this replica no longer stands for election, so a
    /// draining replica is not elected again while its calls finish.
    public func stepDownForShutdown() async {
        let lease = state.withLockedValue { s in
            s.shuttingDown = true
            return s.leaseID
        }
        guard lease != 0 else { return }
        try? await client.revokeLease(lease)
    }

    // MARK: Serving

    func setEtcdReachable(_ reachable: Bool) {
        let changed = state.withLockedValue { s -> Bool? in
            let before = s.etcdReachable && s.feedsLive.policies && s.feedsLive.breakers
            s.etcdReachable = reachable
            let after = s.etcdReachable && s.feedsLive.policies && s.feedsLive.breakers
            return before == after ? nil : after
        }
        if let changed { announce(changed) }
    }

    func setFeed(policies: Bool? = nil, breakers: Bool? = nil) {
        let changed = state.withLockedValue { s -> Bool? in
            let before = s.etcdReachable && s.feedsLive.policies && s.feedsLive.breakers
            if let policies { s.feedsLive.policies = policies }
            if let breakers { s.feedsLive.breakers = breakers }
            let after = s.etcdReachable && s.feedsLive.policies && s.feedsLive.breakers
            return before == after ? nil : after
        }
        if let changed { announce(changed) }
    }

    private func announce(_ serving: Bool) {
        Gauge(label: "fusebox_replica_serving").record(serving ? 1 : 0)
        if serving {
            logger.info("serving: etcd answers and this replica's copies follow its watch", metadata: ["replica": "\(settings.replicaId)"])
        } else {
            logger.error("NOT serving: etcd is out of reach or this replica's copies stopped following it", metadata: ["replica": "\(settings.replicaId)"])
        }
        if !serving { mirror.hub.finishAll() }
        onServingChange(serving)
    }

    // MARK: Election

    private func runElection() async {
        while !Task.isCancelled {
            if state.withLockedValue({ $0.shuttingDown }) {
                // Shutting down: stand no more; follow until serve() ends.
                try? await Task.sleep(for: .milliseconds(300))
                continue
            }
            do throws(EtcdError) {
                let lease = try await client.grantLease(ttl: settings.leaseSeconds)
                state.withLockedValue { $0.leaseID = lease.id }
                setEtcdReachable(true)
                let keepAlive = client.keepAlive(lease)
                let reason = await withTaskGroup(of: String.self) { group -> String in
                    group.addTask {
                        do throws(EtcdError) {
                            try await keepAlive.run()
                            return "stopped"
                        } catch {
                            return "the lease was lost: \(error.message)"
                        }
                    }
                    group.addTask { await self.campaign(lease) }
                    let first = await group.next() ?? "stopped"
                    group.cancelAll()
                    return first
                }
                stepDown(reason)
                if reason.hasPrefix("the lease was lost") { setEtcdReachable(false) }
            } catch {
                setEtcdReachable(false)
                stepDown("no lease: \(error.message)")
                logger.error("cannot get a lease from etcd", metadata: ["error": "\(error.message)"])
            }
            state.withLockedValue { $0.leaseID = 0 }
            try? await Task.sleep(for: .milliseconds(300))
        }
    }

    /// Tries to lead; follows the leader meanwhile. Returns why it stopped.
    private func campaign(_ lease: EtcdLease) async -> String {
        let key = store.layout.leader
        while !Task.isCancelled {
            let me = EtcdRecords.Leader(id: settings.replicaId, address: advertise, sinceMs: clock.now().milliseconds)
            let result: EtcdTxnResult
            do {
                let value = try EtcdRecords.encode(me)
                result = try await client.txn([.absent(key)], success: [.put(key: key, value: value, lease: lease.id)], failure: [.range(key: key)])
            } catch let error as EtcdError {
                setEtcdReachable(false)
                try? await Task.sleep(for: .milliseconds(500))
                logger.warning("election: etcd did not answer", metadata: ["error": "\(error.message)"])
                continue
            } catch {
                return "the leader record could not be encoded: \(error)"
            }
            setEtcdReachable(true)
            if result.succeeded {
                if state.withLockedValue({ $0.shuttingDown }) {
                    // Won as the shutdown began: give the key straight back.
                    _ = try? await client.deleteRange(key)
                    return "shutting down"
                }
                return await lead(createRevision: result.revision)
            }
            var current: EtcdKeyValue?
            if case .range(let r)? = result.results.first { current = r.kvs.first }
            guard let current else { continue }
            if current.lease == lease.id {
                // Ours, from a term that ended without the key going: remove it and stand again.
                _ = try? await client.deleteRange(key)
                continue
            }
            if let leader = try? EtcdRecords.decode(EtcdRecords.Leader.self, current.value, key: key) {
                setRole(.follower(id: leader.id, address: leader.address))
            }
            // Until the key is gone (its lease ended, or the leader stepped
            // down), or a while has passed: then the transaction above looks
            // again, so a watch that went quiet cannot keep the fleet leaderless.
            await waitForDeletion(of: key, after: current.modRevision, atMost: .seconds(max(3 * settings.leaseSeconds, 5)))
        }
        return "stopped"
    }

    /// Returns when `key` is deleted after `revision`, its watch ends, or `atMost` passes.
    private func waitForDeletion(of key: [UInt8], after revision: Int64, atMost limit: Duration? = nil) async {
        let watch = client.watch(key, startRevision: revision + 1)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await watch.run() }
            group.addTask {
                for await event in watch {
                    if case .delete = event { return }
                    if case .compacted = event { return }
                }
            }
            if let limit { group.addTask { try? await Task.sleep(for: limit) } }
            await group.next()
            group.cancelAll()
        }
    }

    /// Leads until the leader key goes, a commit is fenced, or the task is cancelled.
    private func lead(createRevision: Int64) async -> String {
        let fencedBell = Doorbell()
        let fenced = store.breakerStore(leaderRevision: createRevision) { fencedBell.ring() }
        let coordinator: BreakerCoordinator
        do {
            coordinator = try await BreakerCoordinator(store: fenced, clock: clock, limits: limits) { [registry] in
                registry.policy(registry: $0, name: $1)
            }
        } catch {
            _ = try? await client.deleteRange(store.layout.leader)
            return "could not load the breakers to lead: \(error.message)"
        }
        setRole(.leader(coordinator))
        logger.info("this replica leads: it decides every breaker transition", metadata: [
            "replica": "\(settings.replicaId)", "fence": "\(createRevision)", "breakers": "\(coordinator.breakerCount)",
        ])
        let reason = await withTaskGroup(of: String.self) { group -> String in
            group.addTask {
                await coordinator.run()
                return "stopped"
            }
            group.addTask {
                await self.waitForDeletion(of: self.store.layout.leader, after: createRevision)
                return "the leader key is gone"
            }
            group.addTask {
                _ = await fencedBell.wait()
                return "a write was fenced: another replica leads"
            }
            let first = await group.next() ?? "stopped"
            group.cancelAll()
            return first
        }
        coordinator.shutdown()
        return reason
    }

    private func stepDown(_ reason: String) {
        let was = state.withLockedValue { s -> Bool in
            defer { s.role = .none(reason) }
            if case .leader = s.role { return true }
            return false
        }
        Gauge(label: "fusebox_replica_leader").record(0)
        if was { logger.warning("this replica stopped leading", metadata: ["replica": "\(settings.replicaId)", "reason": "\(reason)"]) }
    }

    private func setRole(_ role: Role) {
        state.withLockedValue { $0.role = role }
        if case .leader = role { Gauge(label: "fusebox_replica_leader").record(1) } else { Gauge(label: "fusebox_replica_leader").record(0) }
    }

    // MARK: Forwarding

    /// The client to the leader at `address` (one connection per leader, reused).
    func forwarder(to address: String) throws(RPCError) -> RPCClient {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
            throw RPCError(.unavailable, "the leader's address \"\(address)\" is not host:port")
        }
        var configuration = RPCClientConfiguration(host: String(address[..<colon]), port: port, tls: settings.peerTLS)
        configuration.connectTimeout = .seconds(2)
        configuration.backoffInitial = .milliseconds(100)
        configuration.backoffMaximum = .seconds(1)
        // Made under the lock (no I/O but reading the TLS files once), so that
        // two calls at once never make two connections to one leader.
        let made = state.withLockedValue { s -> Result<RPCClient, RPCError> in
            if let existing = s.forwarders[address] { return .success(existing) }
            do {
                let client = try RPCClient(configuration: configuration, group: group)
                s.forwarders[address] = client
                return .success(client)
            } catch {
                return .failure(RPCError(.unavailable, "cannot set up TLS to the leader: \(error)"))
            }
        }
        return try made.get()
    }
}
