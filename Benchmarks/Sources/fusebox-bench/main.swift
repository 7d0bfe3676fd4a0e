import Foundation
import MallocInterposerSwift
import NIOPosix

/// fusebox-bench: each scenario runs Fusebox and its peer in the same run and
/// prints one Markdown row per figure. Usage:
///   fusebox-bench --fuseboxd PATH --certs DIR --work DIR [--quick] [--only 1,2,…] (1-8 and 13 by default;
///   9-12, replicated mode on a 3-member etcd cluster the harness starts and kills, only when named)
/// (scripts/bench passes these; it also installs the peers.)

let arguments = Array(CommandLine.arguments.dropFirst())
@MainActor func option(_ name: String) -> String? {
    guard let i = arguments.firstIndex(of: name), i + 1 < arguments.count else { return nil }
    return arguments[i + 1]
}
guard let fuseboxd = option("--fuseboxd"), let certs = option("--certs"), let work = option("--work") else {
    FileHandle.standardError.write(Data("usage: fusebox-bench --fuseboxd PATH --certs DIR --work DIR [--quick] [--only 1,2]\n".utf8))
    exit(2)
}
let quick = arguments.contains("--quick")
// Without --only: scenarios 1-8 and 13-16. The replicated ones (9-12) start an etcd
// cluster and six more servers, so they run only when named (--only 9,10,11,12),
// which keeps the default run inside scripts/bench's 15-minute bound.
let only = Set((option("--only") ?? "1,2,3,4,5,6,7,8,13,14,15,16").split(separator: ",").compactMap { Int($0) })
let env = Environment(fuseboxd: fuseboxd, certs: certs, work: work, quick: quick)
MallocInterposerSwift.initialize()
let termination = killChildrenOnTermination()
let group = MultiThreadedEventLoopGroup.singleton

func log(_ s: String) { FileHandle.standardError.write(Data("fusebox-bench: \(s)\n".utf8)) }
func row(_ cells: [String]) { print("| " + cells.joined(separator: " | ") + " |") }

print("| # | scenario | Fusebox | peer | ratio (Fusebox/peer) | goal | met |")
print("|---|---|---:|---:|---:|---|---|")

if only.contains(4) {
    log("4: client hot path")
    let r = try await hotPath(env, iterations: quick ? 1_000_000 : 10_000_000, group: group)
    let atomic = r[1].ns
    row(["4", r[0].name, "\(fmt(r[0].ns)) ns, \(fmt(r[0].allocs, 3)) allocs", "\(fmt(atomic)) ns (atomic)", fmt(r[0].ns / atomic, 2),
         "≤ 50 ns, 0 allocs", r[0].ns <= 50 && r[0].allocs < 0.0005 ? "yes" : "no"])
    row(["4", r[2].name, "\(fmt(r[2].ns)) ns, \(fmt(r[2].allocs, 2)) allocs", "\(fmt(atomic)) ns (atomic)", fmt(r[2].ns / atomic, 1), "—", "—"])
    row(["4", r[3].name, "\(fmt(r[3].ns)) ns, \(fmt(r[3].allocs, 2)) allocs", "\(fmt(atomic)) ns (atomic)", fmt(r[3].ns / atomic, 1),
         "0 allocs", r[3].allocs < 0.005 ? "yes" : "no"])
    row(["4", r[4].name, "\(fmt(r[4].ns)) ns, \(fmt(r[4].allocs, 2)) allocs", "\(fmt(atomic)) ns (atomic)", fmt(r[4].ns / atomic, 1),
         "≤ 1 µs, ≤ 2 allocs", r[4].ns <= 1000 && r[4].allocs <= 2.005 ? "yes" : "no"])
}

