/// The settings a configuration may hold: the YAML keys, and the
/// `FUSEBOX_*` variables that set some of them.
extension ServerConfiguration {
    /// Every key the file may hold, with what it sets.
    public static let keys: [String: String] = [
        "listen.host": "gRPC listen address", "listen.port": "gRPC port (0: any free port)",
        "dataDirectory": "directory of the SQLite database",
        "tls.certificate": "server certificate chain (PEM)", "tls.key": "server private key (PEM)",
        "tls.clientCA": "CA bundle for client certificates (PEM)",
        "tls.insecureNoClientCertificates": "development only: no client certificates, everyone is admin",
        "roles": "list of {field: cn|dns|uri, pattern: glob, role: reader|reporter|admin|replica}",
        "alerts": "alert sinks (webhook, slack, email), rules and historySize (docs/ALERTS.md)",
        "limits.maxMessageBytes": "largest request message", "limits.maxConcurrentStreams": "streams per connection",
        "limits.maxConnections": "open connections", "limits.maxWatchesPerConnection": "watches open at once on one connection",
        "limits.idleTimeoutSeconds": "idle connection timeout",
        "limits.listenBacklog": "connections queued by the kernel before they are accepted (capped by net.core.somaxconn)",
        "limits.shutdownGraceSeconds": "time calls in flight get on shutdown", "presets": "load presets on first start",
        "limits.maxBreakersPerRegistry": "breakers one registry may hold",
        "limits.idleBreakerSeconds": "idle CLOSED breakers are evicted after this (0: never)",
        "limits.maxRegistries": "registries the server holds", "limits.maxPolicyBytes": "largest policy, encoded, in bytes",
        "observability.host": "address of the /metrics, /healthz, /readyz listener", "observability.port": "its port (0: any free port)",
        "dashboard.host": "address of the web dashboard's HTTPS listener", "dashboard.port": "its port (0: any free port)",
        "dashboard.sessionMinutes": "how long a dashboard sign-in lasts",
        "dashboard.tokens": "list of {name, role: reader|admin, sha256}: who may sign in (docs/DASHBOARD.md); none: the dashboard is off",
        "store.kind": "where state is kept: sqlite (one server) or etcd (replicated)",
        "store.etcd.endpoints": "etcd client URLs (https://host:port, http://host:port or host:port): comma separated, or a list",
        "store.etcd.prefix": "prefix of every key in etcd (starts with /, no trailing /)",
        "store.etcd.ca": "CA bundle for etcd's server certificates (PEM)",
        "store.etcd.certificate": "client certificate for etcd (PEM)", "store.etcd.key": "its private key (PEM)",
        "store.etcd.leaseSeconds": "TTL of the leader's lease: how long a dead leader is waited for (2-60)",
        "store.etcd.auditRetention": "audit entries kept in etcd; older ones are deleted",
        "cluster.replicaId": "this replica's name, unique in the cluster (default: the host name)",
        "cluster.advertise": "host:port other replicas reach this replica's gRPC port at (default: the listen address)",
        "cluster.peerCertificate": "client certificate this replica presents to the leader (PEM; must map to role replica)",
        "cluster.peerKey": "its private key (PEM)",
    ]

    /// The `FUSEBOX_*` environment variables and the keys they set.
    public static let environmentVariables: [String: String] = [
        "FUSEBOX_HOST": "listen.host", "FUSEBOX_PORT": "listen.port", "FUSEBOX_DATA_DIR": "dataDirectory",
        "FUSEBOX_TLS_CERT": "tls.certificate", "FUSEBOX_TLS_KEY": "tls.key", "FUSEBOX_TLS_CLIENT_CA": "tls.clientCA",
        "FUSEBOX_STORE_KIND": "store.kind", "FUSEBOX_ETCD_ENDPOINTS": "store.etcd.endpoints", "FUSEBOX_ETCD_PREFIX": "store.etcd.prefix",
        "FUSEBOX_ETCD_CA": "store.etcd.ca", "FUSEBOX_ETCD_CERT": "store.etcd.certificate", "FUSEBOX_ETCD_KEY": "store.etcd.key",
        "FUSEBOX_REPLICA_ID": "cluster.replicaId", "FUSEBOX_ADVERTISE": "cluster.advertise",
        "FUSEBOX_PEER_CERT": "cluster.peerCertificate", "FUSEBOX_PEER_KEY": "cluster.peerKey",
        "FUSEBOX_DASHBOARD_HOST": "dashboard.host", "FUSEBOX_DASHBOARD_PORT": "dashboard.port",
    ]
}
