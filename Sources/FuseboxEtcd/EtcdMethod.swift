/// The etcd v3 gRPC methods FuseboxEtcd calls: one table instead of string
/// literals at call sites.
struct EtcdMethod: Sendable {
    /// The full service name, e.g. "etcdserverpb.KV".
    let service: String
    /// The method name, e.g. "Range".
    let method: String

    /// The HTTP/2 `:path`.
    var path: String { "/\(service)/\(method)" }

    static let range = EtcdMethod(service: "etcdserverpb.KV", method: "Range")
    static let put = EtcdMethod(service: "etcdserverpb.KV", method: "Put")
    static let deleteRange = EtcdMethod(service: "etcdserverpb.KV", method: "DeleteRange")
    static let txn = EtcdMethod(service: "etcdserverpb.KV", method: "Txn")
    static let compact = EtcdMethod(service: "etcdserverpb.KV", method: "Compact")
    static let watch = EtcdMethod(service: "etcdserverpb.Watch", method: "Watch")
    static let leaseGrant = EtcdMethod(service: "etcdserverpb.Lease", method: "LeaseGrant")
    static let leaseRevoke = EtcdMethod(service: "etcdserverpb.Lease", method: "LeaseRevoke")
    static let leaseKeepAlive = EtcdMethod(service: "etcdserverpb.Lease", method: "LeaseKeepAlive")
    static let status = EtcdMethod(service: "etcdserverpb.Maintenance", method: "Status")
}
