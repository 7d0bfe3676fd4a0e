import Foundation
public import FuseboxAuthority
public import FuseboxRPC
public import FuseboxTLS
import Yams

/// fuseboxd's settings, from a YAML file, then environment variables, then
/// flags (each overriding the one before). Unknown keys and wrong types are
/// errors that name the key and its line.
public struct ServerConfiguration: Sendable, Equatable {
    /// gRPC listen address. Default 127.0.0.1.
    public var host = "127.0.0.1"
    /// gRPC port; 0 picks a free one. Default 7443.
    public var port = 7443
    /// Where the SQLite database lives. Default `.fusebox/data`.
    public var dataDirectory = ".fusebox/data"
    /// Server certificate chain (PEM). Default `.fusebox/certs/server.pem`.
    public var certificatePath = ".fusebox/certs/server.pem"
    /// Server private key (PEM). Default `.fusebox/certs/server.key`.
    public var keyPath = ".fusebox/certs/server.key"
    /// CA bundle client certificates are verified against. Default `.fusebox/certs/ca.pem`.
    public var clientCAPath = ".fusebox/certs/ca.pem"
    /// Development only: accept clients without certificates, each as `admin`.
    public var insecureNoClientCertificates = false
    /// Identity-to-role rules. Default: the development certificates' identities.
    public var roles: [RoleRule] = Authorizer.developmentRules
    /// Largest request message. Default 4 MiB.
    public var maximumMessageBytes = 4 * 1024 * 1024
    /// Concurrent streams per connection. Default 100.
    public var maximumConcurrentStreams = 100
    /// Open connections. Default 1,000.
    public var maximumConnections = 1_000
    /// Watches open at once on one connection. Default 32.
    public var maximumWatchesPerConnection = 32
    /// The gRPC listener's backlog (capped by the kernel's somaxconn). Default 4,096.
    public var listenBacklog = 4_096
    /// Idle connections are closed after this many seconds. Default 300.
    public var idleTimeoutSeconds = 300
    /// Calls in flight get this many seconds on shutdown. Default 10.
    public var shutdownGraceSeconds = 10
    /// Breakers one registry may hold. Default 10,000.
    public var maxBreakersPerRegistry = 10_000
    /// Idle CLOSED breakers are evicted after this many seconds (0: never). Default 3,600.
    public var idleBreakerSeconds = 3_600
    /// Registries the server holds. Default 1,000.
    public var maxRegistries = 1_000
    /// Largest policy, encoded. Default 64 KiB.
    public var maxPolicyBytes = 65_536
    /// Load the presets into `default` on first start. Default true.
    public var presets = true
    /// Alert sinks and rules (docs/ALERTS.md). Default: no sinks, no alerts.
    public var alerts = AlertsConfiguration()
    /// Address of the HTTP listener for /metrics, /healthz and /readyz. Default 127.0.0.1.
    public var observabilityHost = "127.0.0.1"
    /// Its port; 0 picks a free one. Default 7444.
    public var observabilityPort = 7444
    /// The web dashboard (docs/DASHBOARD.md). Default: off.
    public var dashboard = DashboardSettings()

    /// Where fuseboxd keeps its state (docs/REPLICATION.md).
    public enum StoreKind: String, Sendable, Equatable {
        /// One fuseboxd with its SQLite database in `dataDirectory`.
        case sqlite
        /// Replicas sharing an etcd cluster.
        case etcd
    }