if only.contains(1) {
    let watchers = quick ? 200 : 1_000
    let trips = quick ? 5 : 100  // p99 over 100 trips is the 99th, not simply the slowest
    log("1: trip fan-out, \(watchers) watchers, \(trips) trips")
    let sdk = try await fanOutFusebox(env, watchers: watchers, trips: trips, eventLoopWatchers: false, group: group)
    let f = try await fanOutFusebox(env, watchers: watchers, trips: trips, eventLoopWatchers: true, group: group)
    let e = try await fanOutEtcd(env, watchers: watchers, trips: trips, group: group)
    let r = try await fanOutRedis(env, watchers: watchers, trips: trips, group: group)
    let t = try await fanOutRedis(env, watchers: watchers, trips: trips, tls: true, group: group)
    row(["1", "trip fan-out to \(watchers) watchers, p50 (\(f.trips) trips; watchers read on the event loop, like the peers' clients)", "\(fmt(f.p50, 2)) ms (mutual TLS)",
         "Redis TLS \(fmt(t.p50, 2)) ms; plaintext: Redis \(fmt(r.p50, 2)) ms, etcd \(fmt(e.p50, 2)) ms", fmt(f.p50 / t.p50, 2), "—", "—"])
    row(["1", "trip to the first of \(watchers) watchers, p50", "\(fmt(f.firstP50, 2)) ms", "Redis TLS \(fmt(t.firstP50, 2)) ms; plaintext: Redis \(fmt(r.firstP50, 2)) ms, etcd \(fmt(e.firstP50, 2)) ms",
         fmt(f.firstP50 / t.firstP50, 2), "—", "—"])
    row(["1", "trip fan-out to \(watchers) watchers, p99 (watchers read on the event loop)", "\(fmt(f.p99, 2)) ms (mutual TLS)",
         "Redis TLS \(fmt(t.p99, 2)) ms (mutual TLS); plaintext: Redis \(fmt(r.p99, 2)) ms, etcd \(fmt(e.p99, 2)) ms", fmt(f.p99 / t.p99, 2),
         "≤ Redis TLS", f.p99 <= t.p99 ? "yes" : "no"])
    row(["1", "server CPU per delivered event over those trips (/proc/PID/stat; Fusebox: report, reset and both transitions' fan-out, divided by 2 events per watcher per trip)",
         "\(fmt(f.cpuMicrosPerEvent, 1)) µs", "Redis TLS \(fmt(t.cpuMicrosPerEvent, 1)) µs (plaintext \(fmt(r.cpuMicrosPerEvent, 1)) µs)", fmt(f.cpuMicrosPerEvent / t.cpuMicrosPerEvent, 2),
         "≤ 1.5× Redis TLS", f.cpuMicrosPerEvent <= 1.5 * t.cpuMicrosPerEvent ? "yes" : "no"])
    row(["1", "the tripping ReportOutcomes answered (at the reporter), p50 / p99; compare the first and last watcher above",
         "\(fmt(f.replyP50, 2)) / \(fmt(f.replyP99, 2)) ms", "Redis TLS PUBLISH answered \(fmt(t.replyP50, 2)) / \(fmt(t.replyP99, 2)) ms", fmt(f.replyP99 / t.replyP99, 2),
         "answered before the fan-out ends (reply p50 < fan-out p50)", f.replyP50 < f.p50 ? "yes" : "no"])
    row(["1", "trip fan-out to \(watchers) watchers on the SDK's RPC client (a task per stream), p50 / p99", "\(fmt(sdk.p50, 2)) / \(fmt(sdk.p99, 2)) ms (mutual TLS)",
         "Redis TLS \(fmt(t.p99, 2)) ms (p99)", fmt(sdk.p99 / t.p99, 2), "—", "—"])
}

if only.contains(2) {
    let seconds = quick ? 3.0 : 10.0
    log("2: outcome ingestion, \(seconds) s each")
    let f = try await ingestFusebox(env, connections: 100, inFlight: 4, seconds: seconds, outcomes: 10, group: group)
    let st = try await ingestFuseboxStreaming(env, connections: 100, inFlight: 1, seconds: seconds, outcomes: 10, group: group)
    let r = try await ingestRedis(env, connections: 100, depth: 100, seconds: seconds, group: group)
    row(["2", "outcome reports/s (10 breakers × 10 outcomes per batch, 100 TLS connections)", "\(fmt(f.reportsPerSecond, 0)) reports/s, \(fmt(f.cpuMicrosPerReport, 1)) µs server CPU/report\(f.errors > 0 ? ", \(f.errors) errors" : "")",
         "—", "—", "≥ 100,000 reports/s", f.reportsPerSecond >= 100_000 ? "yes" : "no"])
    row(["2", "outcome reports/s over StreamOutcomes (same batches, one open stream per connection)", "\(fmt(st.reportsPerSecond, 0)) reports/s, \(fmt(st.cpuMicrosPerReport, 1)) µs server CPU/report\(st.errors > 0 ? ", \(st.errors) errors" : "")",
         "—", "—", "≥ 100,000 reports/s", st.reportsPerSecond >= 100_000 ? "yes" : "no"])
    row(["2", "guarded calls/s covered over StreamOutcomes", "\(fmt(st.callsPerSecond, 0)) calls/s", "Redis HINCRBY per outcome: \(fmt(r.callsPerSecond, 0)) calls/s",
         fmt(st.callsPerSecond / r.callsPerSecond, 2), "≥ 3×", st.callsPerSecond >= 3 * r.callsPerSecond ? "yes" : "no"])
    row(["2", "guarded calls/s covered", "\(fmt(f.callsPerSecond, 0)) calls/s", "Redis HINCRBY per outcome: \(fmt(r.callsPerSecond, 0)) calls/s, \(fmt(r.cpuMicrosPerReport, 2)) µs CPU/call",
         fmt(f.callsPerSecond / r.callsPerSecond, 2), "≥ 3×", f.callsPerSecond >= 3 * r.callsPerSecond ? "yes" : "no"])
}

