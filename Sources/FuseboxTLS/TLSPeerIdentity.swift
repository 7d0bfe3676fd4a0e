/// Who is at the other end, from its certificate, after the handshake.
public struct TLSPeerIdentity: Sendable, Hashable {
    /// Subject common name, if any.
    public var commonName: String?
    /// DNS subject alternative names.
    public var dnsNames: [String]
    /// URI subject alternative names (SPIFFE IDs included).
    public var uris: [String]
    /// IP address subject alternative names, as text.
    public var ipAddresses: [String]
    /// SHA-256 of the DER certificate, lowercase hex.
    public var fingerprintSHA256: String

    /// An identity.
    public init(commonName: String?, dnsNames: [String], uris: [String], ipAddresses: [String], fingerprintSHA256: String) {
        self.commonName = commonName
        self.dnsNames = dnsNames
        self.uris = uris
        self.ipAddresses = ipAddresses
        self.fingerprintSHA256 = fingerprintSHA256
    }
}

/// Fired (as a user inbound event) when a handshake completes.
public struct TLSHandshakeCompleted: Sendable, Hashable {
    /// The negotiated protocol, e.g. "TLSv1.3".
    public var protocolVersion: String
    /// The negotiated application protocol (ALPN), e.g. "h2".
    public var applicationProtocol: String?
    /// The peer's identity, when it presented a certificate.
    public var peer: TLSPeerIdentity?
}
