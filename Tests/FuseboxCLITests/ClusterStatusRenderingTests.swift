import FuseboxWire
import XCTest

@testable import FuseboxCLI

/// `fusebox cluster status` output for a three-replica cluster on etcd.
final class ClusterStatusRenderingTests: XCTestCase {
    private func replica(
        _ id: String, leader: Bool, applied: Int64, lag: Int64, heartbeat: Int64, serving: Bool
    ) -> Fusebox_V1_ReplicaStatus {
        var r = Fusebox_V1_ReplicaStatus()
        r.id = id
        r.address = "\(id).internal:7443"
        r.version = "0.2.0"
        r.leader = leader
        r.startedAtMs = 1_800_000_000_000
        r.appliedRevision = applied
        r.lagRevisions = lag
        r.lastHeartbeatMs = heartbeat
        r.serving = serving
        return r
    }

    private var threeReplicas: Fusebox_V1_ClusterStatus {
        var s = Fusebox_V1_ClusterStatus()
        s.mode = "replicated"
        s.store = "etcd"
        s.leaderId = "fb-2"
        s.answeredBy = "fb-1"
        s.atMs = 1_800_000_060_000
        s.replicas = [
            replica("fb-1", leader: false, applied: 41, lag: 1, heartbeat: 1_800_000_059_000, serving: true),
            replica("fb-2", leader: true, applied: 42, lag: 0, heartbeat: 1_800_000_059_750, serving: true),
            replica("fb-3", leader: false, applied: 30, lag: 12, heartbeat: 1_800_000_045_000, serving: false),
        ]
        var up = Fusebox_V1_EtcdMemberStatus()
        up.endpoint = "https://10.0.1.1:2379"
        up.reachable = true
        up.leader = true
        up.revision = 42
        up.dbSizeBytes = 25_165_824
        var down = Fusebox_V1_EtcdMemberStatus()
        down.endpoint = "https://10.0.1.2:2379"
        down.error = "connection refused"
        s.etcdMembers = [up, down]
        return s
    }

    func testTable() {
        XCTAssertEqual(
            Cluster.Status.table(threeReplicas),
            """
            replicated on etcd; leader fb-2; answered by fb-1 at 2027-01-15T08:01:00Z

            ID    ADDRESS             LEADER  VERSION  APPLIED REV  LAG  SERVING  LAST HEARTBEAT
            fb-1  fb-1.internal:7443          0.2.0    41           1    yes      1s ago
            fb-2  fb-2.internal:7443  *       0.2.0    42           0    yes      250ms ago
            fb-3  fb-3.internal:7443          0.2.0    30           12   no       15s ago

            ENDPOINT               REACHABLE  LEADER  REVISION  DB SIZE   ERROR
            https://10.0.1.1:2379  yes        *       42        24.0 MiB
            https://10.0.1.2:2379  no                 -         -         connection refused
            """)
    }

    func testTableOfAStandaloneServerWithoutLeader() {
        var s = Fusebox_V1_ClusterStatus()
        s.mode = "standalone"
        s.store = "sqlite"
        s.answeredBy = "host-1"
        s.atMs = 1_800_000_060_000
        XCTAssertEqual(
            Cluster.Status.table(s),
            """
            standalone on sqlite; leader none (no replica leads); answered by host-1 at 2027-01-15T08:01:00Z

            no replicas registered
            """)
    }

    func testJSON() {
        XCTAssertEqual(
            Cluster.Status.value(threeReplicas).json(),
            """
            {
              "mode": "replicated",
              "store": "etcd",
              "leader": "fb-2",
              "answeredBy": "fb-1",
              "at": "2027-01-15T08:01:00Z",
              "replicas": [
                {
                  "id": "fb-1",
                  "address": "fb-1.internal:7443",
                  "version": "0.2.0",
                  "leader": false,
                  "startedAt": "2027-01-15T08:00:00Z",
                  "appliedRevision": 41,
                  "lagRevisions": 1,
                  "lastHeartbeat": "2027-01-15T08:00:59Z",
                  "serving": true
                },
                {
                  "id": "fb-2",
                  "address": "fb-2.internal:7443",
                  "version": "0.2.0",
                  "leader": true,
                  "startedAt": "2027-01-15T08:00:00Z",
                  "appliedRevision": 42,
                  "lagRevisions": 0,
                  "lastHeartbeat": "2027-01-15T08:00:59Z",
                  "serving": true
                },
                {
                  "id": "fb-3",
                  "address": "fb-3.internal:7443",
                  "version": "0.2.0",
                  "leader": false,
                  "startedAt": "2027-01-15T08:00:00Z",
                  "appliedRevision": 30,
                  "lagRevisions": 12,
                  "lastHeartbeat": "2027-01-15T08:00:45Z",
                  "serving": false
                }
              ],
              "etcdMembers": [
                {
                  "endpoint": "https://10.0.1.1:2379",
                  "reachable": true,
                  "leader": true,
                  "revision": 42,
                  "dbSizeBytes": 25165824,
                  "error": ""
                },
                {
                  "endpoint": "https://10.0.1.2:2379",
                  "reachable": false,
                  "leader": false,
                  "revision": 0,
                  "dbSizeBytes": 0,
                  "error": "connection refused"
                }
              ]
            }
            """)
    }

    func testByteSizes() {
        XCTAssertEqual(formatBytes(512), "512 B")
        XCTAssertEqual(formatBytes(1_536), "1.5 KiB")
        XCTAssertEqual(formatBytes(3 * 1024 * 1024 * 1024), "3.0 GiB")
        XCTAssertEqual(formatBytes(5 * 1024 * 1024 * 1024 * 1024), "5120.0 GiB")
    }
}
