import Foundation
import FuseboxCore
public import FuseboxAuthority
import FuseboxWire
import NIOConcurrencyHelpers
public import FuseboxRPC
public import FuseboxTLS
public import NIOCore

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
    /// The fleet's breakers.
    public let coordinator: BreakerCoordinator
    /// The TLS material, reloadable.
    public let tls: TLSContextProvider
    /// Health.
    public let health: HealthService
    private let store: SQLiteStore
    private let refusals: AsyncStream<(TLSError, String?)>
    private let audit: AuditLog
    private let stopping = NIOLockedValueBox(false)

    /// Opens the store, loads state, seeds presets, and binds the listener.
    /// `clock` is the authority's time (tests pass a manual one).
    public static func start(
        _ configuration: Configuration, group: any EventLoopGroup, version: String = "dev", clock: any FleetClock = SystemFleetClock()
    ) async throws -> FuseboxServerApp {
        let store = try await SQLiteStore.open(directory: configuration.dataDirectory)
        var tls = configuration.tls
        if configuration.insecureAnonymousRole != nil { tls.requireClientCertificate = false }
        let authorizer = Authorizer(rules: configuration.roleRules, anonymousRole: configuration.insecureAnonymousRole)
        let registry = try await PolicyRegistry(store: store, clock: clock)
        if configuration.seedPresets { try await registry.seedPresetsIfEmpty() }
        let coordinator = try await BreakerCoordinator(store: store, clock: clock, limits: configuration.limits) { registry.policy(registry: $0, name: $1) }
        registry.addListener { [weak coordinator] change in
            coordinator?.policyChanged(registry: change.registry, name: change.name, policy: change.after)
        }
        let audit = AuditLog(store: store, authorizer: authorizer, clock: clock)
        let health = HealthService()
        var router = RPCRouter()
        RegistryService(registry: registry, authorizer: authorizer, audit: audit).register(on: &router)
        BreakerService(authority: coordinator, authorizer: authorizer).register(on: &router)
        let bound = NIOLockedValueBox<RPCServer?>(nil)
        let host = configuration.rpc.host
        let clusterStatus = configuration.clusterStatus ?? StandaloneClusterStatus(
            replicaId: configuration.replicaId ?? ServerConfiguration.replicaId(fromHostName: ProcessInfo.processInfo.hostName),
            version: version, startedAtMs: clock.now().milliseconds, clock: clock,
            address: { bound.withLockedValue { $0 }.map { RPCEndpoint(host: host, port: $0.port).description } ?? "" },
            serving: { health.status() == .serving })
        AdminService(authority: coordinator, audit: audit, clusterStatus: clusterStatus).register(on: &router)
        health.register(on: &router)
        for service in ["fusebox.v1.RegistryService", "fusebox.v1.BreakerService", "fusebox.v1.AdminService"] {
            health.setStatus(.serving, for: service)
        }
        // Certificate refusals at the handshake go to the audit log (written by serve()).
        let (refusals, refused) = AsyncStream<(TLSError, String?)>.makeStream(bufferingPolicy: .bufferingNewest(1_000))
        var rpcConfiguration = configuration.rpc
        let auditable: Set<TLSError.Code> = [.missingClientCertificate, .untrustedCertificate, .certificateExpired, .certificateNotYetValid, .certificateRejected]
        rpcConfiguration.onCallCompleted = { path, code, elapsed in
            ServerMetrics.rpc(path: path, code: "\(code)", nanoseconds: elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        }
        rpcConfiguration.mapError = WireConversions.withDetails
        rpcConfiguration.onTLSFailure = { error, remote in
            if auditable.contains(error.code) { refused.yield((error, remote)) }
        }
        let provider = try TLSContextProvider(configuration: tls)
        let rpc = RPCServer(configuration: rpcConfiguration, router: router, tls: provider, group: group)
        try await rpc.start()
        bound.withLockedValue { $0 = rpc }
        ServerMetrics.start(version: version)
        return FuseboxServerApp(
            rpc: rpc, registry: registry, coordinator: coordinator, health: health, store: store, refusals: refusals,
            audit: audit, tls: provider)
    }

    private init(
        rpc: RPCServer, registry: PolicyRegistry, coordinator: BreakerCoordinator, health: HealthService, store: SQLiteStore,
        refusals: AsyncStream<(TLSError, String?)>, audit: AuditLog, tls: TLSContextProvider
    ) {
        self.tls = tls
        self.rpc = rpc
        self.registry = registry
        self.coordinator = coordinator
        self.health = health
        self.store = store
        self.refusals = refusals
        self.audit = audit
    }

    /// Serves until `shutdown()`; runs the breaker authority meanwhile.
    public func serve() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await self.coordinator.run() }
            group.addTask {
                while !Task.isCancelled {
                    ServerMetrics.gauges(
                        connections: self.rpc.openConnections, breakerWatchers: self.coordinator.watcherCount,
                        registryWatchers: self.registry.watcherCount, silentReporters: self.coordinator.silentReporters())
                    try? await Task.sleep(for: .seconds(1))
                }
            }
            group.addTask {
                for await (error, remote) in self.refusals {
                    await self.audit.append(AuditRecord(
                        atMs: SystemFleetClock().now().milliseconds, actor: nil, action: .connectionRefused, reason: remote ?? "",
                        allowed: false, deniedReason: error.message))
                }
            }
            try await rpc.serve()
            group.cancelAll()
        }
    }

    /// True while serving (not shutting down): what `/readyz` reports.
    public var isReady: Bool { !stopping.withLockedValue { $0 } }

    /// Graceful shutdown: health NOT_SERVING, watch streams ended, GOAWAY,
    /// in-flight calls finished, store closed.
    public func shutdown() async {
        stopping.withLockedValue { $0 = true }
        health.shutdown()
        registry.shutdown()
        coordinator.shutdown()
        await rpc.shutdown()
        await store.close()
    }
}
