import COpenSSL
import COpenSSLShims
import NIOCore
import Synchronization

/// One OpenSSL `SSL` with its two memory BIOs: ciphertext from the network is
/// written into `input`; ciphertext for the network is read from `output`
/// after every `SSL_*` call. Used on one event loop only; OpenSSL's error
/// queue is per thread, so it is cleared before each call.
final class TLSConnection {
    /// Connections alive in this process (each owns one SSL and two BIOs).
    static let live = Atomic<Int>(0)

    /// The current count of `live`.
    static var liveCount: Int { live.load(ordering: .relaxed) }

    enum HandshakeResult {
        case complete
        case wantRead
        case failed(TLSError)
    }

    enum ReadResult {
        case bytes(Int)
        case wantRead
        case closeNotify
        case failed(TLSError)
    }

    let role: TLSConfiguration.Role
    private let ssl: OpaquePointer
    private var input: OpaquePointer
    private var output: OpaquePointer
    private let expectedHost: String?

    init(context: TLSContext, serverName: String?) throws(TLSError) {
        ERR_clear_error()
        role = context.configuration.role
        expectedHost = serverName
        guard let ssl = SSL_new(context.pointer), let input = BIO_new(BIO_s_mem()), let output = BIO_new(BIO_s_mem()) else {
            throw TLSError(.invalidConfiguration, "could not create an SSL object: \(OpenSSLErrors.drain())")
        }
        _ = fb_BIO_set_mem_eof_return(input, -1)
        _ = fb_BIO_set_mem_eof_return(output, -1)
        SSL_set_bio(ssl, input, output)
        self.ssl = ssl
        self.input = input
        self.output = output
        Self.live.add(1, ordering: .relaxed)
        switch role {
        case .server:
            SSL_set_accept_state(ssl)
        case .client:
            SSL_set_connect_state(ssl)
            if let name = serverName {
                if Self.isIPAddress(name) {
                    _ = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name)
                } else {
                    _ = fb_SSL_set_tlsext_host_name(ssl, name)
                    _ = SSL_set1_host(ssl, name)
                }
            }
            if let proto = context.configuration.applicationProtocol {
                let wire = [UInt8(proto.utf8.count)] + Array(proto.utf8)
                _ = SSL_set_alpn_protos(ssl, wire, UInt32(wire.count))
            }
        }
    }

    deinit {
        SSL_free(ssl)  // frees both BIOs
        Self.live.subtract(1, ordering: .relaxed)
    }

    static func isIPAddress(_ host: String) -> Bool {
        host.contains(":") || (host.split(separator: ".").count == 4 && host.allSatisfy { $0.isNumber || $0 == "." })
    }

    /// Hands ciphertext from the network to OpenSSL.
    func feed(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count, let base = bytes.baseAddress {
                let written = BIO_write(input, base + offset, Int32(min(bytes.count - offset, Int(Int32.max))))
                if written <= 0 { break }
                offset += Int(written)
            }
        }
    }

    /// A memory BIO keeps the capacity of the most it ever held, and the
    /// handshake's flights, with their certificate chains, are the most an idle
    /// connection's BIOs hold: several KiB each way, for the connection's life.
    /// Once the handshake is done, each BIO is replaced by a new one, with the
    /// bytes not yet consumed carried over.
    func releaseHandshakeBuffers() {
        guard let freshInput = BIO_new(BIO_s_mem()) else { return }
        guard let freshOutput = BIO_new(BIO_s_mem()) else {
            BIO_free(freshInput)
            return
        }
        _ = fb_BIO_set_mem_eof_return(freshInput, -1)
        _ = fb_BIO_set_mem_eof_return(freshOutput, -1)
        Self.move(from: input, to: freshInput)
        Self.move(from: output, to: freshOutput)
        SSL_set0_rbio(ssl, freshInput)  // frees the old one
        SSL_set0_wbio(ssl, freshOutput)
        input = freshInput
        output = freshOutput
    }

    private static func move(from old: OpaquePointer, to new: OpaquePointer) {
        var chunk = [UInt8](repeating: 0, count: 4_096)
        while BIO_ctrl_pending(old) > 0 {
            let read = chunk.withUnsafeMutableBytes { BIO_read(old, $0.baseAddress, Int32($0.count)) }
            guard read > 0 else { return }
            _ = chunk.withUnsafeBytes { BIO_write(new, $0.baseAddress, read) }
        }
    }

    /// Ciphertext OpenSSL produced, if any.
    func drainOutput(allocator: ByteBufferAllocator) -> ByteBuffer? {
        let pending = Int(BIO_ctrl_pending(output))
        guard pending > 0 else { return nil }
        var buffer = allocator.buffer(capacity: pending)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: pending) { space in
            max(0, Int(BIO_read(output, space.baseAddress, Int32(min(space.count, pending)))))
        }
        return buffer
    }

    func handshake() -> HandshakeResult {
        ERR_clear_error()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 { return .complete }
        let error = SSL_get_error(ssl, rc)
        if error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE { return .wantRead }
        return .failed(failure(sslError: error))
    }

    /// Decrypts up to `into`'s free space.
    func read(into buffer: inout ByteBuffer, maximum: Int = 16_384) -> ReadResult {
        ERR_clear_error()
        var count = 0
        let rc = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: maximum) { space in
            let rc = SSL_read_ex(ssl, space.baseAddress, min(space.count, maximum), &count)
            return rc == 1 ? count : 0
        }
        if rc > 0 { return .bytes(rc) }
        let error = SSL_get_error(ssl, 0)
        switch error {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .wantRead
        case SSL_ERROR_ZERO_RETURN: return .closeNotify
        default: return .failed(failure(sslError: error))
        }
    }

    /// Encrypts `bytes`; returns how many were consumed.
    func write(_ bytes: UnsafeRawBufferPointer) -> Result<Int, TLSError> {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return .success(0) }
        ERR_clear_error()
        var written = 0
        if SSL_write_ex(ssl, base, bytes.count, &written) == 1 { return .success(written) }
        return .failure(failure(sslError: SSL_get_error(ssl, 0)))
    }

    /// Queues a close_notify alert.
    func shutdown() {
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    var protocolVersion: String {
        String(cString: SSL_get_version(ssl))
    }

    var applicationProtocol: String? {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    var peerIdentity: TLSPeerIdentity? {
        guard let cert = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(cert) }
        return TLSPeerIdentity(certificate: cert)
    }

    private func failure(sslError: Int32) -> TLSError {
        let (text, reason) = OpenSSLErrors.drainWithReason()
        let verify = Int32(SSL_get_verify_result(ssl))
        let verifyText = String(cString: X509_verify_cert_error_string(Int(verify)))
        return TLSFailure.classify(
            role: role, sslError: sslError, reason: reason, verifyResult: verify, verifyText: verifyText,
            openSSLText: text, expectedHost: expectedHost)
    }
}

