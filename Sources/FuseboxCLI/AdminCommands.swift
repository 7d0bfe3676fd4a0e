import ArgumentParser
import Foundation
import FuseboxAPI
import FuseboxCore
import FuseboxRPC
import FuseboxWire

// MARK: - breaker

struct Breaker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Override or reset one breaker (role admin).",
        subcommands: [ForceOpen.self, ForceClose.self, Disable.self, Shadow.self, Reset.self])

    struct OverrideOptions: ParsableArguments {
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Breaker name.") var name: String
        @Option(help: "Its registry.") var registry = "default"
        @Option(help: "Why; recorded in the audit log. Required.") var reason: String
        @Option(name: .customLong("for"), help: "Lift the override after this long, e.g. 10m or 1h30m (default: until lifted).")
        var duration: String?
        @Option(help: "Policy to bind the breaker to if it does not exist yet.") var policy = ""
    }

    static func override(_ method: String, _ o: OverrideOptions, verb: String) async throws {
        try await runCommand { scope in
            let settings = try o.global.resolve()
            var request = Fusebox_V1_OverrideRequest()
            request.breaker = BreakerMapping.ref(o.registry, o.name)
            request.reason = o.reason
            request.policy = o.policy
            if let d = o.duration {
                guard let ms = parseDuration(d), ms > 0, ms <= Int64(UInt32.max) else {
                    throw CLIError("--for \"\(d)\" is not a duration like 10m, 1h30m or 45s", code: ExitCodes.invalidInput)
                }
                request.durationMs = UInt32(ms)
            }
            guard !o.reason.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw CLIError("--reason must say why (it goes into the audit log)", code: ExitCodes.invalidInput)
            }
            let connection = try scope.connect(settings)
            let response = try await connection.unary("fusebox.v1.AdminService", method, request, as: Fusebox_V1_AdminActionResponse.self)
            printAction(settings.output, response, verb: verb, name: "\(o.registry)/\(o.name)")
        }
    }

    static func printAction(_ format: OutputFormat, _ r: Fusebox_V1_AdminActionResponse, verb: String, name: String) {
        let value: OutputValue = .map([
            ("before", r.before.map(statusValue) ?? .null), ("after", r.after.map(statusValue) ?? .null),
            ("auditId", .int(Int64(clamping: r.auditId))),
        ])
        emit(format, value) {
            let after = r.after ?? Fusebox_V1_BreakerStatus()
            let before = r.before.map { stateName($0.state) } ?? "(new)"
            let until = after.untilMs > 0 ? " until \(formatTime(after.untilMs))" : ""
            return "breaker \(name) \(verb): \(before) -> \(stateName(after.state)) (generation \(after.generation))\(until); audit entry \(r.auditId)"
        }
    }

    struct ForceOpen: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "force-open", abstract: "Reject every call through the breaker until lifted or --for expires.",
            discussion: """
                Examples:
                  fusebox breaker force-open stripe-api --reason "provider incident INC-431"
                  fusebox breaker force-open stripe-api --reason "maintenance" --for 10m
                """)
        @OptionGroup var options: OverrideOptions
        func run() async throws { try await Breaker.override("ForceOpen", options, verb: "forced open") }
    }

    struct ForceClose: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "force-close", abstract: "Let every call through, whatever the outcomes, until lifted or --for expires.",
            discussion: """
                Examples:
                  fusebox breaker force-close search --reason "false trips, tuning thresholds" --for 1h
                """)
        @OptionGroup var options: OverrideOptions
        func run() async throws { try await Breaker.override("ForceClose", options, verb: "forced closed") }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Let every call through but keep measuring outcomes.",
            discussion: """
                Examples:
                  fusebox breaker disable recommendations --reason "load test"
                """)
        @OptionGroup var options: OverrideOptions
        func run() async throws { try await Breaker.override("Disable", options, verb: "disabled") }
    }

    struct Shadow: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Let every call through and publish the state the breaker would take (to tune thresholds safely).",
            discussion: """
                Examples:
                  fusebox breaker shadow inventory --reason "trying failureRateThreshold 30" --for 2h
                """)
        @OptionGroup var options: OverrideOptions
        func run() async throws { try await Breaker.override("Shadow", options, verb: "in shadow mode") }
    }

    struct Reset: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Lift any override, clear the window and close the breaker.",
            discussion: """
                Examples:
                  fusebox breaker reset stripe-api --reason "incident INC-431 resolved"
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Breaker name.") var name: String
        @Option(help: "Its registry.") var registry = "default"
        @Option(help: "Why; recorded in the audit log. Required.") var reason: String

        func run() async throws {
            try await runCommand { scope in
                let settings = try global.resolve()
                guard !reason.trimmingCharacters(in: .whitespaces).isEmpty else {
                    throw CLIError("--reason must say why (it goes into the audit log)", code: ExitCodes.invalidInput)
                }
                var request = Fusebox_V1_ResetRequest()
                request.breaker = BreakerMapping.ref(registry, name)
                request.reason = reason
                let connection = try scope.connect(settings)
                let response = try await connection.unary("fusebox.v1.AdminService", "Reset", request, as: Fusebox_V1_AdminActionResponse.self)
                Breaker.printAction(settings.output, response, verb: "reset", name: "\(registry)/\(name)")
            }
        }
    }
}

// MARK: - registries

struct Registries: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Policy registries.", subcommands: [List.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List registries with their versions and policy counts.",
            discussion: """
                Examples:
                  fusebox registries list
                  fusebox registries list -o json
                """)
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await runCommand { scope in
                let settings = try global.resolve()
                let connection = try scope.connect(settings)
                let r = try await connection.unary(
                    "fusebox.v1.RegistryService", "ListRegistries", Fusebox_V1_ListRegistriesRequest(), as: Fusebox_V1_ListRegistriesResponse.self)
                let value: OutputValue = .list(r.registries.map { g in
                    .map([
                        ("name", .string(g.name)), ("version", .int(Int64(clamping: g.version))), ("policies", .int(Int64(g.policyCount))),
                        ("updatedAt", .string(formatTime(g.updatedAtMs))),
                    ])
                })
                emit(settings.output, value) {
                    r.registries.isEmpty ? "no registries" : table(
                        ["NAME", "VERSION", "POLICIES", "UPDATED"],
                        r.registries.map { [$0.name, "\($0.version)", "\($0.policyCount)", formatTime($0.updatedAtMs)] })
                }
            }
        }
    }
}

// MARK: - audit

struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the audit log: overrides, resets, policy changes, refused connections.",
        discussion: """
            Examples:
              fusebox audit
              fusebox audit --since 1h --breaker stripe
              fusebox audit --since 2026-11-30T00:00:00Z --denied -o json
            """)
    @OptionGroup var global: GlobalOptions
    @Option(help: "Only entries newer than this: a duration back from now (1h, 30m) or a time (2026-11-30T08:00:00Z).") var since: String?
    @Option(help: "Only entries of breakers whose name starts with this.") var breaker = ""
    @Option(help: "Only this registry.") var registry = ""
    @Flag(help: "Only refused attempts.") var denied = false
    @Option(help: "At most this many entries, newest first (1-1000).") var limit: UInt32 = 100

    func run() async throws {
        try await runCommand { scope in
            let settings = try global.resolve()
            var request = Fusebox_V1_ListAuditRequest()
            if let since {
                if let ms = parseDuration(since) {
                    request.sinceMs = Int64(Date().timeIntervalSince1970 * 1000) - ms
                } else if let date = ISO8601DateFormatter().date(from: since) {
                    request.sinceMs = Int64(date.timeIntervalSince1970 * 1000)
                } else {
                    throw CLIError("--since \"\(since)\" is neither a duration (1h, 30m) nor a time (2026-11-30T08:00:00Z)", code: ExitCodes.invalidInput)
                }
            }
            request.breakerPrefix = breaker
            request.registry = registry
            request.deniedOnly = denied
            request.limit = limit
            let connection = try scope.connect(settings)
            let r = try await connection.unary("fusebox.v1.AdminService", "ListAudit", request, as: Fusebox_V1_ListAuditResponse.self)
            let value: OutputValue = .list(r.entries.map { e in
                .map([
                    ("id", .int(Int64(clamping: e.id))), ("at", .string(formatTime(e.atMs))), ("actor", .string(Self.actor(e.actor))),
                    ("action", .string(Self.action(e.action))), ("breaker", .string(e.breaker.map { "\($0.registry)/\($0.name)" } ?? "")),
                    ("policy", .string(e.policy)), ("allowed", .bool(e.allowed)), ("deniedReason", .string(e.deniedReason)),
                    ("stateBefore", .string(stateName(e.stateBefore))), ("stateAfter", .string(stateName(e.stateAfter))),
                    ("durationMs", .int(Int64(e.durationMs))), ("reason", .string(e.reason)),
                ])
            })
            emit(settings.output, value) {
                r.entries.isEmpty ? "no audit entries" : table(
                    ["ID", "AT", "ACTOR", "ACTION", "TARGET", "RESULT", "REASON"],
                    r.entries.map { e in
                        let target = e.breaker.map { "\($0.registry)/\($0.name)" } ?? e.policy
                        let before = e.stateBefore == .unspecified ? "(new)" : stateName(e.stateBefore)
                        let result = e.allowed ? (e.stateAfter == .unspecified ? "ok" : "\(before) -> \(stateName(e.stateAfter))") : "DENIED: \(e.deniedReason)"
                        return ["\(e.id)", formatTime(e.atMs), Self.actor(e.actor), Self.action(e.action), target, result, e.reason]
                    }) + (r.truncated ? "\n(more entries; raise --limit or narrow --since)" : "")
            }
        }
    }

    static func actor(_ p: Fusebox_V1_PeerIdentity?) -> String {
        guard let p else { return "anonymous" }
        if !p.commonName.isEmpty { return p.commonName }
        return p.uris.first ?? p.dnsNames.first ?? "anonymous"
    }

    static func action(_ a: Fusebox_V1_AuditAction) -> String {
        switch a {
        case .forceOpen: return "force-open"
        case .forceClose: return "force-close"
        case .disable: return "disable"
        case .shadow: return "shadow"
        case .reset: return "reset"
        case .overrideExpired: return "override-expired"
        case .putPolicy: return "put-policy"
        case .deletePolicy: return "delete-policy"
        case .connectionRefused: return "connection-refused"
        case .listAudit: return "list-audit"
        case .getClusterStatus: return "get-cluster-status"
        default: return "unknown"
        }
    }
}

// MARK: - health, version

struct Health: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ask fuseboxd whether it is serving (grpc.health.v1), or how healthy the fleet is (--fleet).",
        discussion: """
            Exits 0 when SERVING, 1 when not, 3 when unreachable.
            With --fleet: the fleet's health per registry and breaker (healthy,
            degraded, critical, with reasons); exits 0 when healthy, 1 when
            degraded or critical. --watch prints it again on every change.
            Examples:
              fusebox health
              fusebox --server fusebox.internal:7443 health -o json
              fusebox health --fleet
              fusebox health --fleet --registry payments --watch
            """)
    @OptionGroup var global: GlobalOptions
    @Flag(help: "The fleet's health: registries, breakers and reasons.") var fleet = false
    @Option(help: "With --fleet: only this registry.") var registry = ""
    @Flag(help: "With --fleet: keep printing it as it changes (Ctrl-C ends).") var watch = false

    func run() async throws {
        if fleet {
            try await FleetHealthCommand.run(global: global, registry: registry, watch: watch)
            return
        }
        guard !watch, registry.isEmpty else { throw CLIError("--registry and --watch go with --fleet", code: ExitCodes.invalidInput) }
        try await runCommand { scope in
            let settings = try global.resolve()
            let connection = try scope.connect(settings)
            let start = ContinuousClock.now
            let r = try await connection.unary(
                "grpc.health.v1.Health", "Check", Grpc_Health_V1_HealthCheckRequest(), as: Grpc_Health_V1_HealthCheckResponse.self)
            let elapsed = ContinuousClock.now - start
            let ms = elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
            let status = switch r.status {
            case .serving: "SERVING"
            case .notServing: "NOT_SERVING"
            default: "UNKNOWN"
            }
            emit(settings.output, .map([("server", .string(connection.address)), ("status", .string(status)), ("latencyMs", .int(ms))])) {
                "fuseboxd at \(connection.address): \(status) (\(ms) ms)"
            }
            if r.status != .serving { throw CLIError("fuseboxd at \(connection.address) is \(status)", code: ExitCodes.failure) }
        }
    }
}

struct Version: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the CLI's version.", discussion: """
        Examples:
          fusebox version
          fusebox version -o json
        """)
    @Option(name: [.customShort("o"), .long], help: "Output: table, json or yaml.") var output: OutputFormat = .table

    func run() async throws {
        emit(output, .map([("client", .string(fuseboxCLIVersion)), ("api", .string("fusebox.v1"))])) {
            "fusebox \(fuseboxCLIVersion) (API fusebox.v1)"
        }
    }
}
