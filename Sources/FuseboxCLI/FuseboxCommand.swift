public import ArgumentParser
import Foundation
import FuseboxAPI
import FuseboxCore
import FuseboxRPC
import FuseboxWire
import Synchronization

/// The CLI's version.
public let fuseboxCLIVersion = "0.1.0"

/// `fusebox`: the admin CLI of fuseboxd.
public struct FuseboxCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "fusebox",
        abstract: "Operate fuseboxd: breakers, policies, registries, audit, cluster.",
        discussion: """
            Connection settings come from flags, then FUSEBOX_SERVER / FUSEBOX_CA / FUSEBOX_CERT / FUSEBOX_KEY,
            then the current context of ~/.config/fusebox/config.yaml.

            Examples:
              fusebox breakers list
              fusebox breaker force-open stripe-api --reason "provider incident" --for 10m
              fusebox policies apply -f checkout.yaml
              fusebox --server fusebox.internal:7443 --ca ca.pem --cert admin.pem --key admin.key audit --since 1h

            Exit codes: 0 ok, 1 failure, 2 invalid input, 3 server unreachable or TLS failure,
            4 permission denied, 5 not found, 6 conflict, 10 differences found (policies diff).
            """,
        version: fuseboxCLIVersion,
        subcommands: [
            Breakers.self, Breaker.self, Policies.self, Registries.self, Audit.self, Alerts.self, Cluster.self, Health.self, Version.self,
        ])

    public init() {}
}

// MARK: - breakers