if only.contains(3) {
    let clients = quick ? 200 : 1_000
    log("3: fleet cold start, \(clients) clients")
    let c = try await coldStart(env, clients: clients)
    row(["3", "cold start: \(clients) clients, TLS (ECDSA P-256) + fetch a 100-policy registry (\(c.bytes) bytes), h2load", "\(fmt(c.fusebox, 0)) ms",
         "nginx \(fmt(c.nginx, 0)) ms", fmt(c.fusebox / c.nginx, 2), "≤ 1.2× nginx", c.fusebox <= 1.2 * c.nginx ? "yes" : "no"])
    row(["3", "server CPU per connection in that run (handshake + one request; /proc/PID/stat, nginx with its workers)",
         "\(fmt(c.fuseboxCPU * 1e6 / Double(clients), 0)) µs", "nginx \(fmt(c.nginxCPU * 1e6 / Double(clients), 0)) µs",
         fmt(c.fuseboxCPU / max(c.nginxCPU, 1e-9), 2), "—", "—"])
}

if only.contains(6) {
    log("6: half-open permits")
    let p = try await permitLatency(env, connections: 100, requesters: 1_000, each: quick ? 5 : 20, group: group)
    row(["6", "AcquirePermit, 1,000 concurrent requesters on the SDK's RPC client (\(p.total) requests, \(p.granted) granted)", "p50 \(fmt(p.p50, 2)) ms, p99 \(fmt(p.p99, 2)) ms", "—", "—",
         "p99 ≤ 2 ms", p.p99 <= 2 ? "yes" : "no"])
    let requests = quick ? 5_000 : 20_000
    let h = try await permitLatencyH2load(env, requests: requests)
    let (f99, n99) = (percentile(h.fusebox.latenciesMs, 99), percentile(h.nginx.latenciesMs, 99))
    let (fRate, nRate) = (Double(requests) / h.fusebox.totalMs * 1000, Double(requests) / h.nginx.totalMs * 1000)
    row(["6", "AcquirePermit driven by h2load, 1,000 requests in flight (100 TLS connections × 10 streams, \(requests) requests); nginx: a file of the response's size",
         "p50 \(fmt(percentile(h.fusebox.latenciesMs, 50), 2)) ms, p99 \(fmt(f99, 2)) ms, \(fmt(fRate, 0)) requests/s",
         "nginx p50 \(fmt(percentile(h.nginx.latenciesMs, 50), 2)) ms, p99 \(fmt(n99, 2)) ms, \(fmt(nRate, 0)) requests/s", fmt(f99 / n99, 2),
         "p99 ≤ 2 ms", f99 <= 2 ? "yes" : "no"])
    // Little's law: with 1,000 requests always in flight, the mean latency is
    // 1,000 / throughput; a p99 of 2 ms needs at least 500,000 requests/s.
    row(["6", "requests/s that a 2 ms p99 needs with 1,000 in flight (Little's law: in flight / latency)", "≥ 500000 requests/s",
         "nginx reached \(fmt(nRate, 0)) requests/s", "—", "—", "—"])
}

