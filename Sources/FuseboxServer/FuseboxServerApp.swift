import Foundation
import FuseboxCore
public import FuseboxAuthority
import FuseboxWire
import NIOConcurrencyHelpers
public import FuseboxRPC
public import FuseboxTLS
public import NIOCore
import NIOPosix
public import FuseboxEtcd

/// A whole Fusebox control plane: store, registries, breaker coordinator,
/// admin, authorization and health, served over gRPC with TLS.
public final class FuseboxServerApp: Sendable {
    /// What the server needs to start.
    public struct Configuration: Sendable {
        /// Directory of the SQLite database.
        public var dataDirectory: String
        /// gRPC listener settings.
        public var rpc = RPCServerConfiguration()
        /// TLS settings (server role).
        public var tls: TLSConfiguration
        /// Identity-to-role rules.
        public var roleRules: [RoleRule] = Authorizer.developmentRules
        /// Development mode: no client certificates; every caller gets this role.
        public var insecureAnonymousRole: Role?
        /// Load the presets into `default` on first start. Default true.
        public var seedPresets = true
        /// Bounds on breakers.
        public var limits = AuthorityLimits()
        /// Replicated mode: etcd instead of SQLite (nil: the embedded default).
        public var replication: Replication?
        /// Alert sinks and rules (none: no alerts are sent; the fleet health
        /// report is served either way).
        public var alerts = AlertsConfiguration()

        /// Replicated mode's settings (docs/REPLICATION.md).
        public struct Replication: Sendable {
            /// etcd's members and TLS.
            public var etcd: EtcdConfiguration
            /// Key prefix in etcd.
            public var prefix = "/fusebox"
            /// Audit entries kept in etcd.
            public var auditRetention = 100_000
            /// This replica.
            public var node: ReplicaNode.Settings

            /// Settings.
            public init(etcd: EtcdConfiguration, node: ReplicaNode.Settings) {
                self.etcd = etcd
                self.node = node
            }
        }
        /// What `GetClusterStatus` answers from; nil: this server alone
        /// (`StandaloneClusterStatus`), named `replicaId`.
        public var clusterStatus: (any ClusterStatusSource)?
        /// This server's name in the cluster status; nil: the host name.
        public var replicaId: String?

        /// A configuration.
        public init(dataDirectory: String, tls: TLSConfiguration) {
            self.dataDirectory = dataDirectory
            self.tls = tls
        }
    }

    /// The gRPC server.
    public let rpc: RPCServer
    /// The registries.
    public let registry: PolicyRegistry
    /// The fleet's breakers, as callers see them.
    public let authority: any BreakerAuthority
    /// The embedded mode's coordinator (nil in replicated mode).
    public let coordinator: BreakerCoordinator?
    /// Replicated mode: this replica (nil in the embedded mode).
    public let replica: ReplicaNode?
    /// The TLS material, reloadable.
    public let tls: TLSContextProvider
    /// Health.
    public let health: HealthService
    /// The fleet's health report and the alert rules.
    public let monitor: FleetMonitor
    private let store: SQLiteStore?
    private let etcd: (client: EtcdClient, group: MultiThreadedEventLoopGroup)?
    private let auditQueue: AuditQueue
    let audit: AuditLog
    private let stopping = NIOLockedValueBox(false)
    /// Whether `serve()` runs: `shutdown()` closes the store and etcd only
    /// once what `serve()` runs has stopped using them.
    private let serving = NIOLockedValueBox(ServeState.notStarted)
    private enum ServeState { case notStarted, running, ended }

