public import FuseboxWire

/// Maps `/package.Service/Method` to handlers.
public struct RPCRouter: Sendable {
    /// A handler on raw bytes: reads requests, sends responses, and returns
    /// trailing metadata; it throws `RPCError` to end with another status.
    public typealias Handler = @Sendable (RPCRequestReader, RPCResponseSender, RPCServerContext) async throws -> RPCMetadata

    /// A unary method's handler: the request message's bytes in, the
    /// response message's bytes out. The server runs it on the call's event
    /// loop until it first suspends (`RPCServer`'s unary path).
    public typealias UnaryHandler = @Sendable ([UInt8], RPCServerContext) async throws -> [UInt8]

    private(set) var handlers: [String: Handler] = [:]
    private(set) var unaryHandlers: [String: UnaryHandler] = [:]
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
        unaryHandlers["/\(service)/\(method)"] = nil  // the last registration of a path wins
    }

    /// The handler for `path`, unless it is a unary method's.
    func handler(for path: String) -> Handler? { handlers[path] }

    /// The unary method's handler for `path`.
    func unaryHandler(for path: String) -> UnaryHandler? { unaryHandlers[path] }

    /// The service names registered.
    public var services: Set<String> {
        Set((Array(handlers.keys) + Array(unaryHandlers.keys)).compactMap { $0.split(separator: "/").first.map(String.init) })
    }

    /// Registers a unary method.
    public mutating func unary<Request: WireMessage, Response: WireMessage>(
        _ service: String, _ method: String, _ body: @escaping @Sendable (Request, RPCServerContext) async throws -> Response
    ) {
        let limits = self.limits
        handlers["/\(service)/\(method)"] = nil
        unaryHandlers["/\(service)/\(method)"] = { bytes, context in
            try await body(try decodeRequest(Request.self, bytes, limits: limits), context).encode()
        }
    }

    /// Registers a unary method whose handler returns its response already
    /// encoded (e.g. bytes cached across calls).
    public mutating func unaryEncoded<Request: WireMessage>(
        _ service: String, _ method: String, _ body: @escaping @Sendable (Request, RPCServerContext) async throws -> [UInt8]
    ) {
        let limits = self.limits
        handlers["/\(service)/\(method)"] = nil
        unaryHandlers["/\(service)/\(method)"] = { bytes, context in
            try await body(try decodeRequest(Request.self, bytes, limits: limits), context)
        }
    }

    /// Registers a server-streaming method.
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
            throw RPCError.noRequestMessage
        }
        guard try await reader.next() == nil else {
            throw RPCError.extraRequestMessage
        }
        return try decodeRequest(M.self, bytes, limits: limits)
    }
}
