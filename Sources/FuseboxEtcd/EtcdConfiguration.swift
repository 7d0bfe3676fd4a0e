import FuseboxRPC
public import FuseboxTLS

/// One etcd member's client address.
public struct EtcdEndpoint: Sendable, Hashable, CustomStringConvertible {
    /// Host name or IP.
    public var host: String
    /// Client port.
    public var port: Int

    /// An endpoint.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses "host:port" (an IPv6 host in brackets, "[::1]:2379"), as
    /// FuseboxRPC's `RPCEndpoint` does for every client.
    public init(parsing text: String) throws(EtcdError) {
        do throws(RPCError) {
            let endpoint = try RPCEndpoint(parsing: text, examplePort: 2379)
            self.init(host: endpoint.host, port: endpoint.port)
        } catch {
            throw EtcdError(.invalidArgument, error.message)
        }
    }

    /// "host:port".
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// How an `EtcdClient` reaches etcd and how hard it tries.
public struct EtcdConfiguration: Sendable {
    /// The members to use, in order of preference. The client talks to one at
    /// a time and moves to the next when one fails.
    public var endpoints: [EtcdEndpoint]
    /// TLS to the members (same OpenSSL layer as fuseboxd); nil speaks
    /// cleartext HTTP/2, for an etcd listening on `http://` (tests, loopback).
    public var tls: TLSConfiguration?
    /// The name the members' certificates must carry; default: each endpoint's host.
    public var serverName: String?
    /// Time allowed for one attempt of a unary request. Default 5 s.
    public var requestTimeout: Duration = .seconds(5)
    /// Time allowed for one request including its retries on other
    /// endpoints; a long-lived stream's reconnection gives up after it too. Default 15 s.
    public var retryTimeout: Duration = .seconds(15)
    /// Time allowed to connect to one member. Default 2 s.
    public var connectTimeout: Duration = .seconds(2)
    /// First delay between retries; it doubles up to `backoffMaximum`, and
    /// each delay is drawn uniformly from its upper half (jitter). Default 50 ms.
    public var backoffInitial: Duration = .milliseconds(50)
    /// Largest delay between retries. Default 1 s.
    public var backoffMaximum: Duration = .seconds(1)
    /// PING interval of the HTTP/2 connections while calls (watches, lease
    /// keepalives) are open, so a member that vanished without closing the
    /// connection is noticed; nil for none. Default 10 s, with a 5 s timeout.
    public var keepaliveInterval: Duration? = .seconds(10)
    /// Time a keepalive PING may go unanswered. Default 5 s.
    public var keepaliveTimeout: Duration = .seconds(5)

    /// A configuration for `endpoints` ("host:port" each); `tls` nil for cleartext.
    public init(endpoints: [String], tls: TLSConfiguration?) throws(EtcdError) {
        var parsed: [EtcdEndpoint] = []
        for text in endpoints { parsed.append(try EtcdEndpoint(parsing: text)) }
        try self.init(endpoints: parsed, tls: tls)
    }

    /// A configuration for `endpoints`; `tls` nil for cleartext.
    public init(endpoints: [EtcdEndpoint], tls: TLSConfiguration?) throws(EtcdError) {
        guard !endpoints.isEmpty else {
            throw EtcdError(.invalidArgument, "no etcd endpoints given; pass at least one host:port")
        }
        self.endpoints = endpoints
        self.tls = tls
    }

    /// The delay before retry `attempt` (1, 2, …): exponential, capped, upper-half jitter.
    func backoff(attempt: Int, using random: inout some RandomNumberGenerator) -> Duration {
        RPCBackoff(initial: backoffInitial, maximum: backoffMaximum).delay(attempt: attempt, using: &random)
    }
}
