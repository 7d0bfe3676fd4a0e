/// The fuzz targets (docs/FUZZING.md). Each takes one input, as libFuzzer
/// hands it over, and must never crash on it: bad input ends in a typed error
/// inside the code under test. A broken invariant the target checks itself
/// (a round trip that disagrees, a message over the limit) is a `FuzzFinding`.
///
/// The libFuzzer executables (`Fuzz/Targets/<rawValue>`) and the replay tests
/// (`FuseboxFuzzingTests`) both call `run(_:)`, so a crash input committed
/// under `Fuzz/Regressions/<rawValue>/` is replayed by exactly the code that
/// found it.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// Every API message type decoded with FuseboxWire; the first byte picks the type.
    case wireDecode = "wire-decode"
    /// `GRPCMessageDeframer` fed in chunks split at fuzzed points, with a fuzzed limit.
    case grpcDeframer = "grpc-deframer"
    /// The server's HTTP/2 pipeline in an `EmbeddedChannel`, fed after the client preface.
    case http2Server = "http2-server"
    /// The server's `TLSHandler` fed records during and after a handshake.
    case tlsServer = "tls-server"
    /// `PolicyYAML.documents`, what `fusebox policy apply -f` reads files with.
    case policyYAML = "policy-yaml"
    /// `ServerConfiguration.apply(yaml:source:)` and `validate()`, fuseboxd's config file.
    case serverConfig = "server-config"

    /// Runs one input.
    ///
    /// - Throws: `FuzzFinding` when the target's own invariant does not hold.
    public func run(_ input: [UInt8]) throws(FuzzFinding) {
        switch self {
        case .wireDecode: try WireDecodeFuzzing.run(input)
        case .grpcDeframer: try GRPCDeframerFuzzing.run(input)
        case .http2Server: try HTTP2ServerFuzzing.run(input)
        case .tlsServer: try TLSServerFuzzing.run(input)
        case .policyYAML: try PolicyYAMLFuzzing.run(input)
        case .serverConfig: try ServerConfigFuzzing.run(input)
        }
    }

    /// Does the one-time setup now (the TLS target's certificates), so that
    /// libFuzzer's per-input leak check does not count it against an input.
    /// Call it from `LLVMFuzzerInitialize`; `run` does it on first use anyway.
    public func prepare() {
        if self == .tlsServer { _ = TLSFuzzContexts.shared }
    }

    /// Runs one input and stops the process on a finding, so that libFuzzer
    /// records the input as a crash.
    public func runTrappingOnFinding(_ input: [UInt8]) {
        do {
            try run(input)
        } catch {
            fatalError("\(rawValue): \(error)")
        }
    }
}

/// An invariant of a fuzz target that one input broke.
public struct FuzzFinding: Error, Sendable, CustomStringConvertible {
    /// The target that found it.
    public var target: FuzzTarget
    /// What did not hold, with the values involved.
    public var message: String

    /// A finding of `target`.
    public init(_ target: FuzzTarget, _ message: String) {
        self.target = target
        self.message = message
    }

    /// `target: message`.
    public var description: String { "\(target.rawValue): \(message)" }
}
