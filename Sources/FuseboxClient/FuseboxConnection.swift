import FuseboxRPC
import FuseboxTLS

/// One fuseboxd endpoint: a host name or IP (an IPv6 address without
/// brackets) and a port.
public struct FuseboxEndpoint: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `host:port`, with brackets around an IPv6 address.
    public var description: String { RPCEndpoint(host: host, port: port).description }

    /// Endpoints from a comma-separated list: `a:7443,b:7443,[::1]:7443`
    /// (the format of `--server` and `FUSEBOX_SERVER`). Throws a
    /// `FuseboxConfigurationError` naming the entry that is not `HOST:PORT`.
    public static func list(parsing text: String) throws(FuseboxConfigurationError) -> [FuseboxEndpoint] {
        do throws(RPCError) {
            return try RPCEndpoints(parsing: text).all.map { FuseboxEndpoint(host: $0.host, port: $0.port) }
        } catch {
            throw FuseboxConfigurationError(field: "endpoints", message: error.message)
        }
    }
}

/// TLS to fuseboxd: the CA bundle its certificates are verified with and,
/// for mutual TLS, this service's certificate and key (role reporter or above).
public struct FuseboxTLS: Sendable, Hashable {
    /// PEM file of the CA(s) that signed fuseboxd's certificate.
    public var trustRootsPath: String
    /// PEM file of this service's certificate chain; nil: no client certificate.
    public var certificateChainPath: String?
    /// PEM file of that certificate's private key.
    public var privateKeyPath: String?

    public init(trustRootsPath: String, certificateChainPath: String? = nil, privateKeyPath: String? = nil) {
        self.trustRootsPath = trustRootsPath
        self.certificateChainPath = certificateChainPath
        self.privateKeyPath = privateKeyPath
    }

    /// The same as `init`, so that a configuration reads `tls: .client(…)`.
    public static func client(trustRootsPath: String, certificateChainPath: String? = nil, privateKeyPath: String? = nil) -> FuseboxTLS {
        FuseboxTLS(trustRootsPath: trustRootsPath, certificateChainPath: certificateChainPath, privateKeyPath: privateKeyPath)
    }

    /// The transport's configuration.
    var transport: TLSConfiguration {
        .client(trustRootsPath: trustRootsPath, certificateChainPath: certificateChainPath, privateKeyPath: privateKeyPath)
    }
}

/// A configuration the SDK cannot use: which field, and why (for example a
/// TLS file that cannot be read, or an endpoint that is not `HOST:PORT`).
public struct FuseboxConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The `FuseboxConfiguration` field at fault, e.g. `tls` or `endpoints`.
    public var field: String
    public var message: String

    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }

    public var description: String { "\(field): \(message)" }
}
