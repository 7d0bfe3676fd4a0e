import FuseboxEtcd
import Foundation
import XCTest

/// Bytes of a string, for keys and values.
func b(_ text: String) -> [UInt8] { Array(text.utf8) }

/// Things a test's consumer task collects, read by the test while it waits.
final class Collected<Element: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [Element] = []

    func append(_ item: Element) {
        lock.lock()
        items.append(item)
        lock.unlock()
    }

    var all: [Element] {
        lock.lock()
        defer { lock.unlock() }
        return items
    }
}

/// Runs `body` with a healthy three-member cluster and a client of all of
/// it; stops the cluster afterwards and prints how long the test took.
func withCluster(
    _ name: String = #function, size: Int = 3, tls: EtcdTestCluster.TLSFiles? = nil,
    _ body: (EtcdTestCluster, EtcdClient) async throws -> Void
) async throws {
    let started = ContinuousClock.now
    let cluster = try EtcdTestCluster(size: size, tls: tls)
    defer {
        cluster.stop()
        print("\(name): \(ContinuousClock.now - started) with its etcd cluster")
    }
    let client = try cluster.client()
    do {
        try await cluster.waitUntilHealthy(client)
        print("\(name): cluster healthy after \(ContinuousClock.now - started)")
        try await body(cluster, client)
    } catch {
        await client.close()
        XCTFail("\(error)\n\(cluster.logTail())")
        return
    }
    await client.close()
}