if only.contains(14) {
    let (connections, rate, seconds) = (100, 5_000, quick ? 3.0 : 10.0)
    log("14: permits, open loop, \(rate)/s from \(connections) connections, \(seconds) s")
    let lowerRate = 2_000
    let o = try await openLoopPermits(env, connections: connections, rate: rate, lowerRate: lowerRate, seconds: seconds, group: group)
    func cell(_ r: OpenLoop.Result) -> String {
        "p50 \(fmt(percentile(r.latenciesMs, 50), 2)) / p99 \(fmt(percentile(r.latenciesMs, 99), 2)) / max \(fmt(r.latenciesMs.max() ?? .nan, 2)) ms (\(r.latenciesMs.count) answered, \(fmt(r.rate, 0))/s; \(r.failures) failed; sent > 1 ms late: \(r.late))"
    }
    let (f99, n99) = (percentile(o.fusebox.latenciesMs, 99), percentile(o.nginx.latenciesMs, 99))
    row(["14", "AcquirePermit at a constant \(rate)/s from \(connections) mutual-TLS connections (a breaker held HALF_OPEN), latency from each request's intended send time, \(fmt(seconds, 0)) s after a 1 s warm-up; peer: nginx serving a file of the response's size under the same open-loop load",
         cell(o.fusebox), "nginx " + cell(o.nginx), fmt(f99 / n99, 2), "p99 ≤ 5 ms", f99 <= 5 && o.fusebox.failures == 0 ? "yes" : "no"])
    let (l99, ln99) = (percentile(o.fuseboxLower.latenciesMs, 99), percentile(o.nginxLower.latenciesMs, 99))
    row(["14", "the same at \(lowerRate)/s (below what the two shared cores sustain for server and load generator together; no goal at this rate)",
         cell(o.fuseboxLower), "nginx " + cell(o.nginxLower), fmt(l99 / ln99, 2), "—", "—"])
    let within20 = o.decisionBuckets.first { $0.0 == 20 }?.1 ?? .nan
    let p99Bound = o.decisionBuckets.first { $0.1 >= 0.99 }.map { "p99 ≤ \(fmt($0.0, 0)) µs" } ?? "p99 > 5 ms"
    row(["14", "the server's own time per AcquirePermit in that run (fusebox_rpc_duration_seconds: request headers parsed → response encoded; \(fmt(o.decisionCalls, 0)) calls with the warm-up); share of calls within each bucket: \(o.decisionBuckets.map { "≤ \(fmt($0.0, 0)) µs: \(fmt($0.1 * 100, 1)) %" }.joined(separator: ", "))",
         "\(p99Bound) (\(fmt(within20 * 100, 1)) % ≤ 20 µs)", "—", "—", "p99 ≤ 20 µs", within20 >= 0.99 ? "yes" : "no"])
}

if only.contains(15) {
    let (writes, writers, seconds) = (quick ? 60 : 300, 16, quick ? 2.0 : 5.0)
    log("15: durable policy writes on SQLite, \(writes) sequential, \(writers) writers for \(seconds) s")
    let d = try await durableWritesSQLite(env, writes: writes, writers: writers, seconds: seconds, group: group)
    let (p99, disk99) = (percentile(d.single, 99), percentile(d.disk, 99))
    row(["15", "PutPolicy, \(writes) sequential writes of one policy (each a change) on one SQLite fuseboxd (WAL, synchronous=FULL: durable when answered), p50 / p99; peer: the disk's own durable write (4 KiB pwrite + fdatasync in the same directory)",
         "p50 \(fmt(percentile(d.single, 50), 2)) / p99 \(fmt(p99, 2)) ms", "disk p50 \(fmt(percentile(d.disk, 50), 2)) / p99 \(fmt(disk99, 2)) ms", fmt(p99 / disk99, 2),
         "p99 ≤ 2 ms", p99 <= 2 ? "yes" : "no"])
    let c = d.concurrent
    row(["15", "PutPolicy from \(d.writers) concurrent writers (one connection each, each changing its own policy, one call after another) for \(fmt(seconds, 0)) s: writes/s, p50 / p99\(c.errors > 0 ? ", \(c.errors) failed" : ""); stored in \(fmt(d.groups, 0)) transactions (group commit: \(fmt(Double(c.latenciesMs.count) / max(d.groups, 1), 1)) writes each, \(fmt(d.groupMs, 2)) ms each in the store); peer: syncs/s the disk allows one after another (1 / mean fdatasync)",
         "\(fmt(c.writesPerSecond, 0)) writes/s (p50 \(fmt(percentile(c.latenciesMs, 50), 2)) / p99 \(fmt(percentile(c.latenciesMs, 99), 2)) ms)",
         "disk \(fmt(1000 / (d.disk.reduce(0, +) / Double(max(d.disk.count, 1))), 0)) syncs/s", fmt(c.writesPerSecond / (1000 / (d.disk.reduce(0, +) / Double(max(d.disk.count, 1)))), 2),
         "≥ 2,000 writes/s", c.writesPerSecond >= 2_000 && c.errors == 0 ? "yes" : "no"])
}

