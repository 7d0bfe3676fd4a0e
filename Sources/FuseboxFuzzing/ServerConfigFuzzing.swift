import FuseboxServer

/// The `server-config` target: fuseboxd's configuration file, applied and
/// validated as `fuseboxd serve --config` does, then turned into the RPC, TLS
/// and authority settings. Bad files must give a `ConfigurationError`.
enum ServerConfigFuzzing {
    static func run(_ input: [UInt8]) throws(FuzzFinding) {
        // fuseboxd reads the file as UTF-8 and refuses anything else before parsing.
        guard let text = String(validating: input, as: UTF8.self) else { return }
        var settings = ServerConfiguration()
        do {
            try settings.apply(yaml: text, source: "fuzz.yaml")
            try settings.validate()
        } catch {
            guard !error.description.isEmpty else { throw FuzzFinding(.serverConfig, "an error without a description") }
            return
        }
        _ = settings.rpc
        _ = settings.tls
        _ = settings.authorityLimits
    }
}
