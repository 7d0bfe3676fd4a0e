import FuseboxAuthority
import FuseboxCore
import FuseboxEtcd

/// `GetClusterStatus` in replicated mode: the replicas' records in
/// `P/replicas/`, the leader from `P/leader`, and each etcd member's own
/// status. A replica's lag is how many revisions its copy of the breakers is
/// behind the newest revision any replica (this one included) has applied.
public struct ReplicatedClusterStatus: ClusterStatusSource {
    let node: ReplicaNode

    /// The status as `node` sees it.
    public init(node: ReplicaNode) { self.node = node }

    public func clusterStatus() async -> ClusterStatusReport {
        let now = node.clock.now().milliseconds
        let layout = node.store.layout
        var records: [EtcdRecords.Replica] = []
        var leaderID = ""
        // A replica that cannot reach etcd would wait out the client's retries
        // for records it cannot read: it answers at once with what it knows,
        // itself not serving, and each member's reachability below.
        let reachable = node.etcdReachable
        if reachable {
            if let range = try? await node.client.range(layout.replicas, rangeEnd: EtcdKeys.prefixEnd(layout.replicas)) {
                records = range.kvs.compactMap { try? EtcdRecords.decode(EtcdRecords.Replica.self, $0.value, key: $0.key) }
            }
            if let kv = try? await node.client.get(layout.leader), let leader = try? EtcdRecords.decode(EtcdRecords.Leader.self, kv.value, key: kv.key) {
                leaderID = leader.id
            }
        }
        let newest = max(node.mirror.revision, records.map(\.appliedRevision).max() ?? 0)
        var replicas = records.sorted { $0.id < $1.id }.map { r in
            ClusterStatusReport.Replica(
                id: r.id, address: r.address, version: r.version, leader: r.id == leaderID, startedAtMs: r.startedAtMs,
                appliedRevision: r.appliedRevision, lagRevisions: max(0, newest - r.appliedRevision), lastHeartbeatMs: r.heartbeatMs,
                serving: r.serving)
        }
        if !reachable {
            replicas = [ClusterStatusReport.Replica(
                id: node.settings.replicaId, address: node.advertise, version: node.settings.version, leader: false,
                startedAtMs: node.startedAtMs, appliedRevision: node.mirror.revision, lagRevisions: 0, lastHeartbeatMs: 0, serving: false)]
        }
        // Every member at once: one that does not answer costs its timeout once, not once per member.
        let client = node.client
        let endpoints = client.configuration.endpoints
        let members = await withTaskGroup(of: (Int, ClusterStatusReport.EtcdMember).self) { group in
            for (i, endpoint) in endpoints.enumerated() {
                group.addTask {
                    do throws(EtcdError) {
                        let s = try await client.status(of: endpoint)
                        return (i, ClusterStatusReport.EtcdMember(
                            endpoint: endpoint.description, reachable: true, leader: s.leader != 0 && s.leader == s.memberID,
                            revision: s.revision, dbSizeBytes: 0, error: s.errors.joined(separator: "; ")))
                    } catch {
                        return (i, ClusterStatusReport.EtcdMember(
                            endpoint: endpoint.description, reachable: false, leader: false, revision: 0, dbSizeBytes: 0, error: error.message))
                    }
                }
            }
            var found: [(Int, ClusterStatusReport.EtcdMember)] = []
            for await member in group { found.append(member) }
            return found.sorted { $0.0 < $1.0 }.map(\.1)
        }
        return ClusterStatusReport(
            mode: "replicated", store: "etcd", leaderId: leaderID, replicas: replicas, etcdMembers: members,
            answeredBy: node.settings.replicaId, atMs: now)
    }
}