if only.contains(16) {
    let (connections, concurrency) = (quick ? 200 : 1_000, 50)
    log("16: cold start with client certificates, \(connections) connections, \(concurrency) at a time")
    let c = try await coldStartMutualTLS(env, connections: connections, concurrency: concurrency, group: group)
    let (f, n) = (c.fuseboxCPU * 1e6 / Double(connections), c.nginxCPU * 1e6 / Double(connections))
    row(["16", "cold start with client certificates: server CPU per new connection (\(connections) connections, \(concurrency) at a time, each a mutual-TLS handshake (ECDSA P-256) and one request for a 100-policy registry's bytes, then closed; /proc/PID/stat, nginx with its workers; wall time fuseboxd \(fmt(c.fuseboxSeconds * 1000, 0)) ms, nginx \(fmt(c.nginxSeconds * 1000, 0)) ms\(c.failures > 0 ? "; \(c.failures) failed" : ""))",
         "\(fmt(f, 0)) µs", "nginx with ssl_verify_client on: \(fmt(n, 0)) µs", fmt(f / max(n, 1e-9), 2), "≤ 1.2× nginx", f <= 1.2 * n && c.failures == 0 ? "yes" : "no"])
}

if only.contains(5) {
    let n = quick ? 1_000 : 10_000
    log("5: memory, \(n) idle connections")
    let m = try await memoryPerConnection(env, connections: n, group: group)
    row(["5", "RSS per idle connection (\(n) connections; Fusebox: each holding a WatchBreakers stream)", "\(fmt(m.fusebox, 1)) KiB",
         "nginx \(fmt(m.nginx, 1)) KiB (idle TLS)", fmt(m.fusebox / m.nginx, 2), "≤ 32 KiB", m.fusebox <= 32 ? "yes" : "no"])
}

if only.contains(7) {
    let (connections, seconds) = quick ? (20, 3.0) : (50, 10.0)
    log("7: counting under transitions")
    // --cycle-probes: set B cycles by the rules (trip, OPEN 100 ms, HALF_OPEN,
    // permit, probe, CLOSED); otherwise by operator actions (ForceOpen, Reset).
    let probes = arguments.contains("--cycle-probes")
    let c = try await countingUnderTransitions(env, connections: connections, seconds: seconds, cycling: 100, probes: probes, group: group)
    let cycle = probes ? "trip → OPEN 100 ms → HALF_OPEN → probe → CLOSED" : "AdminService ForceOpen → Reset"
    row(["7", "counting-only reports/s over StreamOutcomes (\(connections) TLS connections, 10 breakers × 10 successes per batch, \(fmt(seconds, 0)) s) while 100 other breakers cycle \(cycle), one connection each; peer: the same load alone",
         "\(fmt(c.loadedReportsPerSecond, 0)) reports/s", "alone: \(fmt(c.aloneReportsPerSecond, 0)) reports/s", fmt(c.loadedReportsPerSecond / c.aloneReportsPerSecond, 2), "—", "—"])
    row(["7", "transitions of those 100 breakers during the loaded run (generation steps the drivers saw), and transitions per commit (fsync) from the server's counters around it",
         "\(fmt(c.transitionsPerSecond, 0)) transitions/s (\(fmt(c.transitions, 0)) in \(fmt(c.loadedSeconds, 1)) s); \(fmt(c.serverTransitions, 0)) transitions in \(fmt(c.commits, 0)) commits = \(fmt(c.serverTransitions / max(c.commits, 1), 2)) per commit, \(fmt(c.commitMs, 1)) ms per store commit (mean)\(c.errors > 0 ? ", \(c.errors) driver errors" : "")",
         "—", "—", "—", "—"])
    func spread(_ reads: [Double]) -> String {
        reads.isEmpty ? "no calls" : "\(fmt(percentile(reads, 50), 1)) / \(fmt(percentile(reads, 99), 1)) / \(fmt(reads.last ?? 0, 1)) ms (\(reads.count) calls)"
    }
    row(["7", "GetBreaker round trip on a set-B breaker, one call after another 20 ms apart on a connection of its own, during the loaded run: p50 / p99 / max; peer: the same during the run alone (same counting load, no transitions)",
         spread(c.readMs), "alone: \(spread(c.aloneReadMs))",
         c.readMs.isEmpty || c.aloneReadMs.isEmpty ? "—" : fmt(percentile(c.readMs, 99) / percentile(c.aloneReadMs, 99), 2), "—", "—"])
}

