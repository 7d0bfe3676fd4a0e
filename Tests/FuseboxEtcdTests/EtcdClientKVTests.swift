import FuseboxTesting
import FuseboxEtcd
import XCTest

/// Keys, ranges and transactions against a real etcd 3.4 cluster.
final class EtcdClientKVTests: XCTestCase {
    /// etcd (grpc-go) PINGs after reading each request; past SwiftNIO's
    /// default limit of 200 control frames in 30 s the connection broke and
    /// later calls timed out (docs/ETCD.md, "Flow-control PINGs").
    func testSixHundredCallsInARowOnOneConnection() async throws {
        try await withCluster { _, client in
            for i in 0..<600 {
                let put = try await client.put(b("many/\(i % 10)"), b("\(i)"))
                XCTAssertGreaterThan(put.revision, 1)
            }
            let last = try await client.get(b("many/9"))
            XCTAssertEqual(last?.valueString, "599")
        }
    }

    func testPutRangeDeleteAndCompareAndSwapSemantics() async throws {
        try await withCluster { _, client in
            let first = try await client.put(b("app/a"), b("1"))
            XCTAssertGreaterThan(first.revision, 1)
            let second = try await client.put(b("app/b"), b("2"), previous: true)
            XCTAssertEqual(second.revision, first.revision + 1)
            XCTAssertNil(second.previous, "b did not exist before")

            let a = try await client.get(b("app/a"))
            XCTAssertEqual(a?.valueString, "1")
            XCTAssertEqual(a?.modRevision, first.revision)
            XCTAssertEqual(a?.createRevision, first.revision)
            XCTAssertEqual(a?.version, 1)

            // Prefix range, limit, count, more; and a serializable read.
            _ = try await client.put(b("apq"), b("outside the prefix"))
            let all = try await client.range(b("app/"), rangeEnd: EtcdKeys.prefixEnd(b("app/")))
            XCTAssertEqual(all.kvs.map(\.keyString), ["app/a", "app/b"])
            XCTAssertEqual(all.count, 2)
            XCTAssertFalse(all.more)
            let limited = try await client.range(b("app/"), rangeEnd: EtcdKeys.prefixEnd(b("app/")), limit: 1)
            XCTAssertEqual(limited.kvs.map(\.keyString), ["app/a"])
            XCTAssertTrue(limited.more)
            XCTAssertEqual(limited.count, 2)
            let local = try await client.range(b("app/b"), serializable: true)
            XCTAssertEqual(local.kvs.first?.valueString, "2")

            // A read at an older revision sees the older value.
            let updated = try await client.put(b("app/a"), b("1bis"), previous: true)
            XCTAssertEqual(updated.previous?.valueString, "1")
            let old = try await client.range(b("app/a"), revision: first.revision)
            XCTAssertEqual(old.kvs.first?.valueString, "1")

            // Compare-and-swap on the mod revision: the right revision wins once.
            let cas = try await client.txn(
                [.modRevision(b("app/a"), is: updated.revision)],
                success: [.put(key: b("app/a"), value: b("2")), .range(key: b("app/a"))],
                failure: [.range(key: b("app/a"))])
            XCTAssertTrue(cas.succeeded)
            XCTAssertEqual(cas.revision, updated.revision + 1)
            guard case .put = cas.results.first, case .range(let after) = cas.results.last else {
                return XCTFail("unexpected results \(cas.results)")
            }
            XCTAssertEqual(after.kvs.first?.valueString, "2")

            let stale = try await client.txn(
                [.modRevision(b("app/a"), is: updated.revision)],
                success: [.put(key: b("app/a"), value: b("lost update"))],
                failure: [.range(key: b("app/a"))])
            XCTAssertFalse(stale.succeeded)
            XCTAssertEqual(stale.revision, cas.revision, "a failed comparison writes nothing")
            guard case .range(let current) = stale.results.first else { return XCTFail("unexpected results \(stale.results)") }
            XCTAssertEqual(current.kvs.first?.valueString, "2")
            XCTAssertEqual(current.kvs.first?.modRevision, cas.revision)

            // Create-if-absent, value and version comparisons, other relations.
            let create = try await client.txn([.absent(b("app/c"))], success: [.put(key: b("app/c"), value: b("3"))])
            XCTAssertTrue(create.succeeded)
            let createAgain = try await client.txn([.absent(b("app/c"))], success: [.put(key: b("app/c"), value: b("x"))])
            XCTAssertFalse(createAgain.succeeded)
            let byValue = try await client.txn([.value(b("app/c"), is: b("3"))], success: [])
            XCTAssertTrue(byValue.succeeded)
            let newer = try await client.txn([EtcdCompare(key: b("app/a"), .greater, .version(1))], success: [])
            XCTAssertTrue(newer.succeeded, "app/a was written three times")
            let less = try await client.txn([EtcdCompare(key: b("app/a"), .less, .createRevision(first.revision))], success: [])
            XCTAssertFalse(less.succeeded)
            let notEqual = try await client.txn([EtcdCompare(key: b("app/c"), .notEqual, .lease(0))], success: [])
            XCTAssertFalse(notEqual.succeeded, "app/c has no lease")
            let overRange = try await client.txn(
                [EtcdCompare(key: b("app/"), rangeEnd: EtcdKeys.prefixEnd(b("app/")), .greater, .createRevision(0))], success: [])
            XCTAssertTrue(overRange.succeeded, "every key under app/ exists")

            // Delete one key, then a prefix.
            let deleted = try await client.deleteRange(b("app/c"), previous: true)
            XCTAssertEqual(deleted.deleted, 1)
            XCTAssertEqual(deleted.previous.first?.valueString, "3")
            let gone = try await client.get(b("app/c"))
            XCTAssertNil(gone)
            let wiped = try await client.deleteRange(b("app/"), rangeEnd: EtcdKeys.prefixEnd(b("app/")))
            XCTAssertEqual(wiped.deleted, 2)
            let none = try await client.range(b("app/"), rangeEnd: EtcdKeys.prefixEnd(b("app/")))
            XCTAssertEqual(none.count, 0)
            XCTAssertEqual(none.revision, wiped.revision)
            let outside = try await client.get(b("apq"))
            XCTAssertNotNil(outside)
        }
    }

    func testPrefixEnd() {
        XCTAssertEqual(EtcdKeys.prefixEnd(b("a/")), b("a0"))
        XCTAssertEqual(EtcdKeys.prefixEnd([0x61, 0xff]), [0x62])
        XCTAssertEqual(EtcdKeys.prefixEnd([0xff, 0xff]), [0])
        XCTAssertEqual(EtcdKeys.prefixEnd([]), [0])
    }

    func testEndpointParsing() throws {
        XCTAssertEqual(try EtcdEndpoint(parsing: "127.0.0.1:2379"), EtcdEndpoint(host: "127.0.0.1", port: 2379))
        XCTAssertEqual(try EtcdEndpoint(parsing: "[::1]:2379"), EtcdEndpoint(host: "::1", port: 2379))
        XCTAssertThrowsError(try EtcdEndpoint(parsing: "etcd")) { XCTAssertEqual(($0 as? EtcdError)?.code, .invalidArgument) }
        XCTAssertThrowsError(try EtcdEndpoint(parsing: "etcd:0"))
        XCTAssertThrowsError(try EtcdConfiguration(endpoints: [String](), tls: nil))
    }
}
