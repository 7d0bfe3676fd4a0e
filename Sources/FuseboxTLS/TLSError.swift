/// Why a TLS connection failed, in words a person understands. Each failure
/// closes only its own connection.
public struct TLSError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure. New codes may be added; switch with a default.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// A short name.
        public let description: String
        private init(_ name: String) { self.description = name }

        /// The peer's certificate is not signed by a trusted CA.
        public static let untrustedCertificate = Code("untrusted certificate")
        /// The peer's certificate has expired.
        public static let certificateExpired = Code("certificate expired")
        /// The peer's certificate is not valid yet.
        public static let certificateNotYetValid = Code("certificate not yet valid")
        /// The server's certificate does not name the host or IP we connected to.
        public static let hostnameMismatch = Code("hostname mismatch")
        /// The peer's certificate was refused for another reason.
        public static let certificateRejected = Code("certificate rejected")
        /// The peer refused our certificate (it sent an alert).
        public static let peerRejectedCertificate = Code("peer rejected our certificate")
        /// Mutual TLS is required and the client sent no certificate.
        public static let missingClientCertificate = Code("missing client certificate")
        /// A plaintext (non-TLS) client connected to the TLS port.
        public static let plaintextOnTLSPort = Code("plaintext on TLS port")
        /// The peers found no common application protocol (ALPN "h2").
        public static let alpnMismatch = Code("ALPN mismatch")
        /// The handshake did not finish in time.
        public static let handshakeTimeout = Code("handshake timeout")
        /// Bytes that are not TLS.
        public static let malformedInput = Code("malformed input")
        /// The connection ended without a TLS close_notify (possible truncation).
        public static let uncleanShutdown = Code("unclean shutdown")
        /// Another handshake failure.
        public static let handshakeFailed = Code("handshake failed")
        /// Certificate, key or CA files could not be loaded.
        public static let invalidConfiguration = Code("invalid configuration")
    }

    /// The kind of failure.
    public var code: Code
    /// What happened, with the detail OpenSSL gave, and what to check.
    public var message: String

    /// An error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// `code: message`.
    public var description: String { "TLS \(code): \(message)" }
}