if only.contains(8) {
    let (breakers, watchers, rounds) = quick ? (200, 3, 1) : (1_000, 10, 3)
    log("8: trip storm, \(breakers) breakers, \(watchers) watchers, \(rounds) rounds")
    let r = try await tripStorm(env, breakers: breakers, watchers: watchers, rounds: rounds, group: group)
    let times = r.map(\.ms)
    let commits = r.map(\.commits)
    row(["8", "trip storm: \(breakers) breakers tripped at once (batches of 100 per ReportOutcomes, all sent together over 2 connections), \(watchers) watchers of the whole registry; first report sent → last OPEN at every watcher, median of \(rounds) rounds, each on a fresh fuseboxd (each: \(times.map { fmt($0, 1) }.joined(separator: ", ")) ms; last report answered: \(r.map { fmt($0.answeredMs, 1) }.joined(separator: ", ")) ms; report calls reset by the server: \(r.map { "\($0.resets)" }.joined(separator: ", ")) of \(breakers / 100))",
         "\(fmt(percentile(times, 50), 1)) ms", "—", "—", "—", "—"])
    row(["8", "commits (fsyncs) for those \(breakers) OPEN transitions (fusebox_breaker_commits_total before/after; each round: \(commits.map { fmt($0, 0) }.joined(separator: ", ")) commits for \(r.map { fmt($0.transitions, 0) }.joined(separator: ", ")) transitions)",
         "\(fmt(percentile(commits, 50), 0)) commits", "\(breakers) if each transition had its own", fmt(percentile(commits, 50) / Double(breakers), 3), "—", "—"])
}

if only.contains(13) {
    let calls = quick ? 500 : 3_000
    log("13: the report path while alert sinks are down")
    let r = try await reportPathDuringSinkOutage(env, calls: calls, tripEveryMs: 10, group: group)
    func p(_ v: [Double], _ q: Double) -> String { fmt(percentile(v, q), 2) }
    let during = percentile(r.alerts.duringMs, 99)
    let peer = percentile(r.alone.duringMs, 99)
    row(["13", "ReportOutcomes p99 (\(calls) calls one after another) on a fuseboxd whose alert sinks are down (connection refused, and a black hole that never answers; 2 s timeout, 4 attempts, queues of 100): before the outage is felt (no trips) and during it, while another connection trips a new breaker every 10 ms (\(r.alerts.trips) trips, each alerting both sinks; \(fmt(r.alerts.dropped, 0)) alerts dropped, \(fmt(r.alerts.failures, 0)) given up); peer: the same trips on a fuseboxd with no alert sinks (\(r.alone.trips) trips)",
         "during: \(p(r.alerts.duringMs, 99)) ms (p50 \(p(r.alerts.duringMs, 50))); before: \(p(r.alerts.beforeMs, 99)) ms (p50 \(p(r.alerts.beforeMs, 50)))",
         "no sinks, same trips: \(p(r.alone.duringMs, 99)) ms (p50 \(p(r.alone.duringMs, 50)))", fmt(during / max(peer, 0.001), 2), "—", "—"])
}

// MARK: - Replicated mode (etcd): one 3-member etcd cluster for scenarios 9-12

if !only.isDisjoint(with: [9, 10, 11, 12]) {
    log("9-12: starting a 3-member etcd cluster")
    let etcd = try EtcdBenchCluster(env)
    do {
        try await etcd.waitUntilHealthy(group: group)
        try await replicatedScenarios(etcd)
    } catch {
        etcd.stop()
        throw error
    }
    etcd.stop()
}

