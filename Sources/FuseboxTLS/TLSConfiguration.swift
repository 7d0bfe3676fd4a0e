/// TLS settings as plain values. File paths are read when a `TLSContext` is
/// built (and again on reload), so certificates can be rotated on disk.
public struct TLSConfiguration: Sendable, Hashable {
    /// Which end of the connection this is.
    public enum Role: Sendable, Hashable {
        /// Accepts connections.
        case server
        /// Opens connections.
        case client
    }

    /// The lowest protocol version accepted.
    public enum ProtocolVersion: Sendable, Hashable, Comparable {
        /// TLS 1.2.
        case tls12
        /// TLS 1.3.
        case tls13
    }

    /// Server or client.
    public var role: Role
    /// PEM certificate chain (leaf first). Required for servers; for clients,
    /// the client certificate for mutual TLS (nil: none).
    public var certificateChainPath: String?
    /// PEM private key of the leaf certificate.
    public var privateKeyPath: String?
    /// PEM bundle of trusted CAs: for a client, to verify the server; for a
    /// server, to verify client certificates.
    public var trustRootsPath: String?
    /// Servers: require and verify a client certificate (mutual TLS). Default true.
    public var requireClientCertificate: Bool = true
    /// Lowest version accepted. Default TLS 1.2 (1.3 is preferred when both ends have it).
    public var minimumVersion: ProtocolVersion = .tls12
    /// Highest version offered. Default TLS 1.3; tests pin 1.2 with it.
    public var maximumVersion: ProtocolVersion = .tls13
    /// TLS 1.2 cipher list (OpenSSL syntax). Default: ECDHE with AES-GCM or ChaCha20 only.
    public var tls12Ciphers: String = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
    /// Key-exchange groups. Default X25519, P-256, P-384.
    public var groups: String = "X25519:P-256:P-384"
    /// Application protocol: servers select it, clients offer it and fail if
    /// it is not negotiated. Default "h2"; nil disables ALPN.
    public var applicationProtocol: String? = "h2"
    /// How long a handshake may take. Default 10 s.
    public var handshakeTimeoutMilliseconds: Int64 = 10_000

    /// A server configuration: certificate chain, key, and the CA bundle
    /// client certificates are verified against.
    public static func server(
        certificateChainPath: String, privateKeyPath: String, clientCAPath: String?, requireClientCertificate: Bool = true
    ) -> TLSConfiguration {
        var c = TLSConfiguration(role: .server)
        c.certificateChainPath = certificateChainPath
        c.privateKeyPath = privateKeyPath
        c.trustRootsPath = clientCAPath
        c.requireClientCertificate = requireClientCertificate
        return c
    }

    /// A client configuration: the CA bundle to verify servers with, and
    /// optionally a client certificate for mutual TLS.
    public static func client(
        trustRootsPath: String, certificateChainPath: String? = nil, privateKeyPath: String? = nil
    ) -> TLSConfiguration {
        var c = TLSConfiguration(role: .client)
        c.trustRootsPath = trustRootsPath
        c.certificateChainPath = certificateChainPath
        c.privateKeyPath = privateKeyPath
        return c
    }

    /// A configuration for `role` with the defaults.
    public init(role: Role) {
        self.role = role
    }
}
