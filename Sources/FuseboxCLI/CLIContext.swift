public import ArgumentParser
import Foundation
import FuseboxRPC
import FuseboxTLS
import FuseboxWire
import NIOPosix
import Yams

/// Exit codes (documented in docs/CLI.md).
public enum ExitCodes {
    public static let ok: Int32 = 0
    public static let failure: Int32 = 1
    public static let invalidInput: Int32 = 2
    public static let unreachable: Int32 = 3
    public static let permissionDenied: Int32 = 4
    public static let notFound: Int32 = 5
    public static let conflict: Int32 = 6
    public static let differences: Int32 = 10
}

/// An error the CLI reports: a message for people, optional hints, an exit code.
public struct CLIError: Error, CustomStringConvertible {
    public var message: String
    public var hints: [String] = []
    public var code: Int32
    /// For INVALID_ARGUMENT: the server's violations (`fusebox-error-details-bin`),
    /// field paths in proto names, for commands that can place them in a file.
    var violations: [Fusebox_V1_FieldViolation] = []

    public init(_ message: String, hints: [String] = [], code: Int32 = ExitCodes.failure) {
        self.message = message
        self.hints = hints
        self.code = code
    }

    public var description: String {
        (["error: \(message)"] + hints.map { "hint: \($0)" }).joined(separator: "\n")
    }
}

/// Output formats.
public enum OutputFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case table, json, yaml
}

/// Options every command that talks to fuseboxd takes. Unset options come
/// from the environment (FUSEBOX_SERVER, FUSEBOX_CA, FUSEBOX_CERT,
/// FUSEBOX_KEY, FUSEBOX_OUTPUT), then from the current context of
/// ~/.config/fusebox/config.yaml (or FUSEBOX_CONFIG), then defaults.
public struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "fuseboxd address, HOST:PORT, or several comma-separated (HOST:PORT,HOST:PORT) to fail over between (default 127.0.0.1:7443).")
    var server: String?
    @Option(name: .long, help: "CA certificate (PEM) that signed fuseboxd's certificate.")
    var ca: String?
    @Option(name: .long, help: "Client certificate (PEM) for mutual TLS; its role decides what you may do.")
    var cert: String?
    @Option(name: .long, help: "Private key (PEM) of --cert.")
    var key: String?
    @Option(name: [.customShort("o"), .long], help: "Output: table, json or yaml.")
    var output: OutputFormat?
    @Option(name: .long, help: "Context of the config file to use (default: its current-context).")
    var context: String?
    @Option(name: .long, help: "Config file (default ~/.config/fusebox/config.yaml).")
    var config: String?

    public init() {}

    /// The options every subcommand takes, as they may be written before it.
    static let hoistable: Set<String> = ["--server", "--ca", "--cert", "--key", "-o", "--output", "--context", "--config"]

    /// `arguments` with the global options written before the subcommand
    /// (`--server a:7443 audit --since 1h`) moved to the end, where the
    /// subcommand parses them (`audit --since 1h --server a:7443`). Anything
    /// else stays where it is.
    public static func hoisted(_ arguments: [String]) -> [String] {
        var leading: [String] = []
        var rest = arguments[...]
        while let first = rest.first {
            let name = first.split(separator: "=", maxSplits: 1).first.map(String.init) ?? first
            guard hoistable.contains(name) else { break }
            leading.append(first)
            rest = rest.dropFirst()
            if !first.contains("="), let value = rest.first {
                leading.append(value)
                rest = rest.dropFirst()
            }
        }
        guard !leading.isEmpty, !rest.isEmpty else { return arguments }
        // After "--" everything is an argument: keep the options before it.
        if let separator = rest.firstIndex(of: "--") {
            return Array(rest[..<separator]) + leading + Array(rest[separator...])
        }
        return Array(rest) + leading
    }

    /// The settings in force, after environment and config file.
    func resolve() throws -> ResolvedSettings {
        let env = ProcessInfo.processInfo.environment
        let configPath = config ?? env["FUSEBOX_CONFIG"]
            ?? (env["HOME"].map { "\($0)/.config/fusebox/config.yaml" } ?? "")
        let file = try ContextFile.load(configPath, explicit: config != nil || env["FUSEBOX_CONFIG"] != nil)
        let ctxName = context ?? env["FUSEBOX_CONTEXT"] ?? file?.currentContext
        var ctx: ContextFile.Context?
        if let ctxName {
            guard let found = file?.contexts[ctxName] else {
                throw CLIError(
                    "context \"\(ctxName)\" is not in \(configPath)", hints: ["contexts there: \(file?.contexts.keys.sorted().joined(separator: ", ") ?? "none")"],
                    code: ExitCodes.invalidInput)
            }
            ctx = found
        }
        var s = ResolvedSettings()
        s.server = server ?? env["FUSEBOX_SERVER"] ?? ctx?.server ?? "127.0.0.1:7443"
        s.ca = ca ?? env["FUSEBOX_CA"] ?? ctx?.ca
        s.cert = cert ?? env["FUSEBOX_CERT"] ?? ctx?.cert
        s.key = key ?? env["FUSEBOX_KEY"] ?? ctx?.key
        if let o = output {
            s.output = o
        } else if let raw = env["FUSEBOX_OUTPUT"] ?? ctx?.output {
            guard let o = OutputFormat(rawValue: raw) else {
                throw CLIError("output format \"\(raw)\" (from FUSEBOX_OUTPUT or the context) must be table, json or yaml", code: ExitCodes.invalidInput)
            }
            s.output = o
        }
        return s
    }
}

