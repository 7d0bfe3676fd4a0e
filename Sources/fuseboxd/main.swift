import ArgumentParser
import CProtobufC
import Foundation
import FuseboxEtcd
import FuseboxDashboard
import FuseboxRPC
import FuseboxServer
import FuseboxTLS
import FuseboxWire
import Logging
import NIOPosix
import Metrics
import NIOCore
import Prometheus
import ServiceLifecycle
import UnixSignals

/// fuseboxd's version; the API it serves is `fusebox.v1`.
let fuseboxdVersion = "0.1.0"

@main
struct Fuseboxd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fuseboxd",
        abstract: "The Fusebox control plane: shared circuit breakers and resilience policies for a fleet.",
        version: "fuseboxd \(fuseboxdVersion) (API fusebox.v1, \(allWireMessageTypes.count) message types, protobuf-c \(String(cString: protobuf_c_version())))",
        subcommands: [Serve.self, Backup.self, Migrate.self, DashboardToken.self], defaultSubcommand: Serve.self)
}

/// etcd's TLS files, for `serve` and `migrate`.
struct EtcdTLSOptions: ParsableArguments {
    @Option(name: .customLong("etcd-ca"), help: "CA bundle for etcd's server certificates, PEM (store.etcd.ca).")
    var ca: String?
    @Option(name: .customLong("etcd-cert"), help: "Client certificate for etcd, PEM (store.etcd.certificate).")
    var cert: String?
    @Option(name: .customLong("etcd-key"), help: "Its private key, PEM (store.etcd.key).")
    var key: String?

    /// The settings they give, as flags.
    var flags: [(String, String?)] { [("store.etcd.ca", ca), ("store.etcd.certificate", cert), ("store.etcd.key", key)] }
}

/// `fuseboxd dashboard-token`: a new dashboard access token and its configuration entry.
struct DashboardToken: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dashboard-token",
        abstract: "Make a dashboard access token and the configuration entry that holds its hash.",
        discussion: """
            Prints the token once (give it to its owner) and the entry for dashboard.tokens in the
            configuration file, which keeps only the token's SHA-256 (docs/DASHBOARD.md).

            Example:
              fuseboxd dashboard-token --name alice --role admin
            """)

    @Option(name: .long, help: "Who signs in with it; the audit log names their actions dashboard:NAME.")
    var name: String
    @Option(name: .long, help: "reader or admin.")
    var role: String

    func validate() throws {
        guard role == "reader" || role == "admin" else { throw ValidationError("--role must be reader or admin") }
        guard name.range(of: #"^[A-Za-z0-9][A-Za-z0-9._@-]{0,62}$"#, options: .regularExpression) != nil else {
            throw ValidationError("--name must be 1-63 letters, digits, \".\", \"_\", \"@\" or \"-\"")
        }
    }

    func run() throws {
        let (token, digest) = DashboardServer.makeToken()
        say("token (give this to \(name); it is shown once): \(token)")
        say("config (under dashboard.tokens):")
        say("    - name: \(name)")
        say("      role: \(role)")
        say("      sha256: \(digest)")
    }
}

/// `fuseboxd backup`: a consistent copy of the database while the server runs.
struct Backup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy the database, consistently, while fuseboxd keeps running.",
        discussion: """
            Restore by stopping fuseboxd, putting the copy in place as <data-dir>/fusebox.db
            (removing fusebox.db-wal and fusebox.db-shm), and starting it again.

            Example:
              fuseboxd backup --data-dir /var/lib/fusebox --out /backups/fusebox-$(date +%F).db
            """)

    @Option(name: .customLong("data-dir"), help: "Directory of the running server's database.")
    var dataDirectory: String
    @Option(name: .long, help: "File to write; it must not exist.")
    var out: String

    func run() throws {
        guard !FileManager.default.fileExists(atPath: out) else {
            throw ValidationError("\(out) exists already; choose a new file")
        }
        do {
            try SQLiteStore.backup(directory: dataDirectory, to: out)
        } catch {
            FileHandle.standardError.write(Data("fuseboxd backup: \(error)\n".utf8))
            throw ExitCode(1)
        }
        say("backup written to \(out)")
    }
}

