import Foundation
import FuseboxAPI
import FuseboxCore
import FuseboxEtcd
import FuseboxRPC
import FuseboxTLS
import FuseboxWire
import NIOCore
import NIOPosix
import Synchronization

// MARK: - Replicated mode: a 3-member etcd cluster and fuseboxd replicas on it

/// Three etcd members (Debian's etcd 3.4) on 127.0.0.1 with free ports and
/// data directories under the work directory, started as
/// `FuseboxTesting.EtcdTestCluster` starts them (heartbeat 50 ms, election
/// timeout 500 ms). `stop()` kills them (SIGKILL); the work directory goes
/// with scripts/bench's trap.
final class EtcdBenchCluster: Sendable {
    let members: [Child]
    let clientPorts: [Int]

    init(_ env: Environment) throws {
        let root = "\(env.work)/etcd-cluster"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        // Six distinct free ports (freePort closes its socket, so ask until they differ).
        var ports: [Int] = []
        var asked = 0
        while ports.count < 6, asked < 100 {
            asked += 1
            let p = freePort()
            if p > 0, !ports.contains(p) { ports.append(p) }
        }
        guard ports.count == 6 else { throw BenchError("no six free ports for etcd") }
        let names = ["n1", "n2", "n3"]
        let initialCluster = names.enumerated().map { "\($1)=http://127.0.0.1:\(ports[2 * $0 + 1])" }.joined(separator: ",")
        // One token for all three: it names the cluster (a token per member makes three clusters).
        let token = "fusebox-bench-\(UUID().uuidString.prefix(8))"
        var members: [Child] = []
        for (i, name) in names.enumerated() {
            let client = "http://127.0.0.1:\(ports[2 * i])"
            let peer = "http://127.0.0.1:\(ports[2 * i + 1])"
            members.append(try Child("/usr/bin/etcd", [
                "--name", name, "--data-dir", "\(root)/\(name)",
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", initialCluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", token,
                "--heartbeat-interval", "50", "--election-timeout", "500",
                "--experimental-watch-progress-notify-interval", "1s",
            ], log: "\(root)/\(name).log"))
        }
        self.members = members
        clientPorts = (0..<3).map { ports[2 * $0] }
    }

    /// `store.etcd.endpoints` for the replicas.
    var endpoints: String { clientPorts.map { "http://127.0.0.1:\($0)" }.joined(separator: ",") }

