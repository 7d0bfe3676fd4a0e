import COpenSSL

/// Turns what OpenSSL reports about a failed handshake or read into a
/// `TLSError` a person can act on. Pure, so every mapping is tested directly.
enum TLSFailure {
    static func classify(
        role: TLSConfiguration.Role, sslError: Int32, reason: Int32?, verifyResult: Int32, verifyText: String,
        openSSLText: String, expectedHost: String?
    ) -> TLSError {
        let peer = role == .server ? "client" : "server"
        switch verifyResult {
        case X509_V_OK: break
        case X509_V_ERR_CERT_HAS_EXPIRED:
            return TLSError(.certificateExpired, "the \(peer)'s certificate has expired; renew it (\(verifyText))")
        case X509_V_ERR_CERT_NOT_YET_VALID:
            return TLSError(.certificateNotYetValid, "the \(peer)'s certificate is not valid yet; check the clocks (\(verifyText))")
        case X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH:
            return TLSError(
                .hostnameMismatch,
                "the server's certificate does not name \(expectedHost.map { "\"\($0)\"" } ?? "the address connected to"); add it as a subject alternative name or connect by a name it has (\(verifyText))")
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT,
            X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN,
            X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE, X509_V_ERR_CERT_SIGNATURE_FAILURE:
            return TLSError(.untrustedCertificate, "the \(peer)'s certificate is not signed by a trusted CA; check the CA bundle (\(verifyText))")
        default:
            return TLSError(.certificateRejected, "the \(peer)'s certificate was refused: \(verifyText)")
        }
        switch reason {
        case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE, SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
            return role == .server
                ? TLSError(.missingClientCertificate, "the client sent no certificate, and this server requires mutual TLS")
                : TLSError(.missingClientCertificate, "the server requires a client certificate; configure one (--cert/--key)")
        case SSL_R_NO_APPLICATION_PROTOCOL, SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL:
            return TLSError(.alpnMismatch, "the peers share no application protocol; Fusebox speaks gRPC and needs ALPN \"h2\"")
        case SSL_R_HTTP_REQUEST, SSL_R_HTTPS_PROXY_REQUEST:
            return TLSError(.plaintextOnTLSPort, "a plaintext HTTP client connected to the TLS port; use https/TLS")
        case SSL_R_WRONG_VERSION_NUMBER, SSL_R_UNKNOWN_PROTOCOL, SSL_R_PACKET_LENGTH_TOO_LONG,
            SSL_R_RECORD_LENGTH_MISMATCH, SSL_R_ENCRYPTED_LENGTH_TOO_LONG, SSL_R_BAD_RECORD_TYPE,
            SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC, SSL_R_UNEXPECTED_RECORD, SSL_R_UNEXPECTED_MESSAGE:
            return TLSError(.malformedInput, "the \(peer) sent bytes that are not valid TLS (\(openSSLText))")
        case SSL_R_TLSV1_ALERT_UNKNOWN_CA, SSL_R_SSLV3_ALERT_BAD_CERTIFICATE, SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED,
            SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN, SSL_R_TLSV1_ALERT_ACCESS_DENIED, SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
            return TLSError(.peerRejectedCertificate, "the \(peer) refused our certificate (\(openSSLText))")
        case SSL_R_UNEXPECTED_EOF_WHILE_READING:
            return TLSError(.uncleanShutdown, "the \(peer) closed the connection without a TLS close_notify")
        default:
            return TLSError(.handshakeFailed, "TLS with the \(peer) failed (\(openSSLText))")
        }
    }
}
