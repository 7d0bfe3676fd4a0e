import Foundation
public import FuseboxCore
import FuseboxRPC
import FuseboxTLS
public import Logging
import NIOCore
import NIOPosix
public import Tracing

/// A breaker's state change as this client saw it.
public struct BreakerStateChange: Sendable, Hashable {
    /// The breaker's registry.
    public var registry: String
    /// The breaker (guard) name.
    public var breaker: String
    /// The state before.
    public var from: BreakerState
    /// The state now.
    public var to: BreakerState
    /// The generation of the new state. For a change of this client's
    /// breaker alone (`clientOnly`), the fleet breaker's generation, which
    /// did not change.
    public var generation: UInt64
    /// Why, for people: the server's reason, or the local breaker's, e.g.
    /// "local open below quorum: failure rate 100% ≥ 50% over 20 calls from
    /// 1 client; only 1 of 2 required clients failing".
    public var reason: String = ""
    /// True when only this client's breaker changed, not the fleet's: it
    /// opened because fuseboxd saw a trip rule fire on this client's failures
    /// below the policy's `minimumClients`, or that local open ended and the
    /// breaker follows the fleet's state again.
    public var clientOnly: Bool = false
    /// The clients whose outcomes led to the change, as fuseboxd named them
    /// (empty for changes it did not report with clients, and for local ones).
    public var contributingClients: [String] = []
}

/// How a service's Fusebox SDK connects and behaves.
public struct FuseboxConfiguration: Sendable {
    /// fuseboxd's endpoints, in order of preference: one, or each replica of
    /// a replicated fuseboxd. The SDK talks to one at a time and fails over
    /// to the next (docs/CLIENT.md, "Several endpoints").
    /// At least one; each listed once (`start` and `connect` check).
    public var endpoints: [FuseboxEndpoint]
    /// The first endpoint's host. Setting it keeps only the first endpoint.
    public var host: String {
        get { endpoints.first?.host ?? "" }
        set { endpoints = [FuseboxEndpoint(host: newValue, port: port)] }
    }
    /// The first endpoint's port. Setting it keeps only the first endpoint.
    public var port: Int {
        get { endpoints.first?.port ?? 0 }
        set { endpoints = [FuseboxEndpoint(host: host, port: newValue)] }
    }
    /// TLS: the CA that signed fuseboxd's certificate and, for mTLS, this
    /// service's certificate (role reporter or above).
    public var tls: FuseboxTLS
    /// The name fuseboxd's certificates must carry; default: each endpoint's host.
    public var serverName: String?
    /// This process's stable identity in reports, e.g. "checkout-7f9c-2".
    public var clientID: String
    /// The registries whose policies and breakers this service uses.
    public var registries: [String] = ["default"]
    /// Where fetched policies are cached for a start without the server.
    public var cacheDirectory: String
    /// How long to wait for fuseboxd at startup before using the cache.
    public var startupTimeout: Duration = .seconds(5)
    /// Outcomes are reported at least this often…
    public var reportInterval: Duration = .milliseconds(100)
    /// …or as soon as one breaker has this many.
    public var reportBatchSize: Int = 1_000
    /// A report gives up after this long.
    public var reportTimeout: Duration = .seconds(2)
    /// A half-open permit request gives up after this long (the call is then rejected).
    public var permitTimeout: Duration = .seconds(1)
    /// With fuseboxd unreachable for longer than this, breakers run locally.
    public var stalenessBound: Duration = .seconds(10)
    /// Delays between attempts on different endpoints within one call
    /// (several endpoints only): from this, doubling up to
    /// `failoverBackoffMaximum`, jittered. Default 50 ms.
    public var failoverBackoffInitial: Duration = RPCFailoverClient.defaultBackoff.initial
    /// The cap of the failover backoff. Default 2 s.
    public var failoverBackoffMaximum: Duration = RPCFailoverClient.defaultBackoff.maximum
    /// Reconnect backoff: full jitter over base × 2^failures, capped.
    public var reconnectBackoffBase: Duration = .milliseconds(100)
    /// The cap of the reconnect backoff.
    public var reconnectBackoffMaximum: Duration = .seconds(10)
    /// While the watches (or any call) are open and nothing has come from
    /// fuseboxd for this long, the SDK PINGs the connection; nil turns
    /// keepalive off. It is what notices a fuseboxd that stopped answering
    /// without closing the connection (a stopped process, a lost route), so
    /// that `stalenessBound` can start counting. Default 10 s.
    public var keepaliveInterval: Duration? = .seconds(10)
    /// With no answer this long after a keepalive PING the connection is
    /// closed: the watches end, reconnect with backoff, and after
    /// `stalenessBound` without them the breakers run locally. So local mode
    /// starts at most about `keepaliveInterval` + `keepaliveTimeout` +
    /// `stalenessBound` after fuseboxd stops answering. Default 5 s.
    public var keepaliveTimeout: Duration = .seconds(5)
    /// Where guarded operations' spans go (one span, `fusebox.guard`, per
    /// `run`); nil: the tracer bootstrapped with `InstrumentationSystem`
    /// when the session starts, and no spans when that is the no-op one.
    public var tracer: (any Tracer)?
    /// When guards' health reports say warning or critical (`Fusebox.health()`).
    public var healthThresholds = HealthThresholds()
    /// Called on every breaker state change this client applies.
    public var onStateChange: (@Sendable (BreakerStateChange) -> Void)?
    /// Called for each guard event: state changes, retries, rejections,
    /// timeouts and calls with their outcome and latency. Called on the
    /// calling task (or the SDK's connection task for state changes): keep it
    /// short. Unset, events cost nothing.
    public var onEvent: (@Sendable (GuardEvent) -> Void)?

