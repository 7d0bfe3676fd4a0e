import Foundation
public import FuseboxAuthority
import FuseboxCore

/// The cluster as one replica sees it: what `AdminService.GetClusterStatus`
/// answers (admin.proto documents every field).
public struct ClusterStatusReport: Sendable, Equatable {
    /// "standalone" (one fuseboxd on SQLite) or "replicated" (replicas on etcd).
    public var mode: String
    /// "sqlite" or "etcd".
    public var store: String
    /// Id of the replica that decides breaker transitions; empty while none leads.
    public var leaderId: String
    /// Every registered replica, ordered by id.
    public var replicas: [Replica]
    /// Every etcd member of `store.etcd.endpoints`, in that order; empty for SQLite.
    public var etcdMembers: [EtcdMember]
    /// Id of the replica that answered.
    public var answeredBy: String
    /// When it answered (Unix milliseconds).
    public var atMs: Int64

    /// One fuseboxd replica.
    public struct Replica: Sendable, Equatable {
        /// Its id (`cluster.replicaId`).
        public var id: String
        /// host:port its gRPC port is reached at (`cluster.advertise`).
        public var address: String
        /// Its fuseboxd version.
        public var version: String
        /// True for the leader.
        public var leader: Bool
        /// When it started (Unix milliseconds).
        public var startedAtMs: Int64
        /// The etcd revision its copy has applied; 0 for SQLite.
        public var appliedRevision: Int64
        /// Revisions its copy is behind the newest known one; 0 when up to date.
        public var lagRevisions: Int64
        /// When it last refreshed its registration (Unix milliseconds).
        public var lastHeartbeatMs: Int64
        /// Whether it says SERVING on grpc.health.v1.Health.
        public var serving: Bool

        /// A replica.
        public init(
            id: String, address: String, version: String, leader: Bool, startedAtMs: Int64, appliedRevision: Int64,
            lagRevisions: Int64, lastHeartbeatMs: Int64, serving: Bool
        ) {
            self.id = id
            self.address = address
            self.version = version
            self.leader = leader
            self.startedAtMs = startedAtMs
            self.appliedRevision = appliedRevision
            self.lagRevisions = lagRevisions
            self.lastHeartbeatMs = lastHeartbeatMs
            self.serving = serving
        }
    }

    /// One etcd member, as the answering replica reached it.
    public struct EtcdMember: Sendable, Equatable {
        /// Its client URL, as in `store.etcd.endpoints`.
        public var endpoint: String
        /// Whether it answered.
        public var reachable: Bool
        /// Whether it is etcd's (raft) leader.
        public var leader: Bool
        /// Its current revision.
        public var revision: Int64
        /// Size of its database in bytes.
        public var dbSizeBytes: Int64
        /// Why it could not be reached; empty when reachable.
        public var error: String

        /// A member.
        public init(endpoint: String, reachable: Bool, leader: Bool, revision: Int64, dbSizeBytes: Int64, error: String)
        {
            self.endpoint = endpoint
            self.reachable = reachable
            self.leader = leader
            self.revision = revision
            self.dbSizeBytes = dbSizeBytes
            self.error = error
        }
    }

    /// A report.
    public init(
        mode: String, store: String, leaderId: String, replicas: [Replica], etcdMembers: [EtcdMember],
        answeredBy: String,
        atMs: Int64
    ) {
        self.mode = mode
        self.store = store
        self.leaderId = leaderId
        self.replicas = replicas
        self.etcdMembers = etcdMembers
        self.answeredBy = answeredBy
        self.atMs = atMs
    }
}

/// Where `GetClusterStatus` gets its answer: the standalone server itself,
/// or the replicated mode's view of etcd.
public protocol ClusterStatusSource: Sendable {
    /// The cluster now. Never fails: what cannot be reached is reported as such.
    func clusterStatus() async -> ClusterStatusReport
}

/// The status of one fuseboxd on SQLite: a single replica, this server,
/// leading, serving while its health says SERVING.
public struct StandaloneClusterStatus: ClusterStatusSource {
    /// This server's name (`cluster.replicaId`, or the host name).
    public var replicaId: String
    /// Its fuseboxd version.
    public var version: String
    /// When it started (Unix milliseconds).
    public var startedAtMs: Int64
    private let address: @Sendable () -> String
    private let serving: @Sendable () -> Bool
    private let clock: any FleetClock

    /// The status of a server named `replicaId`; `address` gives its gRPC
    /// address (host:port as bound, known once it listens) and `serving`
    /// its health, each time the status is asked for.
    public init(
        replicaId: String, version: String, startedAtMs: Int64, clock: any FleetClock,
        address: @escaping @Sendable () -> String,
        serving: @escaping @Sendable () -> Bool
    ) {
        self.replicaId = replicaId
        self.version = version
        self.startedAtMs = startedAtMs
        self.clock = clock
        self.address = address
        self.serving = serving
    }

    /// A server named after this machine's host name, started now, whose
    /// address is not known ("") and which always serves: the default of
    /// `AdminService` when it is used without `FuseboxServerApp`, which passes
    /// its bound address and its health instead.
    public init(version: String = "dev", clock: any FleetClock = SystemFleetClock()) {
        self.init(
            replicaId: ServerConfiguration.replicaId(fromHostName: ProcessInfo.processInfo.hostName), version: version,
            startedAtMs: clock.now().milliseconds, clock: clock, address: { "" }, serving: { true })
    }

    /// One replica, leading; its heartbeat is now.
    public func clusterStatus() async -> ClusterStatusReport {
        let now = clock.now().milliseconds
        let me = ClusterStatusReport.Replica(
            id: replicaId, address: address(), version: version, leader: true, startedAtMs: startedAtMs,
            appliedRevision: 0,
            lagRevisions: 0, lastHeartbeatMs: now, serving: serving())
        return ClusterStatusReport(
            mode: "standalone", store: "sqlite", leaderId: replicaId, replicas: [me], etcdMembers: [],
            answeredBy: replicaId, atMs: now)
    }
}
