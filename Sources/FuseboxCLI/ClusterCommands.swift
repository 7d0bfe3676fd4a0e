import ArgumentParser
import Foundation
import FuseboxWire

// MARK: - cluster

struct Cluster: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The replicas serving fuseboxd's API and the etcd members they share.", subcommands: [Status.self])

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Show each replica (which one leads, its applied etcd revision and lag) and each etcd member's health.",
            discussion: """
                A standalone fuseboxd (SQLite) shows itself as the one replica, leading.
                LAST HEARTBEAT is how long before the answer the replica last refreshed its registration.
                Examples:
                  fusebox cluster status
                  fusebox --server fb-1:7443,fb-2:7443,fb-3:7443 cluster status -o json
                """)
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await runCommand { scope in
                let settings = try global.resolve()
                let connection = try scope.connect(settings)
                let status = try await connection.unary(
                    "fusebox.v1.AdminService", "GetClusterStatus", Fusebox_V1_GetClusterStatusRequest(),
                    as: Fusebox_V1_ClusterStatus.self)
                emit(settings.output, Self.value(status)) { Self.table(status) }
            }
        }

        /// The status for -o json and -o yaml.
        static func value(_ s: Fusebox_V1_ClusterStatus) -> OutputValue {
            let replicas: [OutputValue] = s.replicas.map { r in
                .map([
                    ("id", .string(r.id)), ("address", .string(r.address)), ("version", .string(r.version)),
                    ("leader", .bool(r.leader)),
                    ("startedAt", .string(formatTime(r.startedAtMs))), ("appliedRevision", .int(r.appliedRevision)),
                    ("lagRevisions", .int(r.lagRevisions)), ("lastHeartbeat", .string(formatTime(r.lastHeartbeatMs))),
                    ("serving", .bool(r.serving)),
                ])
            }
            let members: [OutputValue] = s.etcdMembers.map { m in
                .map([
                    ("endpoint", .string(m.endpoint)), ("reachable", .bool(m.reachable)), ("leader", .bool(m.leader)),
                    ("revision", .int(m.revision)), ("dbSizeBytes", .int(m.dbSizeBytes)), ("error", .string(m.error)),
                ])
            }
            return .map([
                ("mode", .string(s.mode)), ("store", .string(s.store)), ("leader", .string(s.leaderId)),
                ("answeredBy", .string(s.answeredBy)), ("at", .string(formatTime(s.atMs))),
                ("replicas", .list(replicas)),
                ("etcdMembers", .list(members)),
            ])
        }

        /// The status as text: a summary line, the replicas, then the etcd members (if any).
        static func table(_ s: Fusebox_V1_ClusterStatus) -> String {
            let leader = s.leaderId.isEmpty ? "none (no replica leads)" : s.leaderId
            var parts = [
                "\(s.mode) on \(s.store); leader \(leader); answered by \(s.answeredBy) at \(formatTime(s.atMs))",
                "",
                s.replicas.isEmpty
                    ? "no replicas registered"
                    : FuseboxCLI.table(
                        ["ID", "ADDRESS", "LEADER", "VERSION", "APPLIED REV", "LAG", "SERVING", "LAST HEARTBEAT"],
                        s.replicas.map { r in
                            [
                                r.id, r.address, r.leader ? "*" : "", r.version, "\(r.appliedRevision)",
                                "\(r.lagRevisions)", r.serving ? "yes" : "no",
                                age(r.lastHeartbeatMs, at: s.atMs),
                            ]
                        }),
            ]
            if !s.etcdMembers.isEmpty {
                parts += [
                    "",
                    FuseboxCLI.table(
                        ["ENDPOINT", "REACHABLE", "LEADER", "REVISION", "DB SIZE", "ERROR"],
                        s.etcdMembers.map { m in
                            [
                                m.endpoint, m.reachable ? "yes" : "no", m.leader ? "*" : "",
                                m.reachable ? "\(m.revision)" : "-",
                                m.reachable ? formatBytes(m.dbSizeBytes) : "-", m.error,
                            ]
                        }),
                ]
            }
            // An empty last column (ERROR) would leave trailing spaces.
            return parts.joined(separator: "\n").split(separator: "\n", omittingEmptySubsequences: false)
                .map { line in String(line.reversed().drop { $0 == " " }.reversed()) }.joined(separator: "\n")
        }

        /// How long before `at` the time `ms` was, e.g. "1s ago"; "-" when unknown.
        static func age(_ ms: Int64, at: Int64) -> String {
            guard ms > 0 else { return "-" }
            return formatDuration(max(0, at - ms)) + " ago"
        }
    }
}

/// A size in bytes as people read it: 512 B, 1.5 KiB, 24.0 MiB, 2.1 GiB.
func formatBytes(_ bytes: Int64) -> String {
    guard bytes >= 1024 else { return "\(bytes) B" }
    var value = Double(bytes) / 1024
    for unit in ["KiB", "MiB", "GiB"] {
        if value < 1024 || unit == "GiB" { return String(format: "%.1f", value) + " " + unit }
        value /= 1024
    }
    return "\(bytes) B"
}
