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
    /// Idle connections are closed after this many seconds. Default 300.
    public var idleTimeoutSeconds = 300
    /// Calls in flight get this many seconds on shutdown. Default 10.
    public var shutdownGraceSeconds = 10
    /// Breakers one registry may hold. Default 10,000.
    public var maxBreakersPerRegistry = 10_000
    /// Idle CLOSED breakers are evicted after this many seconds (0: never). Default 3,600.
    public var idleBreakerSeconds = 3_600
    /// Load the presets into `default` on first start. Default true.
    public var presets = true
    /// Address of the HTTP listener for /metrics, /healthz and /readyz. Default 127.0.0.1.
    public var observabilityHost = "127.0.0.1"
    /// Its port; 0 picks a free one. Default 7444.
    public var observabilityPort = 7444

    /// The defaults.
    public init() {}

    /// Every key the file may hold, with what it sets.
    public static let keys: [String: String] = [
        "listen.host": "gRPC listen address", "listen.port": "gRPC port (0: any free port)",
        "dataDirectory": "directory of the SQLite database",
        "tls.certificate": "server certificate chain (PEM)", "tls.key": "server private key (PEM)",
        "tls.clientCA": "CA bundle for client certificates (PEM)",
        "tls.insecureNoClientCertificates": "development only: no client certificates, everyone is admin",
        "roles": "list of {field: cn|dns|uri, pattern: glob, role: reader|reporter|admin|replica}",
        "limits.maxMessageBytes": "largest request message", "limits.maxConcurrentStreams": "streams per connection",
        "limits.maxConnections": "open connections", "limits.idleTimeoutSeconds": "idle connection timeout",
        "limits.shutdownGraceSeconds": "time calls in flight get on shutdown", "presets": "load presets on first start",
        "limits.maxBreakersPerRegistry": "breakers one registry may hold",
        "limits.idleBreakerSeconds": "idle CLOSED breakers are evicted after this (0: never)",
        "observability.host": "address of the /metrics, /healthz, /readyz listener", "observability.port": "its port (0: any free port)",
    ]

    /// Applies a YAML document.
    public mutating func apply(yaml text: String, source: String) throws(ConfigurationError) {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw ConfigurationError(key: nil, source: source, line: nil, "is not valid YAML: \(error)")
        }
        guard let root else { return }
        guard let mapping = root.mapping else { throw ConfigurationError(key: nil, source: source, line: root.mark?.line, "must be a mapping of keys") }
        try walk(mapping, prefix: "", source: source)
    }

    private mutating func walk(_ mapping: Node.Mapping, prefix: String, source: String) throws(ConfigurationError) {
        for (keyNode, value) in mapping {
            let key = prefix + (keyNode.string ?? "")
            let line = keyNode.mark?.line
            if key == "roles" {
                roles = try parseRoles(value, source: source)
                continue
            }
            if let nested = value.mapping, Self.keys.keys.contains(where: { $0.hasPrefix(key + ".") }) {
                try walk(nested, prefix: key + ".", source: source)
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
        case "limits.idleTimeoutSeconds": idleTimeoutSeconds = try int(1...86_400)
        case "limits.shutdownGraceSeconds": shutdownGraceSeconds = try int(0...3_600)
        case "limits.maxBreakersPerRegistry": maxBreakersPerRegistry = try int(1...10_000_000)
        case "limits.idleBreakerSeconds": idleBreakerSeconds = try int(0...31_536_000)
        case "presets": presets = try bool()
        case "observability.host": observabilityHost = text
        case "observability.port": observabilityPort = try int(0...65_535)
        default: throw ConfigurationError(key: key, source: source, line: line, "is not a setting")
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

    /// Applies `FUSEBOX_*` environment variables: FUSEBOX_HOST, FUSEBOX_PORT,
    /// FUSEBOX_DATA_DIR, FUSEBOX_TLS_CERT, FUSEBOX_TLS_KEY, FUSEBOX_TLS_CLIENT_CA.
    public mutating func apply(environment: [String: String]) throws(ConfigurationError) {
        let map = [
            "FUSEBOX_HOST": "listen.host", "FUSEBOX_PORT": "listen.port", "FUSEBOX_DATA_DIR": "dataDirectory",
            "FUSEBOX_TLS_CERT": "tls.certificate", "FUSEBOX_TLS_KEY": "tls.key", "FUSEBOX_TLS_CLIENT_CA": "tls.clientCA",
        ]
        for (variable, key) in map.sorted(by: { $0.key < $1.key }) {
            if let value = environment[variable] { try set(key, value, source: "environment variable \(variable)") }
        }
    }

    /// The RPC server settings.
    /// The authority's limits these settings give.
    public var authorityLimits: AuthorityLimits {
        var limits = AuthorityLimits()
        limits.maxBreakersPerRegistry = maxBreakersPerRegistry
        limits.idleEvictionMs = Int64(idleBreakerSeconds) * 1_000
        return limits
    }

    public var rpc: RPCServerConfiguration {
        var c = RPCServerConfiguration()
        c.host = host
        c.port = port
        c.maximumReceiveMessageBytes = maximumMessageBytes
        c.maximumConcurrentStreams = maximumConcurrentStreams
        c.maximumConnections = maximumConnections
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

/// A configuration problem, naming the key and where it came from.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The key (`listen.port`), if the problem concerns one.
    public var key: String?
    /// The file or variable it came from.
    public var source: String
    /// The line in the file, if known.
    public var line: Int?
    /// What is wrong.
    public var message: String

    /// An error.
    public init(key: String?, source: String, line: Int?, _ message: String) {
        self.key = key
        self.source = source
        self.line = line
        self.message = message
    }

    /// `source:line: key message`.
    public var description: String {
        let place = line.map { "\(source):\($0)" } ?? source
        return "\(place): \(key.map { "\($0) " } ?? "")\(message)"
    }
}