    /// The store: `.sqlite` (one server) or `.etcd` (replicated). Default `.sqlite`.
    public var storeKind: StoreKind = .sqlite
    /// etcd client URLs as given (`https://host:port`, `http://host:port` or
    /// `host:port`); required when `storeKind` is `.etcd`. Default none.
    public var etcdEndpoints: [String] = []
    /// Prefix of every key in etcd; starts with "/", no trailing "/". Default `/fusebox`.
    public var etcdPrefix = "/fusebox"
    /// CA bundle etcd's server certificates are verified against (PEM). Default none.
    public var etcdCAPath: String? = nil
    /// Client certificate presented to etcd (PEM). Default none.
    public var etcdCertificatePath: String? = nil
    /// Its private key (PEM). Default none.
    public var etcdKeyPath: String? = nil
    /// TTL of the leader's lease in seconds, 2-60. Default 5.
    public var etcdLeaseSeconds = 5
    /// Audit entries kept in etcd, 1,000-10,000,000. Default 100,000.
    public var etcdAuditRetention = 100_000
    /// This replica's name, unique in the cluster (nil: the host name). Default nil.
    public var replicaId: String? = nil
    /// `host:port` other replicas reach this replica's gRPC port at (nil: the
    /// listen address as bound). Default nil.
    public var advertise: String? = nil
    /// Client certificate this replica presents to the leader (PEM). Default `.fusebox/certs/replica.pem`.
    public var peerCertificatePath = ".fusebox/certs/replica.pem"
    /// Its private key (PEM). Default `.fusebox/certs/replica.key`.
    public var peerKeyPath = ".fusebox/certs/replica.key"

    /// `replicaId`, or else this machine's host name made into a valid
    /// replica id: characters other than letters, digits, ".", "_" and "-"
    /// become "-", and it is cut to 63 characters ("fuseboxd" if nothing is left).
    public var effectiveReplicaId: String {
        replicaId ?? Self.replicaId(fromHostName: ProcessInfo.processInfo.hostName)
    }

    /// `hostName` as a valid replica id (see `effectiveReplicaId`).
    public static func replicaId(fromHostName hostName: String) -> String {
        let mapped = String(hostName.unicodeScalars.prefix(63).map { isReplicaIdCharacter($0) ? Character($0) : "-" })
        return mapped.isEmpty ? "fuseboxd" : mapped
    }

    private static func isReplicaIdCharacter(_ u: Unicode.Scalar) -> Bool {
        switch u {
        case "a"..."z", "A"..."Z", "0"..."9", ".", "_", "-": return true
        default: return false
        }
    }

    /// The defaults.
    public init() {}

    /// Applies a YAML document.
    public mutating func apply(yaml text: String, source: String) throws(ConfigurationError) {
        try apply(yaml: text, source: source, environment: ProcessInfo.processInfo.environment)
    }