    /// A configuration with the defaults, for one fuseboxd at `host:port`.
    public init(host: String, port: Int, tls: FuseboxTLS, clientID: String? = nil, cacheDirectory: String) {
        self.init(endpoints: [FuseboxEndpoint(host: host, port: port)], tls: tls, clientID: clientID, cacheDirectory: cacheDirectory)
    }

    /// A configuration with the defaults, for the fuseboxd endpoints
    /// `endpoints` (e.g. `try FuseboxEndpoint.list(parsing: "a:7443,b:7443")`).
    public init(endpoints: [FuseboxEndpoint], tls: FuseboxTLS, clientID: String? = nil, cacheDirectory: String) {
        self.endpoints = endpoints
        self.tls = tls
        self.clientID = clientID ?? "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"
        self.cacheDirectory = cacheDirectory
    }
}

/// The Fusebox SDK: fetches a service's policies at startup (fail-static:
/// server, else disk cache, else presets), keeps them and the fleet's breaker
/// states current through its `session`, and hands out guards.
///
/// ```swift
/// let fusebox = try await Fusebox.start(configuration)
/// let payments = fusebox.guard("stripe-api", policy: "external")
/// let receipt = try await payments.run { try await stripe.charge(order) }
/// ```
///
/// With swift-service-lifecycle, `connect` instead and run `session` in the
/// ServiceGroup (see `FleetSession`).
public final class Fusebox: Sendable {
    /// The watches, the reporter and local mode, as a `Service`.
    public let session: FleetSession
    /// Where the policies came from at startup.
    public let policySource: PolicySource
    /// The task `start` runs the session in (nil after `connect`).
    private let runner: Task<Void, Never>?

    /// Connects and loads policies (never failing for want of the server),
    /// without running the session: run `session` in a ServiceGroup (or
    /// call `Fusebox.start` instead). Guards work at once; breaker states and
    /// policy changes follow the fleet once the session runs. Throws only for
    /// a configuration it cannot use: no endpoints or one listed twice, or
    /// TLS files that are missing or unreadable.
    public static func connect(
        _ configuration: FuseboxConfiguration, logger: Logger = Logger(label: "fusebox.client")
    ) async throws(FuseboxConfigurationError) -> Fusebox {
        try await Fusebox(configuration, group: MultiThreadedEventLoopGroup.singleton, logger: logger, run: false)
    }

    /// `connect` on the event loops of `group` (tests run many SDKs on one).
    static func connect(
        _ configuration: FuseboxConfiguration, group: any EventLoopGroup, logger: Logger = Logger(label: "fusebox.client")
    ) async throws(FuseboxConfigurationError) -> Fusebox {
        try await Fusebox(configuration, group: group, logger: logger, run: false)
    }

    /// Connects, loads policies (never failing for want of the server) and
    /// runs the session until `shutdown()`. Throws only for a configuration
    /// it cannot use: no endpoints or one listed twice, or TLS files that
    /// are missing or unreadable.
    public static func start(
        _ configuration: FuseboxConfiguration, logger: Logger = Logger(label: "fusebox.client")
    ) async throws(FuseboxConfigurationError) -> Fusebox {
        try await Fusebox(configuration, group: MultiThreadedEventLoopGroup.singleton, logger: logger, run: true)
    }

    /// `start` on the event loops of `group` (tests run many SDKs on one).
    static func start(
        _ configuration: FuseboxConfiguration, group: any EventLoopGroup, logger: Logger = Logger(label: "fusebox.client")
    ) async throws(FuseboxConfigurationError) -> Fusebox {
        try await Fusebox(configuration, group: group, logger: logger, run: true)
    }

