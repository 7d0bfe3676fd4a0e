import Foundation
import FuseboxRPC
import NIOCore
import Synchronization

// MARK: - 15. Durable policy writes on the embedded store (SQLite)

/// `writers` callers at once, each on its own connection changing its own
/// policy (the open duration steps) one call after another, for `seconds`.
/// Returns writes per second and each call's latency, ms.
func concurrentPolicyWrites(_ clients: [RPCClient], prefix: String, seconds: Double) async throws -> (writesPerSecond: Double, latenciesMs: [Double], errors: Int) {
    let latencies = Mutex<[Double]>([])
    let errors = Atomic(0)
    let start = ContinuousClock.now
    let end = start + .milliseconds(Int64(seconds * 1000))
    try await concurrently(clients.count, width: clients.count) { w in
        var mine: [Double] = []
        var k: Int64 = 0
        while ContinuousClock.now < end {
            k += 1
            let t = ContinuousClock.now
            do {
                try await putPolicy(tripPolicy("\(prefix)-\(w)", openMs: 10_000 + k), clients[w])
                mine.append(ms(ContinuousClock.now - t))
            } catch {
                errors.add(1, ordering: .relaxed)
            }
        }
        latencies.withLock { $0 += mine }
    }
    let elapsed = Double((ContinuousClock.now - start).components.attoseconds) / 1e18 + Double((ContinuousClock.now - start).components.seconds)
    let all = latencies.withLock { $0 }
    return (Double(all.count) / elapsed, all, errors.load(ordering: .relaxed))
}

/// The floor any durable write on this disk pays: write 4 KiB to a file in
/// the work directory and `fdatasync` it, `count` times; latencies in ms.
func diskSyncLatencies(_ env: Environment, count: Int) throws -> [Double] {
    let path = "\(env.work)/fsync-probe"
    let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
    guard fd >= 0 else { throw BenchError("cannot open \(path)") }
    defer { close(fd); unlink(path) }
    let page = [UInt8](repeating: 0x5a, count: 4096)
    var times: [Double] = []
    for i in 0..<(count + 5) {
        let t = ContinuousClock.now
        let written = page.withUnsafeBytes { pwrite(fd, $0.baseAddress, 4096, off_t((i % 64) * 4096)) }
        guard written == 4096, fdatasync(fd) == 0 else { throw BenchError("write or fdatasync failed on \(path)") }
        if i >= 5 { times.append(ms(ContinuousClock.now - t)) }
    }
    return times
}

struct DurableWrites {
    var single: [Double]
    /// Store transactions (groups) during the concurrent phase, and their mean time, ms
    /// (`fusebox_store_duration_seconds{operation="writePolicies"}`).
    var groups: Double
    var groupMs: Double
    var concurrent: (writesPerSecond: Double, latenciesMs: [Double], errors: Int)
    var writers: Int
    var disk: [Double]
}

/// Scenario 15 on one SQLite fuseboxd: `writes` sequential PutPolicy calls,
/// then `writers` concurrent writers for `seconds`; and the disk's own sync.
func durableWritesSQLite(_ env: Environment, writes: Int, writers: Int, seconds: Double, group: any EventLoopGroup) async throws -> DurableWrites {
    let server = try Fuseboxd(env, name: "durable15-sqlite")
    defer { server.stop() }
    let admin = try server.client("admin", group: group)
    let single = try await putPolicyLatencies(admin, name: "durable", writes: writes)
    await admin.close()
    let clients = try (0..<writers).map { _ in try server.client("admin", group: group) }
    for (w, c) in clients.enumerated() { try await putPolicy(tripPolicy("durable-w-\(w)"), c) }  // connected, policy exists
    let label = "operation=\"writePolicies\""
    let before = try await server.metrics(group: group)
    let concurrent = try await concurrentPolicyWrites(clients, prefix: "durable-w", seconds: seconds)
    let after = try await server.metrics(group: group)
    let groups = after.sum("fusebox_store_duration_seconds_count", labelContains: label) - before.sum("fusebox_store_duration_seconds_count", labelContains: label)
    let groupSeconds = after.sum("fusebox_store_duration_seconds_sum", labelContains: label) - before.sum("fusebox_store_duration_seconds_sum", labelContains: label)
    for c in clients { await c.close() }
    let disk = try diskSyncLatencies(env, count: writes)
    return DurableWrites(single: single, groups: groups, groupMs: groupSeconds * 1000 / max(groups, 1), concurrent: concurrent, writers: writers, disk: disk)
}
