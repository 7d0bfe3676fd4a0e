public import FuseboxTLS

/// Where and how an `RPCClient` connects.
public struct RPCClientConfiguration: Sendable {
    /// Server host name or IP.
    public var host: String
    /// Server port.
    public var port: Int
    /// TLS; the server's certificate must name `serverName`. Ignored when `plaintext`.
    public var tls: TLSConfiguration
    /// Speak cleartext HTTP/2 (h2c with prior knowledge, `:scheme http`)
    /// instead of TLS. Default false. Only for peers that offer no TLS on a
    /// trusted network, such as a local etcd started by tests; fuseboxd
    /// itself accepts TLS only.
    public var plaintext = false
    /// Name to verify the server's certificate against (and send as SNI). Default: `host`.
    public var serverName: String?
    /// Time allowed to connect and finish the TLS handshake. Default 10 s.
    public var connectTimeout: Duration = .seconds(10)
    /// Delay before the first reconnection attempt. Default 1 s.
    public var backoffInitial: Duration = .seconds(1)
    /// Growth of the delay after each failed attempt. Default 1.6 (as gRPC).
    public var backoffMultiplier: Double = 1.6
    /// Largest delay. Default 120 s.
    public var backoffMaximum: Duration = .seconds(120)
    /// Random spread of each delay, ± this fraction. Default 0.2.
    public var backoffJitter: Double = 0.2
    /// Largest response message accepted. Default 4 MiB.
    public var maximumReceiveMessageBytes = 4 * 1024 * 1024
    /// While calls are open and nothing has been received from the server
    /// for this long, the client sends a PING. nil (the default): no
    /// keepalive. Without open calls the client never PINGs, so servers that
    /// enforce keepalive like grpc-core (and `RPCServer`) accept any interval.
    public var keepaliveInterval: Duration?
    /// When nothing at all (the PING's ACK or any other frame) arrives within
    /// this time after a keepalive PING, the connection is declared dead and
    /// closed: its calls, long-lived streams included, fail with UNAVAILABLE
    /// "… no answer to keepalive PING within …", and the next call
    /// reconnects. Default 20 s (as gRPC). Used only with `keepaliveInterval`.
    public var keepaliveTimeout: Duration = .seconds(20)

    /// A configuration for `host:port` over `tls`.
    public init(host: String, port: Int, tls: TLSConfiguration, serverName: String? = nil) {
        self.host = host
        self.port = port
        self.tls = tls
        self.serverName = serverName
    }

    /// A configuration for `host:port` over cleartext HTTP/2 (see `plaintext`).
    public static func plaintext(host: String, port: Int) -> RPCClientConfiguration {
        var c = RPCClientConfiguration(host: host, port: port, tls: TLSConfiguration(role: .client))
        c.plaintext = true
        return c
    }

    /// The delay before reconnection attempt `n` (n ≥ 1), with jitter.
    func backoff(attempt n: Int, using random: inout some RandomNumberGenerator) -> Duration {
        let base = Double(backoffInitial.components.seconds) + Double(backoffInitial.components.attoseconds) / 1e18
        let cap = Double(backoffMaximum.components.seconds) + Double(backoffMaximum.components.attoseconds) / 1e18
        var delay = base
        for _ in 1..<max(n, 1) { delay = min(delay * backoffMultiplier, cap) }
        let spread = delay * backoffJitter
        delay += Double.random(in: -spread...spread, using: &random)
        return .milliseconds(Int64(max(0, min(delay, cap)) * 1000))
    }
}

/// Options of one call.
public struct RPCCallOptions: Sendable {
    /// The call fails with DEADLINE_EXCEEDED after this; nil for no limit.
    public var timeout: Duration?
    /// Request metadata.
    public var metadata = RPCMetadata()
    /// When the server is unreachable: false fails at once with UNAVAILABLE;
    /// true waits for a connection (until the timeout).
    public var waitForReady = false

    /// Options.
    public init(timeout: Duration? = nil, metadata: RPCMetadata = RPCMetadata(), waitForReady: Bool = false) {
        self.timeout = timeout
        self.metadata = metadata
        self.waitForReady = waitForReady
    }
}
