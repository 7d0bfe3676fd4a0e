public import Foundation
public import FuseboxRPC
import FuseboxTLS
public import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// fuseboxd processes in replicated mode (`--store etcd`) sharing one etcd
/// prefix of `cluster`, for tests.
public final class FuseboxdReplicas: @unchecked Sendable {
    public let cluster: EtcdTestCluster
    /// The leader lease's TTL the replicas run with.
    public let leaseSeconds: Int
    public let prefix = "/fusebox-\(UUID().uuidString.prefix(8))"
    public let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-replicas-\(UUID().uuidString)")
    private let lock = NSLock()
    private var processes: [String: FuseboxdProcess] = [:]

    public init(cluster: EtcdTestCluster, leaseSeconds: Int = 2) throws {
        self.cluster = cluster
        self.leaseSeconds = leaseSeconds
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    /// Starts (or restarts) replica `id`, on `prefix` (default: this
    /// cluster's own), talking to the etcd members `members` (default: all).
    @discardableResult
    public func start(prefix: String? = nil, members: [Int]? = nil, _ id: String) throws -> FuseboxdProcess {
        let config = directory.appendingPathComponent("\(id).yaml")
        let endpoints = (members ?? Array(cluster.endpoints.indices)).map { cluster.endpoints[$0] }
        let yaml = """
            store:
              kind: etcd
              etcd:
                endpoints: \(endpoints.map { "http://\($0)" }.joined(separator: ","))
                prefix: \(prefix ?? self.prefix)
                leaseSeconds: \(leaseSeconds)
            cluster:
              replicaId: \(id)
              peerCertificate: \(try TestCertificates.path("replica.pem"))
              peerKey: \(try TestCertificates.path("replica.key"))
            """
        try yaml.write(to: config, atomically: true, encoding: .utf8)
        let process = try FuseboxdProcess(dataDirectory: directory.appendingPathComponent(id).path, extra: ["--config", config.path])
        lock.withLock { processes[id] = process }
        return process
    }

    public func process(_ id: String) -> FuseboxdProcess? { lock.withLock { processes[id] } }

    public var ids: [String] { lock.withLock { processes.keys.sorted() } }

    public func client(_ id: String, _ identity: String, group: any EventLoopGroup) throws -> RPCClient {
        guard let p = process(id) else { throw RPCError(.unavailable, "no replica \(id)") }
        return try testClient(port: p.port, identity: identity, group: group)
    }

    public func stopAll() {
        for id in ids { process(id)?.stop(SIGKILL, timeout: 5) }
        try? FileManager.default.removeItem(at: directory)
    }

    /// Logs of every replica, for failure messages.
    public var logs: String {
        ids.map { "--- \($0) ---\n" + (process($0)?.launched.stderrTail(3_000) ?? "") }.joined(separator: "\n")
    }
}

/// A client of the fuseboxd on 127.0.0.1:`port` with test identity `identity`
/// ("admin", "reporter", "reader", "replica").
public func testClient(port: Int, identity: String, group: any EventLoopGroup) throws -> RPCClient {
    try RPCClient(configuration: RPCClientConfiguration(
        host: "127.0.0.1", port: port,
        tls: .client(
            trustRootsPath: try TestCertificates.path("ca.pem"),
            certificateChainPath: try TestCertificates.path("\(identity).pem"),
            privateKeyPath: try TestCertificates.path("\(identity).key"))), group: group)
}