@MainActor func replicatedScenarios(_ etcd: EtcdBenchCluster) async throws {
    let lease = "\(ReplicaSet.leaseSeconds) s"
    if only.contains(9) {
        do {
            let (watchers, rounds, breakers, perConnection) = quick ? (100, 1, 100, 50) : (1_000, 3, 100, 50)
            log("9: fan-out, \(3 * watchers) watchers over 3 replicas vs \(watchers) on one SQLite fuseboxd, \(breakers) breakers per report")
            let f = try await fanOutReplicated(env, etcd: etcd, watchers: watchers, perConnection: perConnection, breakers: breakers, rounds: rounds, group: group)
            func cell(_ r: WatchFanOut) -> String {
                let missing = r.incomplete.reduce(0, +)
                return "p50 \(fmt(percentile(r.perWatcherMs, 50), 1)) / p99 \(fmt(percentile(r.perWatcherMs, 99), 1)) / max \(fmt(r.perWatcherMs.max() ?? .nan, 1)) ms"
                    + (missing > 0 ? "; \(missing) of \(r.watchers * r.incomplete.count) watcher-rounds incomplete" : "")
            }
            func detail(_ r: WatchFanOut) -> String {
                "slowest watcher per round \(r.roundMaxMs.map { fmt($0, 1) }.joined(separator: ", ")) ms; report answered after \(r.answeredMs.map { fmt($0, 1) }.joined(separator: ", ")) ms; report calls refused and resent: \(r.retries.map { "\($0)" }.joined(separator: ", ")); \(r.connections) connections; resyncs \(r.resyncs)"
            }
            func complete(_ r: WatchFanOut) -> String {
                "\(r.watchers - (r.incomplete.first ?? 0)) of \(r.watchers) watchers saw all \(breakers) OPEN within 10 s"
                    + (r.perWatcherMs.isEmpty ? "" : " (p50 \(fmt(percentile(r.perWatcherMs, 50), 1)) ms of those)")
            }
            row(["9", "fan-out: \(3 * watchers) WatchBreakers streams over 3 replicas (\(watchers) each, \(perConnection) streams per TLS connection with 1 MiB flow-control windows, read on the event loop), \(breakers) breakers tripped by one ReportOutcomes through a follower (\(f.reportVia); leader \(f.leader)); per watcher: report sent → all \(breakers) OPEN seen, \(rounds) round(s) pooled (\(detail(f.replicated))); peer: \(watchers) watchers on one SQLite fuseboxd, same trips (\(detail(f.single)))",
                 cell(f.replicated), "single: \(cell(f.single))", fmt(percentile(f.replicated.perWatcherMs, 99) / percentile(f.single.perWatcherMs, 99), 2), "—", "—"])
            row(["9", "the same, one round, watchers with swift-nio-http2's default 64 KiB windows (as the SDK's RPC client; \(perConnection) streams share the connection's window) (resyncs \(f.replicatedDefault.resyncs) / \(f.singleDefault.resyncs))",
                 complete(f.replicatedDefault), "single: \(complete(f.singleDefault))", "—", "—", "—"])
        } catch {
            // One scenario failing does not lose the others' rows.
            log("9: failed: \(error)")
            row(["9", "scenario 9 did not complete", "failed: \(String(describing: error).prefix(300))", "—", "—", "—", "—"])
        }
    }
    if only.contains(10) {
        do {
            let (connections, seconds) = quick ? (30, 3.0) : (60, 10.0)
            log("10: ingestion, \(connections) connections, \(seconds) s per run")
            let r = try await ingestReplicated(env, etcd: etcd, connections: connections, seconds: seconds, group: group)
            func errs(_ run: IngestRun) -> String { run.errors > 0 ? ", \(run.errors) failed calls" : "" }
            row(["10", "counting-only reports/s over StreamOutcomes (\(connections) TLS connections, calls of 100 batches of 10 breakers × 10 successes, \(fmt(seconds, 0)) s) spread evenly over 3 replicas; followers gather the batches that arrive while a forward call is in flight into `ReplicaService.ForwardReports` calls; peer: the same load on one SQLite fuseboxd",
                 "\(fmt(r.spread.reportsPerSecond, 0)) reports/s\(errs(r.spread))", "single: \(fmt(r.single.reportsPerSecond, 0)) reports/s\(errs(r.single))",
                 fmt(r.spread.reportsPerSecond / r.single.reportsPerSecond, 2), "—", "—"])
            row(["10", "the same load, all connections on one replica of the 3: the leader (nothing forwarded) / one follower (everything forwarded); peer: one SQLite fuseboxd (as above)",
                 "leader: \(fmt(r.leaderOnly.reportsPerSecond, 0)) reports/s\(errs(r.leaderOnly)); follower: \(fmt(r.followerOnly.reportsPerSecond, 0)) reports/s\(errs(r.followerOnly))",
                 "single: \(fmt(r.single.reportsPerSecond, 0)) reports/s", fmt(r.leaderOnly.reportsPerSecond / r.single.reportsPerSecond, 2) + " (leader)", "—", "—"])
        } catch {
            // One scenario failing does not lose the others' rows.
            log("10: failed: \(error)")
            row(["10", "scenario 10 did not complete", "failed: \(String(describing: error).prefix(300))", "—", "—", "—", "—"])
        }
    }
    if only.contains(11) {
        do {
            let rounds = 3
            log("11: failover, \(rounds) rounds")
            let f = try await failover(env, etcd: etcd, rounds: rounds, group: group)
            let named = f.map(\.namedMs)
            let first = f.map(\.firstReportMs)
            let both = f.map(\.bothReportsMs)
            row(["11", "failover: kill -9 of the leader of 3 replicas (leader lease \(lease)) → GetClusterStatus on a survivor names a new leader, median of \(rounds) rounds (each: \(named.map { fmt($0, 0) }.joined(separator: ", ")) ms; killed → new: \(f.map { "\($0.killed) → \($0.newLeader)" }.joined(separator: ", ")); the killed replica restarted between rounds)",
                 "\(fmt(percentile(named, 50), 0)) ms", "lease TTL \(ReplicaSet.leaseSeconds * 1000) ms", fmt(percentile(named, 50) / Double(ReplicaSet.leaseSeconds * 1000), 2), "—", "—"])
            row(["11", "failover: kill -9 of the leader → a ReportOutcomes through a survivor succeeds again (each survivor polled every 10 ms, 1 s timeout per call), median of \(rounds) rounds: first survivor / both survivors (each: \(zip(first, both).map { "\(fmt($0, 0)) / \(fmt($1, 0))" }.joined(separator: ", ")) ms; calls refused meanwhile: \(f.map { "\($0.failedReports)" }.joined(separator: ", ")))",
                 "\(fmt(percentile(first, 50), 0)) / \(fmt(percentile(both, 50), 0)) ms", "lease TTL \(ReplicaSet.leaseSeconds * 1000) ms", fmt(percentile(both, 50) / Double(ReplicaSet.leaseSeconds * 1000), 2), "—", "—"])
        } catch {
            // One scenario failing does not lose the others' rows.
            log("11: failed: \(error)")
            row(["11", "scenario 11 did not complete", "failed: \(String(describing: error).prefix(300))", "—", "—", "—", "—"])
        }
    }
    if only.contains(12) {
        do {
            let writes = quick ? 60 : 300
            log("12: durable policy writes, \(writes) each")
            let (writers, seconds) = (16, quick ? 2.0 : 5.0)
            let w = try await durablePolicyWrites(env, etcd: etcd, writes: writes, writers: writers, seconds: seconds, group: group)
            func cell(_ t: [Double]) -> String { "p50 \(fmt(percentile(t, 50), 2)) / p99 \(fmt(percentile(t, 99), 2)) ms" }
            row(["12", "PutPolicy latency, \(writes) sequential writes of one policy (each a change) on a follower of 3 replicas: one etcd Txn on the 3-member cluster, answered once the replica's own watch has it; peer: the same on one SQLite fuseboxd",
                 cell(w.follower), "single: \(cell(w.single))", fmt(percentile(w.follower, 99) / percentile(w.single, 99), 2), "—", "—"])
            row(["12", "the same on the leader of the 3 replicas", cell(w.leader), "single: \(cell(w.single))", fmt(percentile(w.leader, 99) / percentile(w.single, 99), 2),
                 "p99 ≤ 2 ms", percentile(w.leader, 99) <= 2 ? "yes" : "no"])
            row(["12", "the same on the leader, against etcd's own floor: \(writes) sequential Txns on the same cluster (one key compared on its mod revision and written, through the etcd client fuseboxd uses)",
                 cell(w.leader), "raw etcd Txn: \(cell(w.rawEtcd))", fmt(percentile(w.leader, 99) / percentile(w.rawEtcd, 99), 2), "—", "—"])
            let c = w.concurrent
            row(["12", "PutPolicy from \(writers) concurrent writers spread over the 3 replicas (one connection each, each changing its own policy; followers forward to the leader, which stores writes that arrive together in one etcd Txn) for \(fmt(seconds, 0)) s: writes/s, p50 / p99\(c.errors > 0 ? ", \(c.errors) failed" : "")",
                 "\(fmt(c.writesPerSecond, 0)) writes/s (\(cell(c.latenciesMs)))", "—", "—", "≥ 2,000 writes/s", c.writesPerSecond >= 2_000 && c.errors == 0 ? "yes" : "no"])
        } catch {
            // One scenario failing does not lose the others' rows.
            log("12: failed: \(error)")
            row(["12", "scenario 12 did not complete", "failed: \(String(describing: error).prefix(300))", "—", "—", "—", "—"])
        }
    }
}
