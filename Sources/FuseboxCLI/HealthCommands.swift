import ArgumentParser
import Foundation
import FuseboxRPC
import FuseboxWire

// MARK: - health --fleet

/// `fusebox health --fleet`: FleetHealthService, rendered.
enum FleetHealthCommand {
    static func run(global: GlobalOptions, registry: String, watch: Bool) async throws {
        try await runCommand { scope in
            let settings = try global.resolve()
            let connection = try scope.connect(settings)
            var request = Fusebox_V1_GetFleetHealthRequest()
            request.registry = registry
            if !watch {
                let health = try await connection.unary("fusebox.v1.FleetHealthService", "GetFleetHealth", request, as: Fusebox_V1_FleetHealth.self)
                emit(settings.output, value(health)) { text(health) }
                if health.status != .healthy {
                    throw CLIError("the fleet is \(name(health.status))", code: ExitCodes.failure)
                }
                return
            }
            let output = settings.output
            do {
                try await connection.client.serverStreaming(
                    "fusebox.v1.FleetHealthService", "WatchFleetHealth", request, as: Fusebox_V1_FleetHealth.self
                ) { health in
                    emit(output, value(health)) { "— \(formatTime(health.atMs))\n" + text(health) }
                }
            } catch let error as RPCError {
                throw connection.explain(error)
            }
        }
    }

    static func name(_ s: Fusebox_V1_HealthStatus) -> String {
        switch s {
        case .healthy: return "healthy"
        case .degraded: return "degraded"
        case .critical: return "critical"
        default: return "unknown"
        }
    }

    static func reasons(_ list: [Fusebox_V1_HealthReason]) -> String {
        list.map { "\($0.message) (\(name($0.status)))" }.joined(separator: "; ")
    }

    static func value(_ h: Fusebox_V1_FleetHealth) -> OutputValue {
        func reasonValues(_ list: [Fusebox_V1_HealthReason]) -> OutputValue {
            .list(list.map { .map([("code", .string($0.code)), ("status", .string(name($0.status))), ("message", .string($0.message))]) })
        }
        return .map([
            ("status", .string(name(h.status))), ("reasons", reasonValues(h.reasons)), ("storeAvailable", .bool(h.storeAvailable)),
            ("localModeClients", .int(Int64(h.localModeClients))), ("replicasServing", .int(Int64(h.replicasServing))),
            ("replicas", .int(Int64(h.replicas))), ("at", .string(formatTime(h.atMs))), ("answeredBy", .string(h.answeredBy)),
            ("registries", .list(h.registries.map { r in
                .map([
                    ("registry", .string(r.registry)), ("status", .string(name(r.status))), ("healthy", .int(Int64(r.healthy))),
                    ("degraded", .int(Int64(r.degraded))), ("critical", .int(Int64(r.critical))),
                    ("breakers", .list(r.breakers.map { b in
                        .map([
                            ("breaker", .string(b.breaker.map { "\($0.registry)/\($0.name)" } ?? "")), ("state", .string(stateName(b.state))),
                            ("status", .string(name(b.status))), ("reasons", reasonValues(b.reasons)), ("calls", .int(Int64(clamping: b.calls))),
                            ("failures", .int(Int64(clamping: b.failures))), ("recentTrips", .int(Int64(b.recentTrips))),
                        ])
                    })),
                ])
            })),
        ])
    }

    static func text(_ h: Fusebox_V1_FleetHealth) -> String {
        var lines = ["fleet: \(name(h.status).uppercased())  (store \(h.storeAvailable ? "available" : "UNAVAILABLE"), "
            + "\(h.replicasServing)/\(h.replicas) replicas serving, \(h.localModeClients) clients in local mode; answered by \(h.answeredBy))"]
        for r in h.reasons { lines.append("  ! \(r.message) (\(name(r.status)))") }
        if h.registries.isEmpty { lines.append("no breakers") }
        for r in h.registries {
            lines.append("")
            lines.append("registry \(r.registry): \(name(r.status).uppercased())  (\(r.healthy) healthy, \(r.degraded) degraded, \(r.critical) critical)")
            if !r.breakers.isEmpty {
                lines.append(table(
                    ["BREAKER", "STATE", "HEALTH", "FAILED/CALLS", "TRIPS(10m)", "REASONS"],
                    r.breakers.map { b in
                        [b.breaker?.name ?? "", stateName(b.state), name(b.status), "\(b.failures)/\(b.calls)", "\(b.recentTrips)", reasons(b.reasons)]
                    }))
            }
        }
        return lines.joined(separator: "\n")
    }
}

// MARK: - alerts

struct Alerts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The alerts fuseboxd has sent.", subcommands: [List.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the alert history, newest first: what fired and resolved, and what each sink did with it.",
            discussion: """
                Examples:
                  fusebox alerts list
                  fusebox alerts list --rule breaker-opened --breaker default/payments -o json
                """)
        @OptionGroup var global: GlobalOptions
        @Option(help: "Only this rule.") var rule = ""
        @Option(help: "Only this breaker (registry/name), or \"fleet\" for fleet-wide alerts.") var breaker = ""
        @Option(help: "At most this many (1-1000).") var limit: UInt32 = 100

        func run() async throws {
            try await runCommand { scope in
                let settings = try global.resolve()
                guard (1...1_000).contains(limit) else { throw CLIError("--limit takes 1 to 1000, not \(limit)", code: ExitCodes.invalidInput) }
                var request = Fusebox_V1_ListAlertsRequest()
                request.rule = rule
                request.subject = breaker
                request.limit = limit
                let connection = try scope.connect(settings)
                let r = try await connection.unary("fusebox.v1.AlertService", "ListAlerts", request, as: Fusebox_V1_ListAlertsResponse.self)
                let value: OutputValue = .list(r.alerts.map { a in
                    .map([
                        ("id", .int(Int64(clamping: a.id))), ("at", .string(formatTime(a.atMs))), ("status", .string(a.status)),
                        ("severity", .string(a.severity)), ("rule", .string(a.rule)), ("kind", .string(a.kind)),
                        ("subject", .string(a.breaker.map { "\($0.registry)/\($0.name)" } ?? "fleet")), ("summary", .string(a.summary)),
                        ("startedAt", .string(formatTime(a.startedAtMs))), ("suppressedTriggers", .int(Int64(a.suppressedTriggers))),
                        ("deliveries", .list(a.deliveries.map { d in
                            .map([("sink", .string(d.sink)), ("state", .string(d.state)), ("attempts", .int(Int64(d.attempts))), ("error", .string(d.error))])
                        })),
                    ])
                })
                emit(settings.output, value) {
                    if !r.enabled { return "no alert sinks are configured on this server (see docs/ALERTS.md)" }
                    if r.alerts.isEmpty { return "no alerts" }
                    return table(
                        ["ID", "AT", "STATUS", "SEVERITY", "RULE", "SUBJECT", "SUMMARY", "DELIVERIES"],
                        r.alerts.map { a in
                            [
                                "\(a.id)", formatTime(a.atMs), a.status, a.severity, a.rule, a.breaker.map { "\($0.registry)/\($0.name)" } ?? "fleet",
                                a.summary, a.deliveries.map { "\($0.sink): \($0.state)" + ($0.error.isEmpty ? "" : " (\($0.error))") }.joined(separator: ", "),
                            ]
                        })
                }
            }
        }
    }
}
