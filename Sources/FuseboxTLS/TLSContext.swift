import COpenSSL
import COpenSSLShims
import NIOConcurrencyHelpers

/// An OpenSSL `SSL_CTX` built from a `TLSConfiguration`: certificates, keys
/// and trust loaded, versions, ciphers, groups and ALPN set. It is not changed
/// after it is built, so connections on any event loop may share it.
public final class TLSContext: @unchecked Sendable {
    /// The configuration it was built from.
    public let configuration: TLSConfiguration
    let pointer: OpaquePointer

    /// Builds a context, loading every file now.
    ///
    /// - Throws: `TLSError` `.invalidConfiguration` naming the file and what
    ///   OpenSSL said about it (unreadable, not PEM, key does not match).
    public init(configuration: TLSConfiguration) throws(TLSError) {
        self.configuration = configuration
        ERR_clear_error()
        let method = configuration.role == .server ? TLS_server_method() : TLS_client_method()
        guard let ctx = SSL_CTX_new(method) else {
            throw TLSError(.invalidConfiguration, "SSL_CTX_new failed: \(OpenSSLErrors.drain())")
        }
        pointer = ctx
        try configure()
    }

    deinit {
        SSL_CTX_free(pointer)
    }

    private func configure() throws(TLSError) {
        let c = configuration
        fb_SSL_CTX_set_fusebox_options(pointer)
        _ = fb_SSL_CTX_set_mode_release_buffers(pointer)
        _ = fb_SSL_CTX_set_min_proto_version(pointer, c.minimumVersion == .tls12 ? fb_TLS1_2_VERSION() : fb_TLS1_3_VERSION())
        _ = fb_SSL_CTX_set_max_proto_version(pointer, c.maximumVersion == .tls12 ? fb_TLS1_2_VERSION() : fb_TLS1_3_VERSION())
        guard SSL_CTX_set_cipher_list(pointer, c.tls12Ciphers) == 1 else {
            throw TLSError(.invalidConfiguration, "cipher list \"\(c.tls12Ciphers)\" was refused: \(OpenSSLErrors.drain())")
        }
        guard fb_SSL_CTX_set1_groups_list(pointer, c.groups) == 1 else {
            throw TLSError(.invalidConfiguration, "groups \"\(c.groups)\" were refused: \(OpenSSLErrors.drain())")
        }
        if let chain = c.certificateChainPath {
            guard SSL_CTX_use_certificate_chain_file(pointer, chain) == 1 else {
                throw TLSError(.invalidConfiguration, "cannot load certificate chain \(chain): \(OpenSSLErrors.drain())")
            }
            guard let key = c.privateKeyPath else {
                throw TLSError(.invalidConfiguration, "certificate \(chain) is configured without a private key")
            }
            guard SSL_CTX_use_PrivateKey_file(pointer, key, SSL_FILETYPE_PEM) == 1 else {
                let (text, reason) = OpenSSLErrors.drainWithReason()
                if reason == X509_R_KEY_VALUES_MISMATCH {
                    throw TLSError(.invalidConfiguration, "private key \(key) does not match certificate \(chain)")
                }
                throw TLSError(.invalidConfiguration, "cannot load private key \(key): \(text)")
            }
            guard SSL_CTX_check_private_key(pointer) == 1 else {
                throw TLSError(.invalidConfiguration, "private key \(key) does not match certificate \(chain)")
            }
        } else if c.role == .server {
            throw TLSError(.invalidConfiguration, "a server needs a certificate chain and a private key")
        }
        if let roots = c.trustRootsPath {
            guard SSL_CTX_load_verify_locations(pointer, roots, nil) == 1 else {
                throw TLSError(.invalidConfiguration, "cannot load trusted CAs from \(roots): \(OpenSSLErrors.drain())")
            }
        }
        switch c.role {
        case .server:
            // Every connection is a full handshake that verifies the client's
            // certificate against the current CA bundle. Fusebox clients hold
            // their connections and never resume, so session tickets were pure
            // cost: OpenSSL 3 serialises and re-parses the session with the
            // client's certificate for each of the two it sent (~0.5 ms of CPU
            // per connection, scenario 16 in docs/BENCHMARKS.md), and the cache
            // held ~9 KiB per session.
            fb_SSL_CTX_disable_session_resumption(pointer)
            if c.requireClientCertificate {
                guard let roots = c.trustRootsPath else {
                    throw TLSError(.invalidConfiguration, "mutual TLS needs a CA bundle to verify client certificates")
                }
                if let names = SSL_load_client_CA_file(roots) { SSL_CTX_set_client_CA_list(pointer, names) }
                SSL_CTX_set_verify(pointer, fb_SSL_VERIFY_PEER() | fb_SSL_VERIFY_FAIL_IF_NO_PEER_CERT(), nil)
            }
            if c.applicationProtocol == "h2" { fb_SSL_CTX_select_alpn_h2(pointer) }
        case .client:
            guard c.trustRootsPath != nil else {
                throw TLSError(.invalidConfiguration, "a client needs a CA bundle to verify the server")
            }
            SSL_CTX_set_verify(pointer, fb_SSL_VERIFY_PEER(), nil)
        }
        ERR_clear_error()
    }
}

/// The current `TLSContext`, replaceable at run time. New connections use the
/// context current when they start; existing ones keep theirs.
public final class TLSContextProvider: Sendable {
    private let state: NIOLockedValueBox<TLSContext>

    /// A provider starting with a context built from `configuration`.
    public init(configuration: TLSConfiguration) throws(TLSError) {
        state = NIOLockedValueBox(try TLSContext(configuration: configuration))
    }

    /// The context for a new connection.
    public var current: TLSContext { state.withLockedValue { $0 } }

    /// Builds a new context from the same configuration (re-reading the
    /// files) and makes it current. On failure the old context stays and the
    /// error says why.
    public func reload() throws(TLSError) {
        let fresh = try TLSContext(configuration: current.configuration)
        state.withLockedValue { $0 = fresh }
    }
}

/// OpenSSL's per-thread error queue, as text.
enum OpenSSLErrors {
    /// Removes every queued error and joins their descriptions; the first
    /// error's reason code is returned too.
    static func drainWithReason() -> (text: String, reason: Int32?) {
        var parts: [String] = []
        var first: Int32?
        while case let code = ERR_get_error(), code != 0 {
            if first == nil { first = fb_ERR_GET_REASON(code) }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            parts.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return (parts.isEmpty ? "no detail from OpenSSL" : parts.joined(separator: "; "), first)
    }

    static func drain() -> String { drainWithReason().text }
}