struct Breakers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, inspect and watch circuit breakers.", subcommands: [List.self, Get.self, Watch.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List breakers and their states.",
            discussion: """
                Examples:
                  fusebox breakers list
                  fusebox breakers list --registry payments --prefix stripe -o json
                """)
        @OptionGroup var global: GlobalOptions
        @Option(help: "Only this registry.") var registry = ""
        @Option(help: "Only names starting with this.") var prefix = ""

        func run() async throws {
            try await runCommand { scope in
                let settings = try global.resolve()
                let connection = try scope.connect(settings)
                var all: [Fusebox_V1_BreakerStatus] = []
                var request = Fusebox_V1_ListBreakersRequest()
                request.registry = registry
                request.namePrefix = prefix
                request.pageSize = 1_000
                repeat {
                    let page = try await connection.unary("fusebox.v1.BreakerService", "ListBreakers", request, as: Fusebox_V1_ListBreakersResponse.self)
                    all += page.breakers
                    request.pageToken = page.nextPageToken
                } while !request.pageToken.isEmpty
                emit(settings.output, .list(all.map(statusValue))) {
                    all.isEmpty ? "no breakers" : table(
                        ["REGISTRY", "NAME", "POLICY", "STATE", "GEN", "SINCE", "REASON"],
                        all.map { s in
                            [s.breaker?.registry ?? "", s.breaker?.name ?? "", s.policy, stateName(s.state), "\(s.generation)", formatTime(s.sinceMs), s.reason]
                        })
                }
            }
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show one breaker: state, window, per-client contributions.",
            discussion: """
                Examples:
                  fusebox breakers get stripe-api
                  fusebox breakers get stripe-api --registry payments -o yaml
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Breaker name.") var name: String
        @Option(help: "Its registry.") var registry = "default"

        func run() async throws {
            try await runCommand { scope in
                let settings = try global.resolve()
                let connection = try scope.connect(settings)
                var request = Fusebox_V1_GetBreakerRequest()
                request.breaker = BreakerMapping.ref(registry, name)
                let d = try await connection.unary("fusebox.v1.BreakerService", "GetBreaker", request, as: Fusebox_V1_BreakerDetail.self)
                let w = d.window ?? Fusebox_V1_WindowStats()
                let window: [(String, OutputValue)] = [
                    ("counts", countsValue(w.counts)), ("calls", .int(Int64(clamping: w.calls))),
                    ("failureRatePercent", .double(w.failureRatePercent)), ("slowCallRatePercent", .double(w.slowCallRatePercent)),
                    ("consecutiveFailures", .int(Int64(w.consecutiveFailures))), ("failingClients", .int(Int64(w.failingClients))),
                ]
                let contributions: [OutputValue] = d.contributions.map { c in
                    let pairs: [(String, OutputValue)] = [
                        ("clientId", .string(c.clientId)), ("counts", countsValue(c.counts)), ("lastReportAt", .string(formatTime(c.lastReportAtMs))),
                    ]
                    return .map(pairs)
                }
                let status: OutputValue = d.status.map(statusValue) ?? .null
                let value: OutputValue = .map([
                    ("status", status), ("window", .map(window)), ("contributions", .list(contributions)),
                    ("outstandingPermits", .int(Int64(d.outstandingPermits))), ("trips", .int(Int64(d.trips))),
                ])
                emit(settings.output, value) {
                    let s = d.status ?? Fusebox_V1_BreakerStatus()
                    var lines = [
                        "Breaker:      \(registry)/\(name)", "Policy:       \(s.policy)",
                        "State:        \(stateName(s.state))" + (s.evaluatedState != s.state ? " (rules say \(stateName(s.evaluatedState)))" : ""),
                        "Generation:   \(s.generation)", "Since:        \(formatTime(s.sinceMs))",
                    ]
                    if s.untilMs > 0 { lines.append("Until:        \(formatTime(s.untilMs))") }
                    lines += [
                        "Reason:       \(s.reason)",
                        "Window:       \(w.calls) calls, \(OutputValue.number((w.failureRatePercent * 10).rounded() / 10))% failed, \(OutputValue.number((w.slowCallRatePercent * 10).rounded() / 10))% slow, \(w.consecutiveFailures) consecutive failures, \(w.failingClients) failing clients",
                        "Trips:        \(d.trips)", "Permits out:  \(d.outstandingPermits)",
                    ]
                    if !d.contributions.isEmpty {
                        lines += ["", table(["CLIENT", "SUCCESS", "FAILURE", "SLOW", "LAST REPORT"], d.contributions.map { c in
                            let k = BreakerMapping.counts(c.counts)
                            return [c.clientId, "\(k.success)", "\(k.failure)", "\(k.slowSuccess + k.slowFailure)", formatTime(c.lastReportAtMs)]
                        })]
                    }
                    return lines.joined(separator: "\n")
                }
            }
        }
    }

    struct Watch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print breaker transitions as they happen.",
            discussion: """
                Prints the current states first, then one line per transition.
                Examples:
                  fusebox breakers watch
                  fusebox breakers watch --registry payments -o json --count 5
                """)
        @OptionGroup var global: GlobalOptions
        @Option(help: "Only this registry.") var registry = ""
        @Option(help: "Only names starting with this.") var prefix = ""
        @Option(help: "Stop after this many transitions.") var count: Int?
        @Option(help: "Stop after this long, e.g. 30s (default: run until interrupted).") var timeout: String?

        func run() async throws {
            try await runCommand { scope in
                let settings = try global.resolve()
                let connection = try scope.connect(settings)
                var limitMs: Int64?
                if let timeout {
                    guard let ms = parseDuration(timeout) else { throw CLIError("--timeout \"\(timeout)\" is not a duration like 30s or 5m", code: ExitCodes.invalidInput) }
                    limitMs = ms
                }
                var request = Fusebox_V1_WatchBreakersRequest()
                request.registry = registry
                request.namePrefix = prefix
                let output = settings.output
                let maxCount = count
                let seen = Counter()
                do {
                    try await connection.client.serverStreaming(
                        "fusebox.v1.BreakerService", "WatchBreakers", request, as: Fusebox_V1_BreakerEvent.self,
                        options: RPCCallOptions(timeout: limitMs.map { .milliseconds($0) })
                    ) { event in
                        switch event.event {
                        case .snapshot(let snapshot):
                            for s in snapshot.breakers { Self.line(output, kind: "current", s, from: nil) }
                        case .transition(let t):
                            if let s = t.status { Self.line(output, kind: "transition", s, from: t.fromState) }
                            if let maxCount, seen.increment() >= maxCount { throw RPCError(.cancelled, Self.limitReached) }
                        case nil:
                            break
                        }
                    }
                } catch let error as RPCError {
                    if error.code == .deadlineExceeded || (error.code == .cancelled && error.message == Self.limitReached) { return }
                    throw connection.explain(error)
                }
            }
        }

        static let limitReached = "watch: transition limit reached"

        final class Counter: Sendable {
            private let n = Mutex(0)
            func increment() -> Int {
                n.withLock { n in
                    n += 1
                    return n
                }
            }
        }

        static func line(_ format: OutputFormat, kind: String, _ s: Fusebox_V1_BreakerStatus, from: Fusebox_V1_BreakerState?) {
            switch format {
            case .json:
                var pairs: [(String, OutputValue)] = [("event", .string(kind))]
                if let from { pairs.append(("from", .string(stateName(from)))) }
                if case .map(let rest) = statusValue(s) { pairs += rest }
                out(OutputValue.map(pairs).json().replacingOccurrences(of: "\n *", with: " ", options: .regularExpression))
            case .yaml:
                var pairs: [(String, OutputValue)] = [("event", .string(kind))]
                if let from { pairs.append(("from", .string(stateName(from)))) }
                if case .map(let rest) = statusValue(s) { pairs += rest }
                out("---\n" + OutputValue.map(pairs).yaml())
            case .table:
                let name = "\(s.breaker?.registry ?? "")/\(s.breaker?.name ?? "")"
                let change = from.map { "\(stateName($0)) -> \(stateName(s.state))" } ?? stateName(s.state)
                out("\(formatTime(s.sinceMs))  \(name)  \(change)  gen=\(s.generation)  \(s.reason)")
            }
        }
    }
}