/// `fuseboxd serve` (the default): run the control plane.
struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy a single server's SQLite data directory into etcd, for replicated mode.",
        discussion: """
            Copies registries, policies with their versions and history, breaker states and
            generations, the generation floor and the audit log into an empty etcd prefix; a
            prefix that already holds data is refused. Stop the single server first.
            etcd's TLS files come from --etcd-ca, --etcd-cert and --etcd-key, FUSEBOX_ETCD_CA / _CERT / _KEY,
            or --config.

            Example:
              fuseboxd migrate --data-dir /var/lib/fusebox --etcd-endpoints https://10.0.0.1:2379,https://10.0.0.2:2379
            """)

    @Option(name: .long, help: "YAML configuration file (store.etcd.* and dataDirectory are read from it).")
    var config: String?
    @Option(name: .customLong("data-dir"), help: "The SQLite data directory to copy (dataDirectory).")
    var dataDirectory: String?
    @Option(name: .customLong("etcd-endpoints"), help: "etcd client URLs, comma separated (store.etcd.endpoints).")
    var etcdEndpoints: String?
    @Option(name: .customLong("etcd-prefix"), help: "Prefix to copy into (store.etcd.prefix); it must be empty.")
    var etcdPrefix: String?
    @OptionGroup var etcdTLS: EtcdTLSOptions

    func run() async throws {
        let settings: ServerConfiguration
        do {
            settings = try loadServerSettings(config: config, flags: [
                ("dataDirectory", dataDirectory), ("store.kind", "etcd"), ("store.etcd.endpoints", etcdEndpoints), ("store.etcd.prefix", etcdPrefix),
            ] + etcdTLS.flags)
        } catch {
            FileHandle.standardError.write(Data("fuseboxd migrate: \(error)\n".utf8))
            throw ExitCode(78)
        }
        guard FileManager.default.fileExists(atPath: settings.dataDirectory + "/fusebox.db") else {
            FileHandle.standardError.write(Data("fuseboxd migrate: no database at \(settings.dataDirectory)/fusebox.db\n".utf8))
            throw ExitCode(66)  // EX_NOINPUT
        }
        let client: EtcdClient
        do {
            client = try EtcdClient(configuration: try settings.etcdConfiguration())
        } catch {
            FileHandle.standardError.write(Data("fuseboxd migrate: \(error)\n".utf8))
            throw ExitCode(78)
        }
        do {
            let summary = try await Migration.sqliteToEtcd(dataDirectory: settings.dataDirectory, client: client, prefix: settings.etcdPrefix)
            await client.close()
            say("migrated \(settings.dataDirectory) into etcd prefix \(settings.etcdPrefix): \(summary)")
        } catch {
            await client.close()
            FileHandle.standardError.write(Data("fuseboxd migrate: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the control plane (the default command).",
        discussion: """
            Settings come from --config (YAML), then FUSEBOX_* environment variables, then flags.
            SIGTERM or SIGINT shuts down gracefully: GOAWAY, watch streams ended, calls in flight
            finished, store closed, exit 0.

            Examples:
              fuseboxd --config fusebox.yaml
              fuseboxd --port 0 --data-dir /tmp/fb --cert server.pem --key server.key --client-ca ca.pem
              fuseboxd --dev-insecure-no-client-certs      # development only: no mTLS
              fuseboxd --store etcd --etcd-endpoints https://10.0.0.1:2379,https://10.0.0.2:2379 --replica-id fb-1
            SIGHUP reloads the certificate, key and CA files: new connections use them.
            """)

    @Option(name: .long, help: "YAML configuration file.")
    var config: String?
    @Option(name: .long, help: "gRPC listen address (listen.host).")
    var host: String?
    @Option(name: .long, help: "gRPC port, 0 for any free port (listen.port).")
    var port: Int?
    @Option(name: .customLong("data-dir"), help: "Directory of the SQLite database (dataDirectory).")
    var dataDirectory: String?
    @Option(name: .long, help: "Server certificate chain, PEM (tls.certificate).")
    var cert: String?
    @Option(name: .long, help: "Server private key, PEM (tls.key).")
    var key: String?
    @Option(name: .customLong("client-ca"), help: "CA bundle for client certificates, PEM (tls.clientCA).")
    var clientCA: String?
    @Option(name: .customLong("metrics-port"), help: "Port of the HTTP /metrics, /healthz, /readyz listener (observability.port).")
    var metricsPort: Int?
    @Option(name: .long, help: "Where state is kept: sqlite or etcd (store.kind).")
    var store: String?
    @Option(name: .customLong("etcd-endpoints"), help: "etcd client URLs, comma separated, e.g. https://10.0.0.1:2379 (store.etcd.endpoints).")
    var etcdEndpoints: String?
    @Option(name: .customLong("etcd-prefix"), help: "Prefix of every key in etcd (store.etcd.prefix).")
    var etcdPrefix: String?
    @OptionGroup var etcdTLS: EtcdTLSOptions
    @Option(name: .customLong("replica-id"), help: "This replica's name, unique in the cluster (cluster.replicaId).")
    var replicaId: String?
    @Option(name: .long, help: "host:port other replicas reach this replica at (cluster.advertise).")
    var advertise: String?
    @Flag(name: .customLong("dev-insecure-no-client-certs"), help: "Development only: accept clients without certificates, each as admin.")
    var insecure = false
    @Flag(name: .long, help: "Print the settings in effect and exit.")
    var checkConfig = false

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .info
            return handler
        }
        let logger = Logger(label: "fuseboxd")
        let prometheus = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: prometheus)
        // A call's own time is tens of microseconds: the default buckets start at
        // 5 ms, which would put every call in the first one.
        factory.durationHistogramBuckets["fusebox_rpc_duration_seconds"] =
            [.microseconds(10), .microseconds(20), .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2)]
            + factory.defaultDurationHistogramBuckets
        MetricsSystem.bootstrap(factory)
        let settings: ServerConfiguration
        do {
            settings = try loadSettings()
        } catch {
            logger.critical("configuration error: \(error)")
            throw ExitCode(78)  // EX_CONFIG
        }
        if checkConfig {
            switch settings.storeKind {
            case .sqlite:
                print("configuration OK: listen \(settings.host):\(settings.port), data \(settings.dataDirectory)")
            case .etcd:
                print(
                    "configuration OK: listen \(settings.host):\(settings.port), store etcd \(settings.etcdEndpoints.joined(separator: ","))"
                        + " prefix \(settings.etcdPrefix), replica \(settings.effectiveReplicaId)")
            }
            return
        }
        if settings.insecureNoClientCertificates {
            logger.warning("running WITHOUT client certificates (--dev-insecure-no-client-certs): every caller is admin. Never do this outside development.")
        }
        let replication: FuseboxServerApp.Configuration.Replication?
        do {
            replication = try settings.replication(version: fuseboxdVersion)
        } catch {
            logger.critical("configuration error: \(error)")
            throw ExitCode(78)
        }
        if replication == nil {
            try FileManager.default.createDirectory(atPath: settings.dataDirectory, withIntermediateDirectories: true)
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: NIOCore.System.coreCount)
        var appConfiguration = FuseboxServerApp.Configuration(dataDirectory: settings.dataDirectory, tls: settings.tls)
        appConfiguration.rpc = settings.rpc
        appConfiguration.roleRules = settings.roles
        appConfiguration.insecureAnonymousRole = settings.insecureNoClientCertificates ? .admin : nil
        appConfiguration.seedPresets = settings.presets
        appConfiguration.alerts = settings.alerts
        appConfiguration.limits = settings.authorityLimits
        appConfiguration.replicaId = settings.replicaId
        appConfiguration.replication = replication
        let app: FuseboxServerApp
        do {
            app = try await FuseboxServerApp.start(appConfiguration, group: group, version: fuseboxdVersion)
        } catch {
            logger.critical("fuseboxd cannot start: \(error)")
            try? await group.shutdownGracefully()
            throw ExitCode(1)
        }
        // The line tests and scripts read to find the port; written unbuffered.
        say("fuseboxd \(fuseboxdVersion) listening on \(settings.host):\(app.rpc.port) (gRPC over TLS, \(settings.insecureNoClientCertificates ? "client certificates NOT required" : "mutual TLS"))")
        if let replication {
            say("store: etcd \(settings.etcdEndpoints.joined(separator: ",")) prefix \(replication.prefix), replica \(replication.node.replicaId) (\(app.replica?.advertise ?? ""))")
        } else {
            say("data: \(settings.dataDirectory)")
        }
        let observability: ObservabilityServer
        do {
            observability = try await ObservabilityServer.start(
                host: settings.observabilityHost, port: settings.observabilityPort, group: group,
                metrics: { prometheus.emitToBuffer() }, ready: { app.isReady })
        } catch {
            logger.critical("cannot listen on \(settings.observabilityHost):\(settings.observabilityPort) for /metrics: \(error)")
            await app.shutdown()
            try? await group.shutdownGracefully()
            throw ExitCode(1)
        }
        say("observability on http://\(settings.observabilityHost):\(observability.port)/metrics (/healthz, /readyz)")
        var dashboard: DashboardServer?
        if settings.dashboard.enabled {
            do {
                dashboard = try await DashboardServer.start(settings: settings.dashboard, app: app, tls: settings.tls, group: group)
            } catch {
                logger.critical("cannot serve the dashboard on \(settings.dashboard.host):\(settings.dashboard.port): \(error)")
                await observability.stop()
                await app.shutdown()
                try? await group.shutdownGracefully()
                throw ExitCode(1)
            }
            say("dashboard on https://\(settings.dashboard.host):\(dashboard?.port ?? 0)/ (\(settings.dashboard.tokens.count) tokens)")
        }
        let serviceGroup = ServiceGroup(configuration: .init(
            services: [.init(service: ControlPlaneService(app: app, dashboard: dashboard, logger: logger), successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: logger))
        try await serviceGroup.run()
        await observability.stop()
        try await group.shutdownGracefully()
        logger.info("fuseboxd stopped")
    }

    private func loadSettings() throws -> ServerConfiguration {
        var settings = try loadServerSettings(config: config, flags: [
            ("listen.host", host), ("listen.port", port.map(String.init)), ("dataDirectory", dataDirectory),
            ("tls.certificate", cert), ("tls.key", key), ("tls.clientCA", clientCA),
            ("observability.port", metricsPort.map(String.init)),
            ("store.kind", store), ("store.etcd.endpoints", etcdEndpoints), ("store.etcd.prefix", etcdPrefix),
            ("cluster.replicaId", replicaId), ("cluster.advertise", advertise),
        ] + etcdTLS.flags)
        if insecure { settings.insecureNoClientCertificates = true }
        return settings
    }
}

