public import FuseboxEtcd
import FuseboxTLS

extension ServerConfiguration {
    /// The etcd client settings: TLS when an endpoint says `https://` or a CA
    /// is given (`store.etcd.ca`), cleartext for `http://` endpoints.
    public func etcdConfiguration() throws(ConfigurationError) -> EtcdConfiguration {
        var hosts: [String] = []
        var secure = etcdCAPath != nil
        for item in etcdEndpoints {
            var text = item
            if text.hasPrefix("https://") {
                secure = true
                text.removeFirst("https://".count)
            } else if text.hasPrefix("http://") {
                text.removeFirst("http://".count)
            }
            while text.hasSuffix("/") { text.removeLast() }
            hosts.append(text)
        }
        var tls: TLSConfiguration?
        if secure {
            guard let ca = etcdCAPath else {
                throw ConfigurationError(key: "store.etcd.ca", source: "configuration", line: nil, "is required for https:// etcd endpoints")
            }
            tls = .client(trustRootsPath: ca, certificateChainPath: etcdCertificatePath, privateKeyPath: etcdKeyPath)
        }
        do {
            return try EtcdConfiguration(endpoints: hosts, tls: tls)
        } catch {
            throw ConfigurationError(key: "store.etcd.endpoints", source: "configuration", line: nil, error.message)
        }
    }

    /// Replicated mode's settings, or nil for the embedded SQLite store.
    /// Forwarded calls verify the leader's certificate with `tls.clientCA`:
    /// one CA signs every replica's server and client certificates.
    public func replication(version: String) throws(ConfigurationError) -> FuseboxServerApp.Configuration.Replication? {
        guard storeKind == .etcd else { return nil }
        var node = ReplicaNode.Settings(
            replicaId: effectiveReplicaId, advertise: advertise ?? "",
            peerTLS: .client(trustRootsPath: clientCAPath, certificateChainPath: peerCertificatePath, privateKeyPath: peerKeyPath))
        node.leaseSeconds = Int64(etcdLeaseSeconds)
        node.version = version
        var replication = FuseboxServerApp.Configuration.Replication(etcd: try etcdConfiguration(), node: node)
        replication.prefix = etcdPrefix
        replication.auditRetention = etcdAuditRetention
        return replication
    }
}