    /// Waits (bounded) until every member answers `GET /health` with a leader.
    func waitUntilHealthy(group: any EventLoopGroup, timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        for port in clientPorts {
            while true {
                let text = Mutex("")
                if let c = try? await RawConnection(port: port, group: group, onText: { chunk in text.withLock { $0 += chunk } }) {
                    // A member without a leader may not answer: give each try 2 s.
                    c.channel.eventLoop.scheduleTask(in: .seconds(2)) { c.channel.close(promise: nil) }
                    try? await c.send("GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                    _ = try? await c.channel.closeFuture.get()
                    if text.withLock({ $0 }).contains("\"health\":\"true\"") { break }
                }
                guard ContinuousClock.now < deadline else {
                    throw BenchError("etcd member on port \(port) not healthy: \(members.map { $0.output.suffix(500) }.joined(separator: "\n"))")
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    func stop() {
        for m in members {
            if m.process.isRunning { kill(m.pid, SIGKILL) }
            m.process.waitUntilExit()
        }
    }
}

/// fuseboxd replicas (`store.kind: etcd`) sharing one prefix of `etcd`,
/// leader lease 2 s, each a `Fuseboxd` on port 0 with the bench certificates
/// and the `replica` peer certificate from scripts/gen-certs.
final class ReplicaSet {
    let env: Environment
    let etcd: EtcdBenchCluster
    let name: String
    let prefix: String
    static let leaseSeconds = 2
    private(set) var servers: [String: Fuseboxd] = [:]

    init(_ env: Environment, etcd: EtcdBenchCluster, name: String, ids: [String] = ["a", "b", "c"]) throws {
        self.env = env
        self.etcd = etcd
        self.name = name
        prefix = "/bench-\(name)-\(UUID().uuidString.prefix(6))"
        do {
            for id in ids { try start(id) }
        } catch {
            stopAll()
            throw error
        }
    }

    var ids: [String] { servers.keys.sorted() }

    /// Starts (or restarts, on the same directory) replica `id`.
    @discardableResult
    func start(_ id: String) throws -> Fuseboxd {
        let config = """
            store:
              kind: etcd
              etcd:
                endpoints: \(etcd.endpoints)
                prefix: \(prefix)
                leaseSeconds: \(Self.leaseSeconds)
            cluster:
              replicaId: \(id)
              peerCertificate: \(env.certs)/replica.pem
              peerKey: \(env.certs)/replica.key
            """
        let server = try Fuseboxd(env, name: "\(name)-\(id)", extraConfig: config)
        servers[id] = server
        return server
    }

    func server(_ id: String) throws -> Fuseboxd {
        guard let s = servers[id] else { throw BenchError("no replica \(id)") }
        return s
    }

    /// kill -9, and wait until it is gone.
    func kill9(_ id: String) {
        guard let s = servers[id] else { return }
        if s.child.process.isRunning { kill(s.child.pid, SIGKILL) }
        s.child.process.waitUntilExit()
    }

    func stopAll() {
        for s in servers.values { s.stop() }
    }
}

/// The leader's id as the replica behind `client` reports it ("" if none or no answer).
func clusterLeader(_ client: RPCClient, timeout: Duration = .seconds(1)) async -> String {
    let status = try? await client.unary(
        "fusebox.v1.AdminService", "GetClusterStatus", Fusebox_V1_GetClusterStatusRequest(), as: Fusebox_V1_ClusterStatus.self,
        options: RPCCallOptions(timeout: timeout))
    return status?.leaderId ?? ""
}

/// Polls every client (bounded) until one names a leader other than `excluded`.
func waitForLeader(_ clients: [RPCClient], not excluded: String? = nil, timeout: Duration = .seconds(30)) async -> String? {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        for c in clients {
            let id = await clusterLeader(c)
            if !id.isEmpty, id != excluded { return id }
        }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return nil
}

/// A started replica set with its leader known, readers on every replica.
func startReplicas(_ env: Environment, etcd: EtcdBenchCluster, name: String, group: any EventLoopGroup) async throws -> (ReplicaSet, leader: String) {
    let set = try ReplicaSet(env, etcd: etcd, name: name)
    var readers: [RPCClient] = []
    do {
        readers = try set.ids.map { try set.server($0).client("reader", group: group) }
        guard let leader = await waitForLeader(readers) else {
            throw BenchError("\(name): no leader within 30 s: \(set.servers.values.map { $0.child.output.suffix(800) }.joined(separator: "\n"))")
        }
        for r in readers { await r.close() }
        return (set, leader)
    } catch {
        for r in readers { await r.close() }
        set.stopAll()
        throw error
    }
}

/// A policy that never trips: counting only.
func countingPolicy(_ name: String) -> Policy {
    var p = tripPolicy(name)
    p.circuitBreaker?.consecutiveFailuresThreshold = 0
    p.circuitBreaker?.failureRateThreshold = 99
    p.circuitBreaker?.minimumCalls = 1_000_000
    return p
}

// MARK: - 9. Fan-out: many watchers, many trips at once

struct WatchFanOut {
    /// Per watcher and round: report sent → that watcher has seen every tripped breaker OPEN (ms).
    var perWatcherMs: [Double]
    /// Per round: the slowest watcher (ms).
    var roundMaxMs: [Double]
    /// Per round: when the report call was answered (ms).
    var answeredMs: [Double]
    /// Snapshots beyond each watcher's first (resynchronisations).
    var resyncs: Int
    var connections: Int
    /// Per round: watchers that had not seen every trip when the wait ended.
    var incomplete: [Int]
    var watchers: Int
    /// Per round: report calls refused and sent again.
    var retries: [Int]
}

/// `watchers` `WatchBreakers` streams (name prefix "fan9-"), `perConnection`
/// of them per TLS connection, connections spread round robin over
/// `servers` (ports); each of `rounds` rounds trips `breakers` fresh CLOSED
/// breakers with one `ReportOutcomes` call (1 failure each) sent to
/// `reportPort`. Measured per watcher: from before the call is sent until
/// that watcher has seen all of them OPEN.
func watchFanOut(
    _ env: Environment, serverPorts: [Int], tls: TLSContext, admin: RPCClient, reporter: RPCClient, label: String, prefix: String,
    watchers: Int, perConnection: Int, windowBytes: Int?, breakers: Int, rounds: Int, wait: Duration, group: any EventLoopGroup
) async throws -> WatchFanOut {
    try await putPolicy(tripPolicy("fan9"), admin)
    let names = (0..<rounds).map { r in (0..<breakers).map { "\(prefix)\(r)-\(String(format: "%04d", $0))" } }
    var generations: [String: UInt64] = [:]
    for chunkStart in stride(from: 0, to: rounds * breakers, by: 100) {
        let all = names.flatMap { $0 }
        let chunk = Array(all[chunkStart..<min(chunkStart + 100, all.count)])
        let b = outcomeBatch(client: "setup", sequence: 0, breakers: chunk.map { ($0, 0) }, policy: "fan9", success: 1, failure: 0)
        let r = try await reporter.unary("fusebox.v1.BreakerService", "ReportOutcomes", b, as: Fusebox_V1_ReportOutcomesResponse.self)
        for s in r.states { generations[s.breaker?.name ?? ""] = s.generation }
    }
    guard generations.count == rounds * breakers else { throw BenchError("\(label): created \(generations.count) of \(rounds * breakers) breakers") }
    // Every replica's copy is one watch delivery behind: let them catch up before the snapshots.
    try await Task.sleep(for: .milliseconds(300))

    let roundOf: [String: Int] = Dictionary(uniqueKeysWithValues: names.enumerated().flatMap { r, ns in ns.map { ($0, r) } })
    final class Seen: Sendable {
        let state = Mutex<(snapshots: Int, open: Set<String>, counts: [Int], done: [Int: ContinuousClock.Instant])>((0, [], [], [:]))
    }
    let seen = (0..<watchers).map { _ in Seen() }
    let perRound = breakers
    @Sendable func record(_ event: Fusebox_V1_BreakerEvent, watcher w: Int) {
        var statuses: [Fusebox_V1_BreakerStatus] = []
        var snapshot = false
        switch event.event {
        case .snapshot(let s): statuses = s.breakers; snapshot = true
        case .transition(let t): if let s = t.status { statuses = [s] }
        case nil: return
        }
        let now = ContinuousClock.now
        seen[w].state.withLock { s in
            if snapshot { s.snapshots += 1 }
            for status in statuses where status.state == .open {
                let name = status.breaker?.name ?? ""
                guard let r = roundOf[name], !s.open.contains(name) else { continue }
                s.open.insert(name)
                while s.counts.count <= r { s.counts.append(0) }
                s.counts[r] += 1
                if s.counts[r] == perRound { s.done[r] = now }
            }
        }
    }
    var request = Fusebox_V1_WatchBreakersRequest()
    request.registry = "default"
    request.namePrefix = prefix
    var channels: [any Channel] = []
    defer { for c in channels { c.close(promise: nil) } }
    let connections = (watchers + perConnection - 1) / perConnection
    for c in 0..<connections {
        let first = c * perConnection
        let count = min(perConnection, watchers - first)
        channels.append(try await EventLoopWatcher.openShared(
            port: serverPorts[c % serverPorts.count], tls: tls, group: group, request: request, streams: count, windowBytes: windowBytes
        ) { k, event in record(event, watcher: first + k) })
    }
    guard await waitUntil(.seconds(120), { seen.allSatisfy { $0.state.withLock { $0.snapshots } > 0 } }) else {
        let n = seen.filter { $0.state.withLock { $0.snapshots } > 0 }.count
        throw BenchError("\(label): \(n) of \(watchers) watchers got their snapshot")
    }
    log("9: \(label): \(watchers) watchers on \(connections) connections have their snapshots")

    var perWatcher: [Double] = []
    var roundMax: [Double] = []
    var answered: [Double] = []
    var incomplete: [Int] = []
    var retries: [Int] = []
    for r in 0..<rounds {
        try await Task.sleep(for: .milliseconds(500))  // nothing else queued
        let batch = outcomeBatch(client: "fan9", sequence: 0, breakers: names[r].map { ($0, generations[$0] ?? 0) }, policy: "fan9", success: 0, failure: 1)
        let start = ContinuousClock.now
        // As the SDK does, a refused report (UNAVAILABLE) is sent again, at most 5 times;
        // the clock keeps running from the first send.
        var attempt = 0
        while true {
            attempt += 1
            do {
                let response = try await reporter.unary("fusebox.v1.BreakerService", "ReportOutcomes", batch, as: Fusebox_V1_ReportOutcomesResponse.self)
                if !response.states.allSatisfy({ $0.state == .open }) { log("9: \(label) round \(r): not every breaker OPEN in the response") }
                break
            } catch {
                log("9: \(label) round \(r): report attempt \(attempt) failed after \(fmt(ms(ContinuousClock.now - start), 0)) ms: \(error)")
                guard attempt < 5 else { throw error }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        retries.append(attempt - 1)
        answered.append(ms(ContinuousClock.now - start))
        // Bounded: a watcher that has not seen every trip by then is counted as incomplete.
        _ = await waitUntil(wait, { seen.allSatisfy { $0.state.withLock { $0.done[r] != nil } } })
        let times = seen.compactMap { $0.state.withLock { $0.done[r] } }.map { ms($0 - start) }
        incomplete.append(watchers - times.count)
        if times.count < watchers {
            // Where the missing ones are: OPEN seen per watcher, by connection.
            let byConnection = (0..<connections).map { c in
                let counts = (c * perConnection..<min((c + 1) * perConnection, watchers)).map { w in
                    seen[w].state.withLock { $0.counts.count > r ? $0.counts[r] : 0 }
                }
                return "\(counts.filter { $0 == breakers }.count) complete, min \(counts.min() ?? 0)"
            }
            log("9: \(label) round \(r): \(watchers - times.count) of \(watchers) watchers incomplete after \(wait); by connection: \(byConnection.joined(separator: "; "))")
        }
        perWatcher += times
        roundMax.append(times.max() ?? .nan)
        log("9: \(label) round \(r): p50 \(fmt(percentile(times, 50), 1)) ms, max \(fmt(times.max() ?? .nan, 1)) ms, answered \(fmt(answered.last ?? .nan, 1)) ms")
    }
    let resyncs = seen.map { $0.state.withLock { $0.snapshots } - 1 }.reduce(0, +)
    return WatchFanOut(
        perWatcherMs: perWatcher, roundMaxMs: roundMax, answeredMs: answered, resyncs: resyncs, connections: connections, incomplete: incomplete,
        watchers: watchers, retries: retries)
}

/// Scenario 9 on both sides: `watchers × 3` over three replicas (the report
/// through a follower), then `watchers` on one SQLite fuseboxd. Each side
/// twice: watchers with 1 MiB flow-control windows per stream (as fuseboxd
/// sets its own), `rounds` rounds; then with swift-nio-http2's default
/// 64 KiB windows (the SDK's RPC client), one round, 10 s to arrive.
struct FanOutSides {
    var replicated: WatchFanOut
    var replicatedDefault: WatchFanOut
    var single: WatchFanOut
    var singleDefault: WatchFanOut
    var reportVia: String
    var leader: String
}

func fanOutReplicated(
    _ env: Environment, etcd: EtcdBenchCluster, watchers: Int, perConnection: Int, breakers: Int, rounds: Int, group: any EventLoopGroup
) async throws -> FanOutSides {
    let window = 1 << 20
    let (set, leader) = try await startReplicas(env, etcd: etcd, name: "fanout9", group: group)
    defer { set.stopAll() }
    let follower = set.ids.first { $0 != leader } ?? leader
    let via = try set.server(follower)
    let admin = try via.client("admin", group: group)
    let reporter = try via.client("reporter", group: group)
    let tls = try TLSContext(configuration: via.clientTLS("reader"))
    let ports = try set.ids.map { try set.server($0).port }
    let replicated = try await watchFanOut(
        env, serverPorts: ports, tls: tls, admin: admin, reporter: reporter, label: "3 replicas", prefix: "fan9-",
        watchers: 3 * watchers, perConnection: perConnection, windowBytes: window, breakers: breakers, rounds: rounds, wait: .seconds(30), group: group)
    let replicatedDefault = try await watchFanOut(
        env, serverPorts: ports, tls: tls, admin: admin, reporter: reporter, label: "3 replicas, 64 KiB windows", prefix: "fan9d-",
        watchers: 3 * watchers, perConnection: perConnection, windowBytes: nil, breakers: breakers, rounds: 1, wait: .seconds(10), group: group)
    await admin.close()
    await reporter.close()
    set.stopAll()

    let single = try Fuseboxd(env, name: "fanout9-sqlite")
    defer { single.stop() }
    let admin1 = try single.client("admin", group: group)
    let reporter1 = try single.client("reporter", group: group)
    let result = try await watchFanOut(
        env, serverPorts: [single.port], tls: tls, admin: admin1, reporter: reporter1, label: "single SQLite", prefix: "fan9-",
        watchers: watchers, perConnection: perConnection, windowBytes: window, breakers: breakers, rounds: rounds, wait: .seconds(30), group: group)
    let resultDefault = try await watchFanOut(
        env, serverPorts: [single.port], tls: tls, admin: admin1, reporter: reporter1, label: "single SQLite, 64 KiB windows", prefix: "fan9d-",
        watchers: watchers, perConnection: perConnection, windowBytes: nil, breakers: breakers, rounds: 1, wait: .seconds(10), group: group)
    await admin1.close()
    await reporter1.close()
    return FanOutSides(
        replicated: replicated, replicatedDefault: replicatedDefault, single: result, singleDefault: resultDefault, reportVia: follower, leader: leader)
}

// MARK: - 10. Ingestion across replicas

struct IngestRun {
    var reportsPerSecond: Double
    var seconds: Double
    var errors: Int
}

/// Counting-only reports/s as in scenario 7: each client sends
/// `StreamOutcomes` calls of 100 batches (10 breakers × 10 successes) one
/// after another, none starting after `seconds`. Failed calls are counted
/// and retried after 10 ms (bounded by the same end).
func countingRun(_ clients: [RPCClient], label: String, seconds: Double) async throws -> IngestRun {
    let names = (0..<100).map { "c10-\($0)" }
    let tag = label.replacingOccurrences(of: " ", with: "-")
    func breakers(_ i: Int) -> [(String, UInt64)] { (0..<10).map { (names[(i * 10 + $0) % names.count], 0) } }
    // Every breaker exists before the clock starts.
    for (i, c) in clients.enumerated() {
        let b = outcomeBatch(client: "\(tag)-w\(i)", sequence: 0, breakers: breakers(i), policy: "counting10", success: 1, failure: 0)
        _ = try await c.unary("fusebox.v1.BreakerService", "ReportOutcomes", b, as: Fusebox_V1_ReportOutcomesResponse.self)
    }
    let batches = try clients.indices.map {
        try outcomeBatch(client: "\(tag)-s\($0)", sequence: 0, breakers: breakers($0), policy: "counting10", success: 10, failure: 0).encode()
    }
    let counted = Atomic(0)
    let errors = Atomic(0)
    let perCall = 100
    let start = ContinuousClock.now
    let end = start + .milliseconds(Int64(seconds * 1000))
    try await concurrently(clients.count, width: clients.count) { i in
        while ContinuousClock.now < end {
            do {
                let response: Fusebox_V1_ReportOutcomesResponse = try await clients[i].call(path: "/fusebox.v1.BreakerService/StreamOutcomes") { call in
                    for _ in 0..<perCall { try await call.send(batches[i]) }
                    try await call.finishSending()
                    guard let reply = try await call.next() else { throw BenchError("no StreamOutcomes response") }
                    return try Fusebox_V1_ReportOutcomesResponse(decoding: reply)
                }
                counted.add(Int(response.accepted) / 10, ordering: .relaxed)
            } catch {
                errors.add(1, ordering: .relaxed)
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
    }
    let elapsed = ms(ContinuousClock.now - start) / 1000
    let n = counted.load(ordering: .relaxed)
    log("10: \(label): \(n) reports counted in \(fmt(elapsed, 2)) s, \(errors.load(ordering: .relaxed)) failed calls")
    return IngestRun(reportsPerSecond: Double(n) / elapsed, seconds: elapsed, errors: errors.load(ordering: .relaxed))
}

/// Scenario 10: the same counting load (`connections` reporter connections)
/// spread over three replicas, all on the leader, all on one follower, and
/// on one SQLite fuseboxd.
func ingestReplicated(
    _ env: Environment, etcd: EtcdBenchCluster, connections: Int, seconds: Double, group: any EventLoopGroup
) async throws -> (spread: IngestRun, leaderOnly: IngestRun, followerOnly: IngestRun, single: IngestRun) {
    let single: IngestRun
    do {
        let server = try Fuseboxd(env, name: "ingest10-sqlite")
        defer { server.stop() }
        let admin = try server.client("admin", group: group)
        try await putPolicy(countingPolicy("counting10"), admin)
        await admin.close()
        let clients = try (0..<connections).map { _ in try server.client("reporter", group: group) }
        single = try await countingRun(clients, label: "single SQLite", seconds: seconds)
        for c in clients { await c.close() }
    }

    let (set, leader) = try await startReplicas(env, etcd: etcd, name: "ingest10", group: group)
    defer { set.stopAll() }
    let follower = set.ids.first { $0 != leader } ?? leader
    let admin = try set.server(follower).client("admin", group: group)
    try await putPolicy(countingPolicy("counting10"), admin)
    await admin.close()
    try await Task.sleep(for: .milliseconds(300))  // every replica's watch has the policy
    func clients(_ ids: [String]) throws -> [RPCClient] {
        try (0..<connections).map { try set.server(ids[$0 % ids.count]).client("reporter", group: group) }
    }
    var runs: [IngestRun] = []
    for (label, ids) in [("spread over 3", set.ids), ("leader only", [leader]), ("follower only", [follower])] {
        let cs = try clients(ids)
        runs.append(try await countingRun(cs, label: label, seconds: seconds))
        for c in cs { await c.close() }
    }
    return (runs[0], runs[1], runs[2], single)
}

// MARK: - 11. Failover time

struct FailoverRound {
    var killed: String
    var newLeader: String
    /// kill -9 → a survivor's GetClusterStatus names another leader (ms).
    var namedMs: Double
    /// kill -9 → a ReportOutcomes through a survivor succeeds: the first survivor, and both (ms).
    var firstReportMs: Double
    var bothReportsMs: Double
    var failedReports: Int
}

/// Scenario 11: `rounds` times, kill -9 the leader of three replicas (lease
/// 2 s) and poll both survivors every 10 ms: `GetClusterStatus` (1 s
/// timeout) until one names another leader, and a counting `ReportOutcomes`
/// (1 s timeout) through each until it succeeds. The killed replica is
/// restarted between rounds and the cluster left to settle.
func failover(_ env: Environment, etcd: EtcdBenchCluster, rounds: Int, group: any EventLoopGroup) async throws -> [FailoverRound] {
    let (set, firstLeader) = try await startReplicas(env, etcd: etcd, name: "failover11", group: group)
    defer { set.stopAll() }
    var leader = firstLeader
    do {
        let admin = try set.server(leader).client("admin", group: group)
        try await putPolicy(countingPolicy("failover"), admin)
        await admin.close()
    }
    var results: [FailoverRound] = []
    for r in 0..<rounds {
        let survivors = set.ids.filter { $0 != leader }
        let readers = try survivors.map { try set.server($0).client("reader", group: group) }
        let reporters = try survivors.map { try set.server($0).client("reporter", group: group) }
        // Both survivors take a report before the kill (connections up, forwarding works).
        for (k, c) in reporters.enumerated() {
            let b = outcomeBatch(client: "fo-\(r)-\(k)", sequence: 0, breakers: [("failover-\(k)", 0)], policy: "failover", success: 1, failure: 0)
            _ = try await c.unary("fusebox.v1.BreakerService", "ReportOutcomes", b, as: Fusebox_V1_ReportOutcomesResponse.self,
                                  options: RPCCallOptions(timeout: .seconds(5)))
        }
        try await Task.sleep(for: .milliseconds(500))
        let killed = leader
        let start = ContinuousClock.now
        set.kill9(killed)
        let failed = SharedCounter()
        async let named: (String, Double)? = {
            guard let id = await waitForLeader(readers, not: killed, timeout: .seconds(30)) else { return nil }
            return (id, ms(ContinuousClock.now - start))
        }()
        let reportTimes: [Double?] = await withTaskGroup(of: (Int, Double?).self) { g in
            for (k, c) in reporters.enumerated() {
                g.addTask {
                    let deadline = start + .seconds(30)
                    var attempt: UInt64 = 0
                    while ContinuousClock.now < deadline {
                        attempt += 1
                        let b = outcomeBatch(client: "fo-\(r)-\(k)", sequence: 0, breakers: [("failover-\(k)", 0)], policy: "failover", success: 1, failure: 0)
                        if (try? await c.unary("fusebox.v1.BreakerService", "ReportOutcomes", b, as: Fusebox_V1_ReportOutcomesResponse.self,
                                               options: RPCCallOptions(timeout: .seconds(1)))) != nil {
                            return (k, ms(ContinuousClock.now - start))
                        }
                        failed.value.add(1, ordering: .relaxed)
                        try? await Task.sleep(for: .milliseconds(10))
                    }
                    return (k, nil)
                }
            }
            var times = [Double?](repeating: nil, count: reporters.count)
            for await (k, t) in g { times[k] = t }
            return times
        }
        guard let election = await named else { throw BenchError("11 round \(r): no new leader within 30 s of killing \(killed)") }
        let (newLeader, namedMs) = election
        let accepted = reportTimes.compactMap { $0 }
        guard accepted.count == reportTimes.count else { throw BenchError("11 round \(r): a survivor refused reports for 30 s") }
        results.append(FailoverRound(
            killed: killed, newLeader: newLeader, namedMs: namedMs, firstReportMs: accepted.min() ?? .nan, bothReportsMs: accepted.max() ?? .nan,
            failedReports: failed.value.load(ordering: .relaxed)))
        log("11: round \(r): killed \(killed), \(newLeader) named after \(fmt(namedMs, 0)) ms, reports accepted after \(accepted.map { fmt($0, 0) }) ms")
        for c in readers + reporters { await c.close() }
        leader = newLeader
        // The killed replica back, registered and following, before the next round.
        let restarted = try set.start(killed)
        let client = try restarted.client("reader", group: group)
        let deadline = ContinuousClock.now + .seconds(30)
        var back = false
        while ContinuousClock.now < deadline, !back {
            let status = try? await client.unary("fusebox.v1.AdminService", "GetClusterStatus", Fusebox_V1_GetClusterStatusRequest(),
                                                 as: Fusebox_V1_ClusterStatus.self, options: RPCCallOptions(timeout: .seconds(1)))
            if let status {
                back = status.leaderId == newLeader && status.replicas.contains { replica in replica.id == killed }
            }
            if !back { try await Task.sleep(for: .milliseconds(50)) }
        }
        await client.close()
        guard back else { throw BenchError("11 round \(r): restarted \(killed) did not rejoin within 30 s") }
        try await Task.sleep(for: .seconds(1))
    }
    return results
}

// MARK: - 12. Durable policy writes

/// `writes` sequential PutPolicy calls (each a real change: the open
/// duration steps), after 5 not measured; latencies in ms.
func putPolicyLatencies(_ admin: RPCClient, name: String, writes: Int) async throws -> [Double] {
    var times: [Double] = []
    for k in 0..<(writes + 5) {
        let p = tripPolicy(name, openMs: 10_000 + Int64(k))
        let start = ContinuousClock.now
        try await putPolicy(p, admin)
        if k >= 5 { times.append(ms(ContinuousClock.now - start)) }
    }
    return times
}

/// Scenario 12: PutPolicy latency on a follower and on the leader of three
/// replicas (one etcd Txn, answered once the replica's own watch has it),
/// and on one SQLite fuseboxd.
func durablePolicyWrites(
    _ env: Environment, etcd: EtcdBenchCluster, writes: Int, writers: Int, seconds: Double, group: any EventLoopGroup
) async throws -> (
    follower: [Double], leader: [Double], single: [Double], rawEtcd: [Double], concurrent: (writesPerSecond: Double, latenciesMs: [Double], errors: Int)
) {
    let single: [Double]
    do {
        let server = try Fuseboxd(env, name: "policy12-sqlite")
        defer { server.stop() }
        let admin = try server.client("admin", group: group)
        single = try await putPolicyLatencies(admin, name: "durable", writes: writes)
        await admin.close()
    }
    let (set, leader) = try await startReplicas(env, etcd: etcd, name: "policy12", group: group)
    defer { set.stopAll() }
    let follower = set.ids.first { $0 != leader } ?? leader
    let onFollower = try set.server(follower).client("admin", group: group)
    let f = try await putPolicyLatencies(onFollower, name: "durable-f", writes: writes)
    await onFollower.close()
    let onLeader = try set.server(leader).client("admin", group: group)
    let l = try await putPolicyLatencies(onLeader, name: "durable-l", writes: writes)
    await onLeader.close()
    // Concurrent writers, spread over the three replicas (followers forward
    // policy writes to the leader, whose group commit stores them).
    let clients = try (0..<writers).map { w in try set.server(set.ids[w % set.ids.count]).client("admin", group: group) }
    for (w, c) in clients.enumerated() { try await putPolicy(tripPolicy("durable-c-\(w)"), c) }
    let concurrent = try await concurrentPolicyWrites(clients, prefix: "durable-c", seconds: seconds)
    for c in clients { await c.close() }
    // The floor: etcd's own Txn on the same cluster, one key compared on its
    // mod revision and written, one after another, through the client fuseboxd uses.
    let etcdClient = try EtcdClient(
        configuration: EtcdConfiguration(endpoints: etcd.clientPorts.map { "127.0.0.1:\($0)" }, tls: nil), group: group)
    var raw: [Double] = []
    let key = Array("/bench-raw/key".utf8)
    var revision: Int64 = 0
    for k in 0..<(writes + 5) {
        let start = ContinuousClock.now
        let result = try await etcdClient.txn([.modRevision(key, is: revision)], success: [.put(key: key, value: Array("\(k)".utf8))])
        guard result.succeeded else { throw BenchError("the raw etcd Txn lost its compare") }
        revision = result.revision
        if k >= 5 { raw.append(ms(ContinuousClock.now - start)) }
    }
    await etcdClient.close()
    return (f, l, single, raw, concurrent)
}
