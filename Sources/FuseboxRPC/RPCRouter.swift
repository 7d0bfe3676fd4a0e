public import FuseboxWire

/// Maps `/package.Service/Method` to handlers.
public struct RPCRouter: Sendable {
    /// A handler on raw bytes: reads requests, sends responses, and returns
    /// trailing metadata; it throws `RPCError` to end with another status.
    public typealias Handler = @Sendable (RPCRequestReader, RPCResponseSender, RPCServerContext) async throws -> RPCMetadata

    private(set) var handlers: [String: Handler] = [:]
    /// Paths of server-streaming methods: watches, which stay open and count
    /// against `RPCServerConfiguration.maximumWatchesPerConnection`.
    private(set) var watchPaths: Set<String> = []

    /// Largest request message decoded, for typed handlers.
    public var limits = WireLimits.default

    /// An empty router.
    public init() {}

    /// Registers a raw handler for `/service/method`.
    public mutating func register(_ service: String, _ method: String, _ handler: @escaping Handler) {
        handlers["/\(service)/\(method)"] = handler
    }

    /// The handler for `path`.
    func handler(for path: String) -> Handler? { handlers[path] }

    /// The service names registered.
    public var services: Set<String> {
        Set(handlers.keys.compactMap { $0.split(separator: "/").first.map(String.init) })
    }

    /// Registers a unary method.
    public mutating func unary<Request: WireMessage, Response: WireMessage>(
        _ service: String, _ method: String, _ body: @escaping @Sendable (Request, RPCServerContext) async throws -> Response
    ) {
        let limits = self.limits
        register(service, method) { reader, sender, context in
            let request = try await Self.single(Request.self, reader, limits)
            sender.respond(try await body(request, context).encode())
            return RPCMetadata()
        }
    }

    /// Registers a server-streaming method.
    /// A unary method whose handler returns its response already encoded
    /// (e.g. bytes cached across calls).
    public mutating func unaryEncoded<Request: WireMessage>(
        _ service: String, _ method: String, _ body: @escaping @Sendable (Request, RPCServerContext) async throws -> [UInt8]
    ) {
        let limits = self.limits
        register(service, method) { reader, sender, context in
            let request = try await Self.single(Request.self, reader, limits)
            sender.respond(try await body(request, context))
            return RPCMetadata()
        }
    }

    public mutating func serverStreaming<Request: WireMessage, Response: WireMessage>(
        _ service: String, _ method: String,
        _ body: @escaping @Sendable (Request, RPCStreamWriter<Response>, RPCServerContext) async throws -> Void
    ) {
        let limits = self.limits
        watchPaths.insert("/\(service)/\(method)")
        register(service, method) { reader, sender, context in
            let request = try await Self.single(Request.self, reader, limits)
            try await body(request, RPCStreamWriter(sender: sender), context)
            return RPCMetadata()
        }
    }

    /// Registers a client-streaming method.
    public mutating func clientStreaming<Request: WireMessage, Response: WireMessage>(
        _ service: String, _ method: String,
        _ body: @escaping @Sendable (RPCMessageStream<Request>, RPCServerContext) async throws -> Response
    ) {
        let limits = self.limits
        register(service, method) { reader, sender, context in
            let response = try await body(RPCMessageStream(reader: reader, limits: limits), context)
            sender.respond(try response.encode())
            return RPCMetadata()
        }
    }

    /// Registers a bidirectional-streaming method.
    public mutating func bidirectional<Request: WireMessage, Response: WireMessage>(
        _ service: String, _ method: String,
        _ body: @escaping @Sendable (RPCMessageStream<Request>, RPCStreamWriter<Response>, RPCServerContext) async throws -> Void
    ) {
        let limits = self.limits
        register(service, method) { reader, sender, context in
            try await body(RPCMessageStream(reader: reader, limits: limits), RPCStreamWriter(sender: sender), context)
            return RPCMetadata()
        }
    }

    /// Exactly one request message.
    private static func single<M: WireMessage>(_ type: M.Type, _ reader: RPCRequestReader, _ limits: WireLimits) async throws -> M {
        guard let bytes = try await reader.next() else {
            throw RPCError(.unimplemented, "expected one request message, got none")
        }
        guard try await reader.next() == nil else {
            throw RPCError(.unimplemented, "expected one request message, got more")
        }
        return try decodeRequest(M.self, bytes, limits: limits)
    }
}
