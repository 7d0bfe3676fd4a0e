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

    /// A server-streaming method's handler: the request message's bytes in;
    /// it sends its responses through the sender and returns the trailers.
    /// Served like a unary method's (`RPCServer`'s one-message path).
    public typealias ServerStreamingHandler = @Sendable ([UInt8], RPCResponseSender, RPCServerContext) async throws -> RPCMetadata

    /// A method whose client sends exactly one request message.
    enum OneRequestMethod {
        case unary(UnaryHandler)
        /// A watch: it stays open and counts against
        /// `RPCServerConfiguration.maximumWatchesPerConnection`.
        case serverStreaming(ServerStreamingHandler)
    }

    private(set) var handlers: [String: Handler] = [:]
    private(set) var oneRequestMethods: [String: OneRequestMethod] = [:]

    /// Largest request message decoded, for typed handlers.
    public var limits = WireLimits.default

    /// An empty router.
    public init() {}

    /// Registers a raw handler for `/service/method`.
    public mutating func register(_ service: String, _ method: String, _ handler: @escaping Handler) {
        handlers["/\(service)/\(method)"] = handler
        oneRequestMethods["/\(service)/\(method)"] = nil  // the last registration of a path wins
    }

    /// The handler for `path`, unless it is a unary method's.
    func handler(for path: String) -> Handler? { handlers[path] }

    /// The unary or server-streaming method at `path`.
    func oneRequestMethod(for path: String) -> OneRequestMethod? { oneRequestMethods[path] }

    /// The service names registered.
    public var services: Set<String> {
        Set((Array(handlers.keys) + Array(oneRequestMethods.keys)).compactMap { $0.split(separator: "/").first.map(String.init) })
    }

    /// Registers a unary method.
    public mutating func unary<Request: WireMessage, Response: WireMessage>(
        _ service: String, _ method: String, _ body: @escaping @Sendable (Request, RPCServerContext) async throws -> Response
    ) {
        let limits = self.limits
        handlers["/\(service)/\(method)"] = nil
        oneRequestMethods["/\(service)/\(method)"] = .unary { bytes, context in
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
        oneRequestMethods["/\(service)/\(method)"] = .unary { bytes, context in
            try await body(try decodeRequest(Request.self, bytes, limits: limits), context)
        }
    }

    /// Registers a server-streaming method.
    public mutating func serverStreaming<Request: WireMessage, Response: WireMessage>(
        _ service: String, _ method: String,
        _ body: @escaping @Sendable (Request, RPCStreamWriter<Response>, RPCServerContext) async throws -> Void
    ) {
        let limits = self.limits
        handlers["/\(service)/\(method)"] = nil
        oneRequestMethods["/\(service)/\(method)"] = .serverStreaming { bytes, sender, context in
            try await body(try decodeRequest(Request.self, bytes, limits: limits), RPCStreamWriter(sender: sender), context)
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

    /// A one-request method as a handler on the request stream, for a call
    /// that `serve()` runs.
    static func handler(for method: OneRequestMethod) -> Handler {
        { reader, sender, context in
            guard let bytes = try await reader.next() else { throw RPCError.noRequestMessage }
            guard try await reader.next() == nil else { throw RPCError.extraRequestMessage }
            switch method {
            case .unary(let handler):
                sender.respond(try await handler(bytes, context))
                return RPCMetadata()
            case .serverStreaming(let handler):
                return try await handler(bytes, sender, context)
            }
        }
    }
}