/// Connection settings after flags, environment and context.
struct ResolvedSettings {
    var server = "127.0.0.1:7443"
    var ca: String?
    var cert: String?
    var key: String?
    var output: OutputFormat = .table

    /// The endpoints of `server`: one HOST:PORT, or several comma-separated.
    func endpoints() throws -> RPCEndpoints {
        do throws(RPCError) {
            return try RPCEndpoints(parsing: server)
        } catch {
            throw CLIError(
                "--server \"\(server)\" must be HOST:PORT or HOST:PORT,HOST:PORT,…, e.g. 127.0.0.1:7443: \(error.message)",
                code: ExitCodes.invalidInput)
        }
    }
}

/// ~/.config/fusebox/config.yaml:
///
/// ```yaml
/// current-context: dev
/// contexts:
///   dev:
///     server: 127.0.0.1:7443        # or a list: [a:7443, b:7443], or "a:7443,b:7443"
///     ca: /path/ca.pem
///     cert: /path/admin.pem
///     key: /path/admin.key
///     output: table
/// ```
struct ContextFile {
    struct Context {
        var server: String?
        var ca: String?
        var cert: String?
        var key: String?
        var output: String?
    }

    var currentContext: String?
    var contexts: [String: Context] = [:]

    static func load(_ path: String, explicit: Bool) throws -> ContextFile? {
        guard !path.isEmpty, FileManager.default.fileExists(atPath: path) else {
            if explicit { throw CLIError("config file \(path) does not exist", code: ExitCodes.invalidInput) }
            return nil
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw CLIError("cannot read config file \(path)", code: ExitCodes.invalidInput)
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw CLIError("config file \(path) is not valid YAML: \(error)", code: ExitCodes.invalidInput)
        }
        var file = ContextFile()
        guard let mapping = root?.mapping else { return file }
        file.currentContext = mapping["current-context"]?.string
        if let contexts = mapping["contexts"]?.mapping {
            for (k, v) in contexts {
                guard let name = k.string else { continue }
                guard let c = v.mapping else {
                    throw CLIError("\(path):\(k.mark?.line ?? 0): context \"\(name)\" must be a mapping of server, ca, cert, key, output", code: ExitCodes.invalidInput)
                }
                for key in c.keys.compactMap(\.string) where !["server", "ca", "cert", "key", "output"].contains(key) {
                    throw CLIError("\(path): context \"\(name)\": unknown key \"\(key)\" (known: server, ca, cert, key, output)", code: ExitCodes.invalidInput)
                }
                var server = c["server"]?.string
                if let list = c["server"]?.sequence {
                    // A YAML list of endpoints: the same as comma-separated.
                    server = list.compactMap(\.string).joined(separator: ",")
                }
                file.contexts[name] = Context(
                    server: server, ca: c["ca"]?.string, cert: c["cert"]?.string, key: c["key"]?.string, output: c["output"]?.string)
            }
        }
        return file
    }
}

/// A connection to fuseboxd for one command.
///
/// With several endpoints (`--server a:7443,b:7443`) a call goes to the first
/// one that answers: `RPCFailoverClient` moves on when an endpoint is
/// unreachable or answers UNAVAILABLE, and repeats a call elsewhere only when
/// no server processed it.
struct Connection {
    let settings: ResolvedSettings
    let client: RPCFailoverClient
    /// Every endpoint, for messages: "a:7443" or "a:7443,b:7443".
    let addresses: String

    /// The endpoint that answered last (or will be tried next).
    var address: String { client.currentEndpoint.description }