/// fuseboxd's settings: `config` (or FUSEBOX_CONFIG), then FUSEBOX_*
/// variables, then `flags`, validated.
func loadServerSettings(config: String?, flags: [(String, String?)]) throws -> ServerConfiguration {
    var settings = ServerConfiguration()
    let environment = ProcessInfo.processInfo.environment
    if let path = config ?? environment["FUSEBOX_CONFIG"] {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError(key: nil, source: path, line: nil, "cannot be read: \(error.localizedDescription)")
        }
        try settings.apply(yaml: text, source: path)
    }
    try settings.apply(environment: environment)
    try settings.apply(flags: flags)
    try settings.validate()
    return settings
}

/// Writes a line to standard output at once (print is block-buffered into pipes and files).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// The control plane as a lifecycle service: serves until graceful shutdown
/// is signalled, then shuts the server down in order.
struct ControlPlaneService: Service {
    let app: FuseboxServerApp
    let dashboard: DashboardServer?
    let logger: Logger

    func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await withThrowingTaskGroup(of: Void.self) { serving in
                    serving.addTask { try await app.serve() }
                    if let dashboard { serving.addTask { await dashboard.serve() } }
                    try await serving.waitForAll()
                }
            }
            group.addTask {
                try? await gracefulShutdown()
                await dashboard?.shutdown()
                await app.shutdown()
            }
            group.addTask {
                // SIGHUP: reload certificates; a failed reload keeps the old ones.
                for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
                    do {
                        try app.tls.reload()
                        try dashboard?.reloadTLS()
                        logger.info("TLS certificates reloaded; new connections use them")
                    } catch {
                        logger.error("TLS reload failed, keeping the previous certificates: \(error)")
                    }
                }
            }
            try await group.next()
            try await group.next()
            group.cancelAll()
        }
    }
}