    /// Applies a YAML document; `environment` holds the variables the alert
    /// sinks' `*Env` keys name.
    public mutating func apply(yaml text: String, source: String, environment: [String: String]) throws(ConfigurationError) {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw ConfigurationError(key: nil, source: source, line: nil, "is not valid YAML: \(error)")
        }
        guard let root else { return }
        guard let mapping = root.mapping else { throw ConfigurationError(key: nil, source: source, line: root.mark?.line, "must be a mapping of keys") }
        try walk(mapping, prefix: "", source: source, environment: environment)
    }

    private mutating func walk(_ mapping: Node.Mapping, prefix: String, source: String, environment: [String: String]) throws(ConfigurationError) {
        for (keyNode, value) in mapping {
            let key = prefix + (keyNode.string ?? "")
            let line = keyNode.mark?.line
            if key == "roles" {
                roles = try parseRoles(value, source: source)
                continue
            }
            if key == "alerts" {
                alerts = try Self.parseAlerts(value, source: source, environment: environment)
                continue
            }
            if key == "dashboard.tokens" {
                dashboard.tokens = try Self.parseDashboardTokens(value, source: source)
                continue
            }
            if key == "store.etcd.endpoints", let list = value.sequence {
                var items: [String] = []
                for item in list {
                    guard let scalar = item.scalar else {
                        throw ConfigurationError(
                            key: key, source: source, line: item.mark?.line ?? line, "must be a list of endpoints, each a single value")
                    }
                    // Checked one by one, so an error gives the item's own line.
                    items += try Self.endpoints([scalar.string], key: key, source: source, line: item.mark?.line ?? line)
                }
                etcdEndpoints = try Self.endpoints(items, key: key, source: source, line: line)
                continue
            }
            if let nested = value.mapping, Self.keys.keys.contains(where: { $0.hasPrefix(key + ".") }) {
                try walk(nested, prefix: key + ".", source: source, environment: environment)
                continue
            }
            guard Self.keys[key] != nil else {
                throw ConfigurationError(key: key, source: source, line: line, "is not a setting; known keys: \(Self.keys.keys.sorted().joined(separator: ", "))")
            }
            guard let scalar = value.scalar else {
                throw ConfigurationError(key: key, source: source, line: line, "must be a single value")
            }
            try set(key, scalar.string, source: source, line: line)
        }
    }

    /// Sets one key from text (file, environment or flag).
    public mutating func set(_ key: String, _ text: String, source: String, line: Int? = nil) throws(ConfigurationError) {
        func int(_ range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
            guard let v = Int(text), range.contains(v) else {
                throw ConfigurationError(key: key, source: source, line: line, "(\"\(text)\") must be a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            return v
        }
        func bool() throws(ConfigurationError) -> Bool {
            switch text.lowercased() {
            case "true", "yes", "on", "1": return true
            case "false", "no", "off", "0": return false
            default: throw ConfigurationError(key: key, source: source, line: line, "(\"\(text)\") must be true or false")
            }
        }
        func path() throws(ConfigurationError) -> String {
            guard !text.isEmpty else { throw ConfigurationError(key: key, source: source, line: line, "must name a file") }
            return text
        }
        switch key {
        case "listen.host": host = text
        case "listen.port": port = try int(0...65_535)
        case "dataDirectory": dataDirectory = text
        case "tls.certificate": certificatePath = text
        case "tls.key": keyPath = text
        case "tls.clientCA": clientCAPath = text
        case "tls.insecureNoClientCertificates": insecureNoClientCertificates = try bool()
        case "limits.maxMessageBytes": maximumMessageBytes = try int(1_024...64 * 1024 * 1024)
        case "limits.maxConcurrentStreams": maximumConcurrentStreams = try int(1...10_000)
        case "limits.maxConnections": maximumConnections = try int(1...1_000_000)
        case "limits.maxWatchesPerConnection": maximumWatchesPerConnection = try int(1...10_000)
        case "limits.listenBacklog": listenBacklog = try int(1...65_535)
        case "limits.idleTimeoutSeconds": idleTimeoutSeconds = try int(1...86_400)
        case "limits.shutdownGraceSeconds": shutdownGraceSeconds = try int(0...3_600)
        case "limits.maxBreakersPerRegistry": maxBreakersPerRegistry = try int(1...10_000_000)
        case "limits.idleBreakerSeconds": idleBreakerSeconds = try int(0...31_536_000)
        case "limits.maxRegistries": maxRegistries = try int(1...1_000_000)
        case "limits.maxPolicyBytes": maxPolicyBytes = try int(1_024...4 * 1024 * 1024)
        case "presets": presets = try bool()
        case "observability.host": observabilityHost = text
        case "observability.port": observabilityPort = try int(0...65_535)
        case "dashboard.host": dashboard.host = text
        case "dashboard.port": dashboard.port = try int(0...65_535)
        case "dashboard.sessionMinutes": dashboard.sessionMinutes = try int(1...525_600)
        case "dashboard.tokens":
            throw ConfigurationError(key: key, source: source, line: line, "is a list of {name, role, sha256}: set it in the configuration file")
        case "store.kind":
            guard let kind = StoreKind(rawValue: text) else {
                throw ConfigurationError(key: key, source: source, line: line, "(\"\(text)\") must be sqlite or etcd")
            }
            storeKind = kind
        case "store.etcd.endpoints":
            etcdEndpoints = try Self.endpoints(text.split(separator: ",", omittingEmptySubsequences: false).map(String.init), key: key, source: source, line: line)
        case "store.etcd.prefix":
            guard text.hasPrefix("/"), !text.hasSuffix("/") else {
                throw ConfigurationError(key: key, source: source, line: line, "(\"\(text)\") must start with \"/\" and not end with one, e.g. /fusebox")
            }
            etcdPrefix = text
        case "store.etcd.ca": etcdCAPath = try path()
        case "store.etcd.certificate": etcdCertificatePath = try path()
        case "store.etcd.key": etcdKeyPath = try path()
        case "store.etcd.leaseSeconds": etcdLeaseSeconds = try int(2...60)
        case "store.etcd.auditRetention": etcdAuditRetention = try int(1_000...10_000_000)
        case "cluster.replicaId":
            guard (1...63).contains(text.unicodeScalars.count), text.unicodeScalars.allSatisfy(Self.isReplicaIdCharacter) else {
                throw ConfigurationError(
                    key: key, source: source, line: line, "(\"\(text)\") must be 1 to 63 characters of letters, digits, \".\", \"_\" and \"-\"")
            }
            replicaId = text
        case "cluster.advertise":
            do throws(RPCError) {
                let endpoint = try RPCEndpoint(parsing: text)
                advertise = endpoint.description
            } catch {
                throw ConfigurationError(key: key, source: source, line: line, "(\"\(text)\") must be host:port, e.g. fusebox-1.internal:7443")
            }
        case "cluster.peerCertificate": peerCertificatePath = try path()
        case "cluster.peerKey": peerKeyPath = try path()
        default: throw ConfigurationError(key: key, source: source, line: line, "is not a setting")
        }
    }

    /// Checks each endpoint (`https://host:port`, `http://host:port` or
    /// `host:port`, spaces around it ignored) and returns them trimmed; an
    /// empty string or list gives none.
    private static func endpoints(_ items: [String], key: String, source: String, line: Int?) throws(ConfigurationError) -> [String] {
        // Nothing at all (an empty string or list) means none, as by default;
        // validate() refuses that for the etcd store.
        guard items.contains(where: { !$0.trimmingCharacters(in: .whitespaces).isEmpty }) else { return [] }
        var endpoints: [String] = []
        for (i, raw) in items.enumerated() {
            let item = raw.trimmingCharacters(in: .whitespaces)
            guard !item.isEmpty else {
                throw ConfigurationError(
                    key: key, source: source, line: line, "has an empty item (number \(i + 1)); list endpoints like https://10.0.0.1:2379,https://10.0.0.2:2379")
            }
            var address = Substring(item)
            if let scheme = ["https://", "http://"].first(where: { address.hasPrefix($0) }) { address = address.dropFirst(scheme.count) }
            if address.hasSuffix("/") { address = address.dropLast() }
            let valid: Bool
            if address.contains("://") || address.contains("/") {
                valid = false
            } else {
                do throws(RPCError) {
                    _ = try RPCEndpoint(parsing: String(address), examplePort: 2379)
                    valid = true
                } catch {
                    valid = false
                }
            }
            guard valid else {
                throw ConfigurationError(
                    key: key, source: source, line: line,
                    "item \"\(item)\" must be https://host:port, http://host:port or host:port with a port from 1 to 65535, e.g. https://10.0.0.1:2379")
            }
            endpoints.append(item)
        }
        return endpoints
    }

    /// Checks what single keys cannot: the etcd store needs endpoints, and an
    /// etcd client certificate needs its key (and the key its certificate).
    public func validate() throws(ConfigurationError) {
        guard storeKind == .etcd else { return }
        guard !etcdEndpoints.isEmpty else {
            throw ConfigurationError(
                key: "store.etcd.endpoints", source: "configuration", line: nil,
                "is required when store.kind is etcd (FUSEBOX_ETCD_ENDPOINTS or --etcd-endpoints, e.g. https://10.0.0.1:2379)")
        }
        if etcdCertificatePath != nil, etcdKeyPath == nil {
            throw ConfigurationError(key: "store.etcd.key", source: "configuration", line: nil, "is required when store.etcd.certificate is set")
        }
        if etcdKeyPath != nil, etcdCertificatePath == nil {
            throw ConfigurationError(key: "store.etcd.certificate", source: "configuration", line: nil, "is required when store.etcd.key is set")
        }
    }

    private func parseRoles(_ node: Node, source: String) throws(ConfigurationError) -> [RoleRule] {
        guard let sequence = node.sequence else {
            throw ConfigurationError(key: "roles", source: source, line: node.mark?.line, "must be a list of {field, pattern, role}")
        }
        var rules: [RoleRule] = []
        for (i, item) in sequence.enumerated() {
            let key = "roles[\(i)]"
            guard let map = item.mapping else { throw ConfigurationError(key: key, source: source, line: item.mark?.line, "must be {field, pattern, role}") }
            let field = map["field"]?.string ?? ""
            let pattern = map["pattern"]?.string ?? ""
            let role = map["role"]?.string ?? ""
            guard let f = RoleRule.Field(rawValue: field) else {
                throw ConfigurationError(key: key + ".field", source: source, line: item.mark?.line, "(\"\(field)\") must be cn, dns or uri")
            }
            guard !pattern.isEmpty else { throw ConfigurationError(key: key + ".pattern", source: source, line: item.mark?.line, "is required") }
            guard let r = Role(rawValue: role) else {
                throw ConfigurationError(key: key + ".role", source: source, line: item.mark?.line, "(\"\(role)\") must be reader, reporter, admin or replica")
            }
            rules.append(RoleRule(field: f, pattern: pattern, role: r))
        }
        return rules
    }

    /// Applies the `FUSEBOX_*` environment variables of `environmentVariables`.
    public mutating func apply(environment: [String: String]) throws(ConfigurationError) {
        for (variable, key) in Self.environmentVariables.sorted(by: { $0.key < $1.key }) {
            if let value = environment[variable] { try set(key, value, source: "environment variable \(variable)") }
        }
    }

    /// Applies command-line flags, given as (key, value) pairs in order; nil
    /// values (flags not given) change nothing.
    public mutating func apply(flags: [(key: String, value: String?)]) throws(ConfigurationError) {
        for (key, value) in flags {
            if let value { try set(key, value, source: "flag") }
        }
    }

    /// The RPC server settings.
    /// The authority's limits these settings give.
    public var authorityLimits: AuthorityLimits {
        var limits = AuthorityLimits()
        limits.maxBreakersPerRegistry = maxBreakersPerRegistry
        limits.idleEvictionMs = Int64(idleBreakerSeconds) * 1_000
        limits.maxRegistries = maxRegistries
        limits.maxPolicyBytes = maxPolicyBytes
        return limits
    }

    public var rpc: RPCServerConfiguration {
        var c = RPCServerConfiguration()
        c.host = host
        c.port = port
        c.maximumReceiveMessageBytes = maximumMessageBytes
        c.maximumConcurrentStreams = maximumConcurrentStreams
        c.maximumConnections = maximumConnections
        c.maximumWatchesPerConnection = maximumWatchesPerConnection
        c.listenBacklog = listenBacklog
        c.idleTimeout = .seconds(idleTimeoutSeconds)
        c.shutdownGracePeriod = .seconds(shutdownGraceSeconds)
        return c
    }

    /// The TLS settings.
    public var tls: TLSConfiguration {
        .server(certificateChainPath: certificatePath, privateKeyPath: keyPath, clientCAPath: clientCAPath,
                requireClientCertificate: !insecureNoClientCertificates)
    }
}