    init(_ settings: ResolvedSettings) throws {
        self.settings = settings
        let endpoints = try settings.endpoints()
        addresses = endpoints.description
        if (settings.cert == nil) != (settings.key == nil) {
            throw CLIError("--cert and --key go together; one of them is missing", code: ExitCodes.invalidInput)
        }
        guard settings.ca != nil else {
            throw CLIError(
                "no CA certificate to verify fuseboxd with",
                hints: ["pass --ca (or set FUSEBOX_CA, or `ca:` in the context); with ./scripts/run it is .fusebox/certs/ca.pem"],
                code: ExitCodes.invalidInput)
        }
        for (flag, path) in [("--ca", settings.ca), ("--cert", settings.cert), ("--key", settings.key)] {
            if let path, !FileManager.default.isReadableFile(atPath: path) {
                throw CLIError("\(flag) \(path): no such readable file", code: ExitCodes.invalidInput)
            }
        }
        var tls = TLSConfiguration(role: .client)
        tls.trustRootsPath = settings.ca
        tls.certificateChainPath = settings.cert
        tls.privateKeyPath = settings.key
        var configuration = RPCClientConfiguration(host: endpoints.first.host, port: endpoints.first.port, tls: tls)
        configuration.connectTimeout = .seconds(5)
        do throws(TLSError) {
            client = try RPCFailoverClient(configuration: configuration, endpoints: endpoints, group: MultiThreadedEventLoopGroup.singleton)
        } catch {
            throw CLIError("cannot load the TLS files: \(error.message)", hints: ["check --ca, --cert and --key"], code: ExitCodes.invalidInput)
        }
    }

    func unary<Request: WireMessage, Response: WireMessage>(
        _ service: String, _ method: String, _ request: Request, as: Response.Type = Response.self
    ) async throws -> Response {
        do {
            return try await client.unary(service, method, request, as: Response.self, options: RPCCallOptions(timeout: .seconds(15)))
        } catch {
            throw explain(error)
        }
    }

    func close() async { await client.close() }

    /// An RPC failure as a person should read it.
    func explain(_ error: RPCError) -> CLIError {
        switch error.code {
        case .unavailable, .deadlineExceeded:
            let m = error.message
            if m.contains("TLS") || m.contains("certificate") || m.contains("handshake") {
                return CLIError(
                    "TLS with fuseboxd at \(addresses) failed: \(Self.strip(m).replacingOccurrences(of: "TLS with \(address) failed: ", with: ""))",
                    hints: ["check --ca (it must have signed the server's certificate) and --cert/--key (signed by a CA the server trusts)"],
                    code: ExitCodes.unreachable)
            }
            var why = m.lowercased().contains("refused") ? "connection refused" : (error.code == .deadlineExceeded ? "no answer in time" : Self.strip(m))
            // With several endpoints, which were tried (RPCFailoverClient's suffix).
            if let tried = m.range(of: " (tried "), !why.contains(" (tried ") { why += String(m[tried.lowerBound...]) }
            return CLIError(
                "cannot reach fuseboxd at \(addresses): \(why)",
                hints: ["is fuseboxd running there? check --server (or FUSEBOX_SERVER, or the context's server)"],
                code: ExitCodes.unreachable)
        case .permissionDenied:
            let role = error.metadata.first("fusebox-missing-role")
            return CLIError(
                "permission denied: \(error.message)",
                hints: [role.map { "this command needs role \($0); use a certificate that has it (--cert/--key)" } ?? "use a certificate with a role that allows this"],
                code: ExitCodes.permissionDenied)
        case .unauthenticated:
            return CLIError("not authenticated: \(error.message)", hints: ["pass a client certificate with --cert and --key"], code: ExitCodes.permissionDenied)
        case .notFound:
            return CLIError(error.message, code: ExitCodes.notFound)
        case .invalidArgument:
            var violations: [Fusebox_V1_FieldViolation] = []
            if let bytes = error.metadata.firstBinary("fusebox-error-details-bin"),
                let details = try? Fusebox_V1_ErrorDetails(decoding: bytes)
            {
                violations = details.violations
            }
            var e = CLIError(
                "the server rejected the request: \(error.message)", hints: violations.map { "\($0.field): \($0.description)" }, code: ExitCodes.invalidInput)
            e.violations = violations
            return e
        case .failedPrecondition, .aborted, .alreadyExists:
            return CLIError(error.message, hints: ["someone changed it meanwhile; fetch it again and retry"], code: ExitCodes.conflict)
        default:
            return CLIError("\(error.code): \(error.message)", code: ExitCodes.failure)
        }
    }

    private static func strip(_ message: String) -> String {
        message.replacingOccurrences(of: "; is the server running? check the address (--server)", with: "")
            .replacingOccurrences(of: "; check the address (--server)", with: "")
    }
}
