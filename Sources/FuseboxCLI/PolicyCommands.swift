import ArgumentParser
import Foundation
import FuseboxAPI
import FuseboxCore
import FuseboxRPC
import FuseboxWire

struct Policies: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read and change resilience policies.",
        subcommands: [List.self, Get.self, Apply.self, Delete.self, History.self, Diff.self, Validate.self])

    static func sections(_ p: Policy) -> String {
        var s: [String] = []
        if p.circuitBreaker != nil { s.append("breaker") }
        if p.retry != nil { s.append("retry") }
        if p.timeout != nil { s.append("timeout") }
        if p.bulkhead != nil { s.append("bulkhead") }
        if p.rateLimit != nil { s.append("rateLimit") }
        if p.fallback != nil { s.append("fallback") }
        if p.cache != nil { s.append("cache") }
        return s.joined(separator: ",")
    }

    /// A PutPolicy rejection as problems in the policy file, at the lines of
    /// the fields the server named (it names them in proto spelling).
    static func rejected(_ error: CLIError, _ document: PolicyDocument, applied: [String], registry: String) -> CLIError {
        let problems = document.problems(fromServer: error.violations.map { PolicyViolation(field: $0.field, message: $0.description) })
        let count = "\(problems.count) problem\(problems.count == 1 ? "" : "s")"
        return CLIError(
            "the server rejected policy \(registry)/\(document.policy.name) of \(document.file) (\(count)):\n"
                + problems.map { "  \($0)" }.joined(separator: "\n"),
            hints: applied.isEmpty ? [] : ["the policies before it in the file were applied: \(applied.joined(separator: ", "))"],
            code: error.code)
    }

    static func domain(_ record: Fusebox_V1_PolicyRecord) throws -> Policy {
        guard let wire = record.policy else { throw CLIError("the server sent a record without a policy", code: ExitCodes.failure) }
        switch PolicyMapping.policy(from: wire) {
        case .success(let p): return p
        case .failure(let e): throw CLIError("the server sent a policy this CLI cannot read: \(e)", code: ExitCodes.failure)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the policies of a registry.",
            discussion: """
                Examples:
                  fusebox policies list
                  fusebox policies list --registry payments -o yaml
                """)
        @OptionGroup var global: GlobalOptions
        @Option(help: "The registry.") var registry = "default"

        func run() async throws {
            try await runCommand { scope in
                let settings = try global.resolve()
                let connection = try scope.connect(settings)
                var request = Fusebox_V1_GetRegistryRequest()
                request.registry = registry
                let snapshot = try await connection.unary("fusebox.v1.RegistryService", "GetRegistry", request, as: Fusebox_V1_RegistrySnapshot.self)
                let records = try snapshot.policies.map { ($0, try Policies.domain($0)) }
                let value: OutputValue = .map([
                    ("registry", .string(snapshot.name)), ("version", .int(Int64(clamping: snapshot.version))),
                    ("policies", .list(records.map { r, p in
                        .map([
                            ("version", .int(Int64(clamping: r.version))), ("updatedAt", .string(formatTime(r.updatedAtMs))),
                            ("updatedBy", .string(r.updatedBy)), ("policy", PolicyYAML.value(p)),
                        ])
                    })),
                ])
                emit(settings.output, value) {
                    records.isEmpty ? "registry \(registry) has no policies" : table(
                        ["NAME", "VERSION", "SECTIONS", "UPDATED", "BY", "DESCRIPTION"],
                        records.map { r, p in [p.name, "\(r.version)", Policies.sections(p), formatTime(r.updatedAtMs), r.updatedBy, p.description] })
                }
            }
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show one policy; -o yaml prints a file `policies apply -f` takes back.",
            discussion: """
                Examples:
                  fusebox policies get api -o yaml > api.yaml
                  fusebox policies get checkout --registry payments -o json
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Policy name.") var name: String
        @Option(help: "The registry.") var registry = "default"

        func run() async throws {
            try await runCommand { scope in
                let settings = try global.resolve()
                let connection = try scope.connect(settings)
                var request = Fusebox_V1_GetPolicyRequest()
                request.registry = registry
                request.name = name
                let record = try await connection.unary("fusebox.v1.RegistryService", "GetPolicy", request, as: Fusebox_V1_PolicyRecord.self)
                let policy = try Policies.domain(record)
                switch settings.output {
                case .yaml: out(PolicyYAML.value(policy).yaml())
                case .json:
                    out(OutputValue.map([
                        ("version", .int(Int64(clamping: record.version))), ("updatedAt", .string(formatTime(record.updatedAtMs))),
                        ("updatedBy", .string(record.updatedBy)), ("policy", PolicyYAML.value(policy)),
                    ]).json())
                case .table:
                    out("# \(registry)/\(name) version \(record.version), updated \(formatTime(record.updatedAtMs)) by \(record.updatedBy)")
                    out(PolicyYAML.value(policy).yaml())
                }
            }
        }
    }

    struct Apply: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create or update the policies of a YAML file (role admin).",
            discussion: """
                The file is validated first; nothing is applied if any policy in it is invalid.
                Examples:
                  fusebox policies apply -f checkout.yaml --reason "raise timeout for Black Friday"
                  fusebox policies get api -o yaml | sed 's/maxAttempts: 3/maxAttempts: 4/' | fusebox policies apply -f -
                """)
        @OptionGroup var global: GlobalOptions
        @Option(name: [.customShort("f"), .long], help: "Policy file (YAML; - for stdin).") var file: String
        @Option(help: "The registry.") var registry = "default"
        @Option(help: "Why; recorded with the change.") var reason = ""

        func run() async throws {
            try await runCommand { scope in
                let settings = try global.resolve()
                let documents = try readPolicyDocuments(file)
                let connection = try scope.connect(settings)
                var results: [OutputValue] = []
                var lines: [String] = []
                for document in documents {
                    let policy = document.policy
                    var request = Fusebox_V1_PutPolicyRequest()
                    request.registry = registry
                    request.policy = PolicyMapping.wire(policy)
                    request.reason = reason
                    let r: Fusebox_V1_PutPolicyResponse
                    do {
                        r = try await connection.unary("fusebox.v1.RegistryService", "PutPolicy", request, as: Fusebox_V1_PutPolicyResponse.self)
                    } catch let error as CLIError where error.violations.contains(where: { $0.field == "policy" || $0.field.hasPrefix("policy.") }) {
                        throw Policies.rejected(error, document, applied: documents.prefix(results.count).map(\.policy.name), registry: registry)
                    }
                    let kind = switch r.kind {
                    case .created: "created"
                    case .updated: "updated"
                    default: "unchanged"
                    }
                    results.append(.map([
                        ("policy", .string(policy.name)), ("result", .string(kind)), ("version", .int(Int64(clamping: r.record?.version ?? 0))),
                        ("registryVersion", .int(Int64(clamping: r.registryVersion))),
                    ]))
                    lines.append("policy \(registry)/\(policy.name) \(kind) (version \(r.record?.version ?? 0), registry version \(r.registryVersion))")
                }
                emit(settings.output, .list(results)) { lines.joined(separator: "\n") }
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a policy (role admin).",
            discussion: """
                Examples:
                  fusebox policies delete legacy-search --reason "service retired"
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Policy name.") var name: String
        @Option(help: "The registry.") var registry = "default"
        @Option(help: "Why; recorded with the change.") var reason = ""

        func run() async throws {
            try await runCommand { scope in
                let settings = try global.resolve()
                let connection = try scope.connect(settings)
                var request = Fusebox_V1_DeletePolicyRequest()
                request.registry = registry
                request.name = name
                request.reason = reason
                let r = try await connection.unary("fusebox.v1.RegistryService", "DeletePolicy", request, as: Fusebox_V1_DeletePolicyResponse.self)
                emit(settings.output, .map([("policy", .string(name)), ("result", .string("deleted")), ("registryVersion", .int(Int64(clamping: r.registryVersion)))])) {
                    "policy \(registry)/\(name) deleted (registry version \(r.registryVersion))"
                }
            }
        }
    }

    struct History: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the changes of a policy, oldest first.",
            discussion: """
                Examples:
                  fusebox policies history api
                  fusebox policies history checkout --registry payments -o json
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Policy name.") var name: String
        @Option(help: "The registry.") var registry = "default"
        @Option(help: "At most this many changes.") var limit: UInt32 = 100

        func run() async throws {
            try await runCommand { scope in
                let settings = try global.resolve()
                let connection = try scope.connect(settings)
                var request = Fusebox_V1_PolicyHistoryRequest()
                request.registry = registry
                request.name = name
                request.limit = limit
                let r = try await connection.unary("fusebox.v1.RegistryService", "PolicyHistory", request, as: Fusebox_V1_PolicyHistoryResponse.self)
                func kind(_ k: Fusebox_V1_ChangeKind) -> String {
                    switch k {
                    case .created: return "created"
                    case .updated: return "updated"
                    case .deleted: return "deleted"
                    default: return "unknown"
                    }
                }
                let value: OutputValue = .list(r.changes.map { c in
                    .map([
                        ("version", .int(Int64(clamping: c.version))), ("kind", .string(kind(c.kind))), ("actor", .string(c.actor)),
                        ("at", .string(formatTime(c.atMs))), ("reason", .string(c.reason)),
                        ("after", c.after.flatMap { try? PolicyMapping.policy(from: $0).get() }.map(PolicyYAML.value) ?? .null),
                    ])
                })
                emit(settings.output, value) {
                    r.changes.isEmpty ? "no history for \(registry)/\(name)" : table(
                        ["VERSION", "KIND", "ACTOR", "AT", "REASON"],
                        r.changes.map { ["\($0.version)", kind($0.kind), $0.actor, formatTime($0.atMs), $0.reason] })
                }
            }
        }
    }

    struct Diff: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show what `policies apply -f FILE` would change.",
            discussion: """
                Exits 0 when nothing would change and 10 when something would.
                Examples:
                  fusebox policies diff -f checkout.yaml
                """)
        @OptionGroup var global: GlobalOptions
        @Option(name: [.customShort("f"), .long], help: "Policy file (YAML; - for stdin).") var file: String
        @Option(help: "The registry.") var registry = "default"

        func run() async throws {
            try await runCommand { scope in
                let settings = try global.resolve()
                let policies = try readPolicyFile(file)
                let connection = try scope.connect(settings)
                var changed = false
                var output: [String] = []
                for policy in policies {
                    var request = Fusebox_V1_GetPolicyRequest()
                    request.registry = registry
                    request.name = policy.name
                    var current: Policy?
                    do {
                        current = try Policies.domain(try await connection.unary("fusebox.v1.RegistryService", "GetPolicy", request, as: Fusebox_V1_PolicyRecord.self))
                    } catch let e as CLIError where e.code == ExitCodes.notFound {
                        current = nil
                    }
                    let old = current.map { PolicyYAML.value($0).yaml().components(separatedBy: "\n") } ?? []
                    let new = PolicyYAML.value(policy).yaml().components(separatedBy: "\n")
                    if old == new {
                        output.append("policy \(registry)/\(policy.name): no changes")
                        continue
                    }
                    changed = true
                    output.append("--- \(registry)/\(policy.name) (\(current == nil ? "does not exist" : "server"))")
                    output.append("+++ \(registry)/\(policy.name) (\(file))")
                    output += diffHunks(lineDiff(old, new))
                }
                out(output.joined(separator: "\n"))
                if changed { throw ExitCode(ExitCodes.differences) }
            }
        }
    }

    struct Validate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a policy file without applying it; every problem is reported with its line and column.",
            discussion: """
                Works offline: the checks are the server's own.
                Examples:
                  fusebox policies validate -f checkout.yaml
                """)
        @Option(name: [.customShort("f"), .long], help: "Policy file (YAML; - for stdin).") var file: String
        @Option(name: [.customShort("o"), .long], help: "Output: table, json or yaml.") var output: OutputFormat = .table

        func run() async throws {
            try await runCommand { scope in
                switch PolicyYAML.parse(try readText(file), file: file) {
                case .success(let policies):
                    emit(output, .map([("valid", .bool(true)), ("policies", .list(policies.map { .string($0.name) }))])) {
                        "\(file): valid (\(policies.map(\.name).joined(separator: ", ")))"
                    }
                case .failure(let found):
                    let problems = found.problems
                    emit(output, .map([
                        ("valid", .bool(false)),
                        ("problems", .list(problems.map { p in
                            .map([
                                ("line", p.line.map { .int(Int64($0)) } ?? .null), ("column", p.column.map { .int(Int64($0)) } ?? .null),
                                ("field", .string(p.field)), ("message", .string(p.message)),
                            ])
                        })),
                    ])) {
                        problems.map(\.description).joined(separator: "\n") + "\n\(file): \(problems.count) problem\(problems.count == 1 ? "" : "s")"
                    }
                    throw ExitCode(ExitCodes.invalidInput)
                }
            }
        }
    }
}