extension TLSPeerIdentity {
    /// Reads CN, SANs and the SHA-256 fingerprint of an X509 certificate.
    init(certificate cert: OpaquePointer) {
        var cn = [CChar](repeating: 0, count: 256)
        let cnLength = fb_X509_common_name(cert, &cn, Int32(cn.count))
        final class Collector {
            var dns: [String] = []
            var uris: [String] = []
            var ips: [String] = []
        }
        let collector = Collector()
        withExtendedLifetime(collector) {
            fb_X509_visit_sans(cert, { type, value, length, context in
                guard let value, let context else { return }
                let text = String(decoding: UnsafeRawBufferPointer(start: value, count: length), as: UTF8.self)
                let c = Unmanaged<Collector>.fromOpaque(context).takeUnretainedValue()
                switch type {
                case 2: c.dns.append(text)
                case 6: c.uris.append(text)
                default: c.ips.append(text)
                }
            }, Unmanaged.passUnretained(collector).toOpaque())
        }
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var digestLength: UInt32 = 0
        _ = X509_digest(cert, EVP_sha256(), &digest, &digestLength)
        let hex = digest.prefix(Int(digestLength)).map { byte in
            let s = String(byte, radix: 16)
            return s.count == 1 ? "0" + s : s
        }.joined()
        self.init(
            commonName: cnLength >= 0 ? String(decoding: cn.prefix(Int(cnLength)).map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil,
            dnsNames: collector.dns, uris: collector.uris, ipAddresses: collector.ips, fingerprintSHA256: hex)
    }
}
