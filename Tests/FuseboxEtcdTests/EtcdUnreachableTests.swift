import FuseboxTesting
import FuseboxEtcd
import XCTest

/// No endpoint answers (nothing listens on their ports): requests, watches
/// and keepalives give up within their bounds, with errors that say so.
final class EtcdUnreachableTests: XCTestCase {
    private func unreachableClient(retryTimeout: Duration) throws -> EtcdClient {
        let ports = try EtcdTestCluster.freePorts(2)
        var configuration = try EtcdConfiguration(endpoints: ports.map { "127.0.0.1:\($0)" }, tls: nil)
        configuration.retryTimeout = retryTimeout
        return try EtcdClient(configuration: configuration)
    }

    func testARequestTriesEveryEndpointThenGivesUpAfterTheRetryTimeout() async throws {
        let client = try unreachableClient(retryTimeout: .seconds(1))
        let started = ContinuousClock.now
        do {
            _ = try await client.get(b("k"))
            XCTFail("a request to nowhere succeeded")
        } catch {
            XCTAssertEqual(error.code, .unavailable, "\(error)")
            XCTAssertTrue(error.message.contains("gave up after"), "\(error)")
            XCTAssertNotNil(error.endpoint)
        }
        let elapsed = ContinuousClock.now - started
        XCTAssertLessThan(elapsed, .seconds(3), "bounded by retryTimeout")
        await client.close()
    }

    func testAWatchThatCannotBeEstablishedEndsWithUnavailable() async throws {
        let client = try unreachableClient(retryTimeout: .seconds(1))
        let watch = client.watch(b("k"))
        let started = ContinuousClock.now
        do {
            try await watch.run()
            XCTFail("a watch to nowhere ended without an error")
        } catch {
            XCTAssertEqual(error.code, .unavailable, "\(error)")
            XCTAssertTrue(error.message.contains("could not be re-established"), "\(error)")
        }
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(3))
        var iterator = watch.makeAsyncIterator()
        let next = await iterator.next()
        XCTAssertNil(next, "the sequence ends with run()")
        await client.close()
    }

    func testAKeepAliveThatReachesNoEndpointReportsTheLossWhenTheLeaseWouldExpire() async throws {
        let client = try unreachableClient(retryTimeout: .seconds(30))
        let keepAlive = client.keepAlive(EtcdLease(id: 7, ttl: 1, revision: 1))
        let started = ContinuousClock.now
        do {
            try await keepAlive.run()
            XCTFail("a keepalive to nowhere ended without an error")
        } catch {
            XCTAssertEqual(error.code, .leaseLost, "\(error)")
            XCTAssertTrue(error.message.contains("before it expired"), "\(error)")
        }
        let elapsed = ContinuousClock.now - started
        XCTAssertLessThan(elapsed, .seconds(2), "the loss is reported by the lease's TTL, not the retry timeout")
        var events: [EtcdLeaseKeepAlive.Event] = []
        for await event in keepAlive.events { events.append(event) }
        XCTAssertEqual(events.count, 1)
        if case .lost(let error)? = events.first { XCTAssertEqual(error.code, .leaseLost) } else { XCTFail("\(events)") }
        await client.close()
    }
}