    /// Opens the store, loads state, seeds presets, and binds the listener.
    /// `clock` is the authority's time (tests pass a manual one).
    public static func start(
        _ configuration: Configuration, group: any EventLoopGroup, version: String = "dev", clock: any FleetClock = SystemFleetClock()
    ) async throws -> FuseboxServerApp {
        var tls = configuration.tls
        if configuration.insecureAnonymousRole != nil { tls.requireClientCertificate = false }
        let authorizer = Authorizer(rules: configuration.roleRules, anonymousRole: configuration.insecureAnonymousRole)
        let health = HealthService()
        let services = [
            "fusebox.v1.RegistryService", "fusebox.v1.BreakerService", "fusebox.v1.AdminService", "fusebox.v1.FleetHealthService",
            "fusebox.v1.AlertService",
        ]
        let sqlite: SQLiteStore?
        let etcd: (client: EtcdClient, group: MultiThreadedEventLoopGroup)?
        let registry: PolicyRegistry
        let coordinator: BreakerCoordinator?
        let replica: ReplicaNode?
        let authority: any BreakerAuthority
        let auditStore: any AuditStore
        if let replication = configuration.replication {
            // etcd gets a thread of its own: the lease's renewals must not wait
            // behind a burst of watch deliveries on the server's event loops.
            let etcdGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let client: EtcdClient
            do { client = try EtcdClient(configuration: replication.etcd, group: etcdGroup) } catch {
                try? await etcdGroup.shutdownGracefully()
                throw error
            }
            let store = EtcdStore(
                client: client, prefix: replication.prefix, auditRetention: replication.auditRetention,
                maxPolicyBytes: configuration.limits.maxPolicyBytes)
            registry = try await PolicyRegistry(store: store, clock: clock, shared: true, limits: configuration.limits)
            let node = ReplicaNode(
                client: client, store: store, registry: registry, settings: replication.node, clock: clock,
                limits: configuration.limits, group: group
            ) { [weak registry] serving in
                for service in services + [""] { health.setStatus(serving ? .serving : .notServing, for: service) }
                // Watchers of a copy that no longer follows etcd are let go, so
                // that clients move to another replica or run locally.
                if !serving { registry?.hub.finishAll() }
            }
            (sqlite, etcd, coordinator, replica, authority, auditStore) = (nil, (client, etcdGroup), nil, node, ReplicatedAuthority(node: node), store)
        } else {
            let store = try await SQLiteStore.open(directory: configuration.dataDirectory)
            registry = try await PolicyRegistry(store: store, clock: clock, limits: configuration.limits)
            let local = try await BreakerCoordinator(store: store, clock: clock, limits: configuration.limits) { registry.policy(registry: $0, name: $1) }
            registry.addListener { [weak local] change in
                local?.policyChanged(registry: change.registry, name: change.name, policy: change.after)
            }
            (sqlite, etcd, coordinator, replica, authority, auditStore) = (store, nil, local, nil, local, store)
        }
        if configuration.seedPresets { try await registry.seedPresetsIfEmpty() }
        // Entries written off the request path, by serve(): certificate refusals
        // at the handshake, and on a replica without etcd every entry written on
        // its own (AuditLog.append).
        // At most 1,000 wait; under a flood the newest are kept. Each one
        // dropped, or not written by the shutdown's limit, is counted as an
        // audit write that failed.
        let auditQueue = AuditQueue(capacity: 1_000)
        let audit = AuditLog(
            store: auditStore, authorizer: authorizer, clock: clock, queue: auditQueue,
            storeUnreachable: { replica.map { !$0.etcdReachable } ?? false })
        var router = RPCRouter()
        var registryService = RegistryService(registry: registry, authorizer: authorizer, audit: audit)
        registryService.routing = replica
        registryService.maxPolicyBytes = configuration.limits.maxPolicyBytes
        registryService.register(on: &router)
        var breakers = BreakerService(authority: authority, authorizer: authorizer)
        breakers.routing = replica
        breakers.forwarder = replica?.reports
        breakers.register(on: &router)
        let bound = NIOLockedValueBox<RPCServer?>(nil)
        let host = configuration.rpc.host
        let clusterStatus = configuration.clusterStatus ?? replica.map { ReplicatedClusterStatus(node: $0) } ?? StandaloneClusterStatus(
            replicaId: configuration.replicaId ?? ServerConfiguration.replicaId(fromHostName: ProcessInfo.processInfo.hostName),
            version: version, startedAtMs: clock.now().milliseconds, clock: clock,
            address: { bound.withLockedValue { $0 }.map { RPCEndpoint(host: host, port: $0.port).description } ?? "" },
            serving: { health.status() == .serving })
        let replicaId = configuration.replicaId ?? ServerConfiguration.replicaId(fromHostName: ProcessInfo.processInfo.hostName)
        let monitor = FleetMonitor(
            sources: FleetMonitor.Sources(
                authority: authority,
                leading: {
                    if let coordinator { return coordinator }
                    if case .leader(let c)? = replica?.role { return c }
                    return nil
                },
                store: {
                    if let replica, !replica.isServing { return (false, "etcd cannot be reached (no quorum)") }
                    let problem = coordinator?.storeProblem
                    return (problem == nil, problem ?? "")
                },
                cluster: clusterStatus, clock: clock, answeredBy: replica?.settings.replicaId ?? replicaId),
            alerts: configuration.alerts)
        var fleetHealth = FleetHealthService(monitor: monitor, authorizer: authorizer)
        fleetHealth.routing = replica
        fleetHealth.register(on: &router)
        var admin = AdminService(authority: authority, audit: audit, clusterStatus: clusterStatus)
        admin.routing = replica
        admin.register(on: &router)
        health.register(on: &router)
        for service in services { health.setStatus(.serving, for: service) }
        var rpcConfiguration = configuration.rpc
        let auditable: Set<TLSError.Code> = [.missingClientCertificate, .untrustedCertificate, .certificateExpired, .certificateNotYetValid, .certificateRejected]
        rpcConfiguration.onCallCompleted = { path, code, elapsed in
            ServerMetrics.rpc(path: path, code: code, nanoseconds: elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        }
        rpcConfiguration.mapError = WireConversions.withDetails
        rpcConfiguration.onLimitReached = { ServerMetrics.limitReached($0) }
        rpcConfiguration.onTLSFailure = { error, remote in
            guard auditable.contains(error.code) else { return }
            audit.enqueue(AuditRecord(
                atMs: clock.now().milliseconds, actor: nil, action: .connectionRefused, reason: remote ?? "",
                allowed: false, deniedReason: error.message))
        }
        let provider = try TLSContextProvider(configuration: tls)
        let rpc = RPCServer(configuration: rpcConfiguration, router: router, tls: provider, group: group)
        try await rpc.start()
        if let replica, replica.advertise.isEmpty {
            // A wildcard listen address is no address to dial: use the host's name.
            let host = ["0.0.0.0", "::", ""].contains(configuration.rpc.host) ? ProcessInfo.processInfo.hostName : configuration.rpc.host
            replica.advertise = "\(host):\(rpc.port)"
        }
        bound.withLockedValue { $0 = rpc }
        ServerMetrics.start(version: version)
        return FuseboxServerApp(
            rpc: rpc, registry: registry, authority: authority, coordinator: coordinator, replica: replica, health: health,
            store: sqlite, etcd: etcd, auditQueue: auditQueue, audit: audit, tls: provider, monitor: monitor)
    }

    private init(
        rpc: RPCServer, registry: PolicyRegistry, authority: any BreakerAuthority, coordinator: BreakerCoordinator?,
        replica: ReplicaNode?, health: HealthService, store: SQLiteStore?, etcd: (client: EtcdClient, group: MultiThreadedEventLoopGroup)?,
        auditQueue: AuditQueue, audit: AuditLog, tls: TLSContextProvider, monitor: FleetMonitor
    ) {
        self.monitor = monitor
        self.tls = tls
        self.rpc = rpc
        self.registry = registry
        self.authority = authority
        self.coordinator = coordinator
        self.replica = replica
        self.health = health
        self.store = store
        self.etcd = etcd
        self.auditQueue = auditQueue
        self.audit = audit
    }

    /// Serves until `shutdown()`; runs the breaker authority meanwhile.
    public func serve() async throws {
        serving.withLockedValue { $0 = .running }
        defer { serving.withLockedValue { $0 = .ended } }
        // The audit queue's writer outlives the rest: what waits in it when
        // the listener has closed is written before shutdown() closes the store.
        try await withThrowingTaskGroup(of: Void.self) { outer in
            outer.addTask { await self.auditQueue.run { await self.audit.write($0) } }
            defer { outer.cancelAll() }
            do {
                try await serveUntilShutdown()
            } catch {
                await auditQueue.finish(within: .seconds(5))
                throw error
            }
            await auditQueue.finish(within: .seconds(5))
        }
    }

    /// Everything serve() runs but the audit queue's writer.
    private func serveUntilShutdown() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                await self.coordinator?.run()
                await self.replica?.run()
            }
            // Registry watchers that fell behind get a fresh snapshot once they can take one.
            group.addTask { await self.registry.hub.runResync() }
            group.addTask { await self.monitor.run() }
            group.addTask {
                while !Task.isCancelled {
                    ServerMetrics.gauges(
                        connections: self.rpc.openConnections, callsInFlight: self.rpc.callsInFlight,
                        breakerWatchers: self.authority.watcherCount,
                        registryWatchers: self.registry.watcherCount, silentReporters: self.leadingCoordinator?.silentReporters() ?? 0,
                        localModeClients: self.leadingCoordinator?.localModeClients() ?? 0)
                    try? await Task.sleep(for: .seconds(1))
                }
            }
            try await rpc.serve()
            group.cancelAll()
        }
    }

    /// True while serving (not shutting down and, replicated, in touch with
    /// etcd): what `/readyz` reports.
    public var isReady: Bool { !stopping.withLockedValue { $0 } && (replica?.isServing ?? true) }

    /// The coordinator deciding in this process, if any (replicated: while this replica leads).
    var leadingCoordinator: BreakerCoordinator? {
        if let coordinator { return coordinator }
        if case .leader(let c)? = replica?.role { return c }
        return nil
    }

    /// Graceful shutdown: health NOT_SERVING, watch streams ended, GOAWAY,
    /// in-flight calls finished, store closed.
    public func shutdown() async {
        stopping.withLockedValue { $0 = true }
        health.shutdown()
        registry.shutdown()
        coordinator?.shutdown()
        replica?.mirror.hub.finishAll()
        await monitor.shutdown()
        // Another replica takes the decisions over now, not after the lease's TTL.
        await replica?.stepDownForShutdown()
        await rpc.shutdown()
        // The coordinator and the replica's feeds, election and forwarding run
        // in serve() and use the store and etcd until they have stopped. Closed
        // under them, a call in flight would wait for ever on an event loop that
        // was shut down, and serve() with it (a replicated test hung so in CI).
        // serve() also writes the queued audit entries (up to 5 s) first.
        await serveEnded(within: .seconds(15))
        // Never served: the refused handshakes queued since start() are counted, not lost silently.
        if serving.withLockedValue({ $0 == .notStarted }) { await auditQueue.finish(within: .zero) }
        await store?.close()
        await etcd?.client.close()
        await serveEnded(within: .seconds(10))
        try? await etcd?.group.shutdownGracefully()
    }

    /// Returns once `serve()` has returned (at once if it never ran), or after `limit`.
    private func serveEnded(within limit: Duration) async {
        let deadline = ContinuousClock.now + limit
        while serving.withLockedValue({ $0 == .running }), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }
}
