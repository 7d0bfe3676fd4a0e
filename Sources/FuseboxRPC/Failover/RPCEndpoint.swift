/// One server's address: host and port.
public struct RPCEndpoint: Sendable, Hashable, CustomStringConvertible {
    /// Host name or IP (an IPv6 address without brackets).
    public var host: String
    /// Port.
    public var port: Int

    /// An endpoint.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses "host:port"; an IPv6 host goes in brackets ("[::1]:7443"), and
    /// an "https://" in front is ignored. Surrounding spaces are ignored.
    ///
    /// - Parameter examplePort: the port the error messages' examples show
    ///   (fuseboxd's 7443 by default; etcd's clients pass 2379).
    /// - Throws: `RPCError` with code `invalidArgument` naming the text and
    ///   the expected form.
    public init(parsing text: String, examplePort: Int = 7443) throws(RPCError) {
        var rest = Substring(text).drop { $0 == " " }
        while rest.last == " " { rest = rest.dropLast() }
        if rest.hasPrefix("https://") { rest = rest.dropFirst("https://".count) }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]),
            (1...65535).contains(port)
        else {
            throw RPCError(
                .invalidArgument,
                "endpoint \"\(text)\" is not HOST:PORT with a port in 1...65535; write it like 127.0.0.1:\(examplePort)")
        }
        var host = rest[..<colon]
        if host.hasPrefix("["), host.hasSuffix("]") {
            host = host.dropFirst().dropLast()
        } else if host.contains(":") {
            throw RPCError(
                .invalidArgument, "endpoint \"\(text)\" has an IPv6 host without brackets; write it like [::1]:\(examplePort)")
        }
        guard !host.isEmpty else {
            throw RPCError(.invalidArgument, "endpoint \"\(text)\" has no host; write it like 127.0.0.1:\(examplePort)")
        }
        self.init(host: String(host), port: port)
    }

    /// "host:port" ("[::1]:7443" for IPv6).
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A non-empty list of endpoints of one service, in order of preference: the
/// replicas of fuseboxd, or the members of an etcd cluster.
public struct RPCEndpoints: Sendable, Hashable, CustomStringConvertible {
    /// Every endpoint, in order of preference; never empty.
    public let all: [RPCEndpoint]

    /// A list of one or more endpoints.
    public init(_ first: RPCEndpoint, _ rest: RPCEndpoint...) {
        all = [first] + rest
    }

    /// A list of `endpoints`.
    ///
    /// - Throws: `RPCError` with code `invalidArgument` when `endpoints` is
    ///   empty or names one endpoint twice.
    public init(_ endpoints: [RPCEndpoint]) throws(RPCError) {
        guard !endpoints.isEmpty else {
            throw RPCError(.invalidArgument, "no endpoints given; pass at least one HOST:PORT")
        }
        var seen: Set<RPCEndpoint> = []
        for endpoint in endpoints where !seen.insert(endpoint).inserted {
            throw RPCError(.invalidArgument, "endpoint \(endpoint) is listed twice; list each server once")
        }
        all = endpoints
    }

    /// Parses a comma-separated list, "a:7443,b:7443,c:7443" (spaces around
    /// the commas are allowed; each entry as `RPCEndpoint(parsing:)`).
    ///
    /// - Throws: `RPCError` with code `invalidArgument` for an empty list, an
    ///   empty entry ("a:7443,,b:7443"), an entry that is not HOST:PORT, or an
    ///   endpoint listed twice.
    public init(parsing list: String) throws(RPCError) {
        var parsed: [RPCEndpoint] = []
        let entries = list.split(separator: ",", omittingEmptySubsequences: false)
        for (i, entry) in entries.enumerated() {
            guard entry.contains(where: { $0 != " " }) else {
                throw RPCError(
                    .invalidArgument,
                    "endpoint list \"\(list)\" has an empty entry (number \(i + 1)); write HOST:PORT[,HOST:PORT…], e.g. a:7443,b:7443"
                )
            }
            parsed.append(try RPCEndpoint(parsing: String(entry)))
        }
        try self.init(parsed)
    }

    /// The first endpoint.
    public var first: RPCEndpoint { all[0] }

    /// The endpoints, comma-separated ("a:7443,b:7443").
    public var description: String { all.map(\.description).joined(separator: ",") }
}
