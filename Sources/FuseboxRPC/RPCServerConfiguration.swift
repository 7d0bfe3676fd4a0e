public import FuseboxTLS

/// Limits and timings of an `RPCServer`. Every input has a bound.
public struct RPCServerConfiguration: Sendable {
    /// Address to listen on. Default 127.0.0.1.
    public var host = "127.0.0.1"
    /// Port; 0 picks a free one. Default 0.
    public var port = 0
    /// Largest request message accepted; larger ones end the call with
    /// RESOURCE_EXHAUSTED. Default 4 MiB.
    public var maximumReceiveMessageBytes = 4 * 1024 * 1024
    /// Concurrent streams a client may open on one connection (HTTP/2
    /// SETTINGS_MAX_CONCURRENT_STREAMS); more are refused. Default 100.
    public var maximumConcurrentStreams = 100
    /// Open connections at most. A connection beyond it is served no call:
    /// each is answered UNAVAILABLE naming the limit, so that clients try
    /// another replica or later, and the connection is then closed (GOAWAY).
    /// Default 1,000.
    public var maximumConnections = 1_000
    /// Watches (the router's server-streaming calls) open at once on one
    /// connection; one more is answered RESOURCE_EXHAUSTED naming the limit.
    /// Default 32.
    public var maximumWatchesPerConnection = 32
    /// Connections the kernel queues before they are accepted (`listen`'s
    /// backlog). The kernel caps it at `net.core.somaxconn` (4096 on recent
    /// Linux). Default 4096, nginx's on Linux: with 256, a fleet of 1,000
    /// reconnecting at once saw connects wait over a second.
    public var listenBacklog = 4_096
    /// A connection without open streams for this long is closed (GOAWAY first). Default 5 min.
    public var idleTimeout: Duration = .seconds(300)
    /// A connection from which nothing has arrived for this long is sent a
    /// PING (one at a time). Default 60 s.
    public var keepaliveInterval: Duration = .seconds(60)
    /// A PING not answered within this closes the connection. Default 20 s.
    public var keepaliveTimeout: Duration = .seconds(20)
    /// Clients may PING at most this often while no call is open; each
    /// faster PING is a strike, and after `maximumPingStrikes` the connection
    /// is closed with GOAWAY ENHANCE_YOUR_CALM ("too_many_pings"). As in
    /// grpc-core, every HEADERS or DATA frame the server sends clears the
    /// strikes and the time of the last PING, so a PING after a response
    /// (grpcio's BDP probe) is never a strike. Default 5 min, as gRPC.
    public var minimumPingIntervalWithoutCalls: Duration = .seconds(300)
    /// Strikes tolerated. Default 2.
    public var maximumPingStrikes = 2
    /// On shutdown, calls in flight get this long to finish. Default 10 s.
    public var shutdownGracePeriod: Duration = .seconds(10)

    /// Told about every TLS failure of a connection (with the client's
    /// address), e.g. to audit refused client certificates. Runs on an event
    /// loop: it must return quickly.
    public var onTLSFailure: (@Sendable (TLSError, String?) -> Void)?

    /// Sees every error status before it is sent and may add to it (fuseboxd
    /// adds its error details to INVALID_ARGUMENT statuses the runtime makes,
    /// such as a request that does not decode). Must return quickly.
    public var mapError: (@Sendable (RPCError) -> RPCError)?

    /// Told when a limit refused something: "connections" or
    /// "watches_per_connection". Must return quickly.
    public var onLimitReached: (@Sendable (String) -> Void)?

    /// Told when each call ends: its path, its status and how long it took.
    public var onCallCompleted: (@Sendable (String, RPCStatusCode, Duration) -> Void)?

    /// The defaults.
    public init() {}
}