    private init(
        _ configuration: FuseboxConfiguration, group: any EventLoopGroup, logger: Logger, run: Bool
    ) async throws(FuseboxConfigurationError) {
        let endpoints: RPCEndpoints
        do throws(RPCError) {
            endpoints = try RPCEndpoints(configuration.endpoints.map { RPCEndpoint(host: $0.host, port: $0.port) })
        } catch {
            throw FuseboxConfigurationError(field: "endpoints", message: error.message)
        }
        var rpc = RPCClientConfiguration(
            host: endpoints.first.host, port: endpoints.first.port, tls: configuration.tls.transport, serverName: configuration.serverName)
        // The startup timeout covers every endpoint: one that swallows SYNs
        // (no refusal) must leave time to try the others.
        let endpointCount = endpoints.all.count
        rpc.connectTimeout = max(min(configuration.startupTimeout, .seconds(5)) / endpointCount, .milliseconds(500))
        // The session's watch loops do the reconnect backoff (full jitter); the
        // transport's own backoff stays short so it does not add to it.
        rpc.backoffInitial = .milliseconds(50)
        rpc.backoffMaximum = .milliseconds(200)
        rpc.keepaliveInterval = configuration.keepaliveInterval
        rpc.keepaliveTimeout = configuration.keepaliveTimeout
        let client: RPCFailoverClient
        do throws(TLSError) {
            client = try RPCFailoverClient(
                configuration: rpc, endpoints: endpoints,
                backoff: RPCBackoff(initial: configuration.failoverBackoffInitial, maximum: configuration.failoverBackoffMaximum), group: group)
        } catch {
            throw FuseboxConfigurationError(field: "tls", message: error.message)
        }
        let snapshot = await PolicySnapshot.load(
            registries: configuration.registries, client: client, cacheDirectory: configuration.cacheDirectory,
            timeout: configuration.startupTimeout, logger: logger)
        let session = FleetSession(configuration: configuration, client: client, eventLoop: group.next(), policies: snapshot, logger: logger)
        self.session = session
        self.policySource = snapshot.source
        // For apps without a ServiceGroup: the one task the SDK starts, which
        // only hosts the session's run() (every background task is a child of
        // it); shutdown() stops run() and waits for this task.
        self.runner = run ? Task { await session.run() } : nil
    }

    /// The guard `name` (also its breaker's name) running policy `policy` of
    /// `registry`, classifying its operations' errors with `classifier`. The
    /// same name returns the same guard (with the policy and classifier it
    /// was first made with).
    public func `guard`(
        _ name: String, policy: String, registry: String = "default", classifier: ErrorClassifier = .standard
    ) -> Guard {
        session.makeGuard(name, policy: policy, registry: registry, classifier: classifier)
    }

    /// Registers the fallback handler policies name `name`
    /// (`fallback: {action: handler, handler: name}`): when a guarded call
    /// fails in a way such a policy's fallback answers, its value is the
    /// call's result. It must return the call's result type; a handler
    /// registered again under the same name replaces the first.
    public func registerFallback(_ name: String, _ handler: @escaping FallbackHandler) {
        session.fallbackHandlers.register(name, handler)
    }

    /// Fleet or local breakers.
    public var mode: ClientMode { session.mode }

    /// This run of the process in outcome reports: its start time in
    /// microseconds since 1970, so a restarted process with the same client
    /// id has a larger one and fuseboxd counts its reports from sequence 1 again.
    public var incarnation: UInt64 { session.incarnation }

    /// How long the client's view has gone unconfirmed by fuseboxd (zero while connected).
    public var staleness: Duration { session.staleness }

    /// The policies held now.
    public var policies: PolicySnapshot { session.policies }

    /// The health of every guard (last 100 calls and last hour: success rate,
    /// mean/p95/p99 latency, the last errors and failure), each healthy,
    /// warning or critical by `configuration.healthThresholds`, and the worst
    /// of them; warning too while the breakers run locally. `json()` gives
    /// it as JSON, e.g. for a `/health` endpoint.
    public func health() -> FuseboxHealth {
        let guards = session.state.guards.sorted { ($0.registry, $0.name) < ($1.registry, $1.name) }.map { $0.health() }
        var status = guards.map(\.status).max() ?? .healthy
        var reasons: [String] = []
        if mode == .local {
            status = max(status, .warning)
            reasons.append("fuseboxd out of reach: breakers run locally")
        }
        for g in guards { reasons += g.reasons.map { "\(g.registry)/\(g.name): \($0)" } }
        let staleness = session.staleness
        return FuseboxHealth(
            status: status, reasons: reasons, mode: mode.rawValue,
            stalenessSeconds: Double(staleness.components.seconds) + Double(staleness.components.attoseconds) / 1e18, guards: guards)
    }

    /// Stops the session (wherever it runs) and waits until it has ended:
    /// what was counted but not reported goes out first; the last batch says
    /// goodbye (`final`), so fuseboxd forgets this client at once instead of
    /// counting it among the reporters that went silent; then the connection
    /// closes.
    public func shutdown() async {
        await session.shutdown()
        await runner?.value
    }
}
