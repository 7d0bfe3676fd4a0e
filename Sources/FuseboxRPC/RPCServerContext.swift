public import FuseboxTLS

/// What a handler knows about its call.
public struct RPCServerContext: Sendable {
    /// `/package.Service/Method`.
    public var path: String
    /// The caller's identity from its TLS client certificate; nil without one.
    public var peer: TLSPeerIdentity?
    /// The caller's address, e.g. "127.0.0.1:54321".
    public var remoteAddress: String?
    /// When the call must end (from `grpc-timeout`); nil for none.
    public var deadline: ContinuousClock.Instant?
    /// The request metadata.
    public var metadata: RPCMetadata
}
