import FuseboxTesting
import FuseboxRPC
import XCTest

@testable import FuseboxEtcd

/// How etcd's gRPC statuses become `EtcdError` codes, which of them are
/// retried, and the backoff between retries. No etcd needed.
final class EtcdErrorTests: XCTestCase {
    func testEtcdStatusesAreClassifiedByTheirMessage() {
        let cases: [(RPCStatusCode, String, EtcdError.Code)] = [
            (.unavailable, "etcdserver: leader changed", .leaderChanged),
            (.unavailable, "etcdserver: no leader", .noLeader),
            (.outOfRange, "etcdserver: mvcc: required revision has been compacted", .compacted),
            (.outOfRange, "etcdserver: mvcc: required revision is a future revision", .futureRevision),
            (.notFound, "etcdserver: requested lease not found", .leaseNotFound),
            (.unavailable, "etcdserver: request timed out", .unavailable),
            (.unavailable, "cannot connect to 127.0.0.1:1", .unavailable),
            (.deadlineExceeded, "the deadline passed before the call finished", .deadlineExceeded),
            (.invalidArgument, "etcdserver: key is not provided", .invalidArgument),
            (.cancelled, "the call was cancelled", .cancelled),
            (.permissionDenied, "etcdserver: permission denied", .other),
        ]
        for (status, message, code) in cases {
            let error = EtcdError(RPCError(status, message), endpoint: "127.0.0.1:2379")
            XCTAssertEqual(error.code, code, message)
            XCTAssertEqual(error.endpoint, "127.0.0.1:2379")
            XCTAssertEqual(error.cause?.code, status)
            XCTAssertTrue(error.description.contains(message), error.description)
        }
    }

    func testWhatIsRetriedAndWhereTo() {
        func rule(_ code: EtcdError.Code) -> (Bool, Bool) {
            let r = EtcdClient.retry(EtcdError(code, "x"))
            return (r.retry, r.moveOn)
        }
        XCTAssertTrue(rule(.unavailable) == (true, true))
        XCTAssertTrue(rule(.noLeader) == (true, true), "a member without a leader cannot serve; try another")
        XCTAssertTrue(rule(.deadlineExceeded) == (true, true))
        XCTAssertTrue(rule(.leaderChanged) == (true, false), "the member is fine, the cluster moved on")
        for code in [EtcdError.Code.compacted, .futureRevision, .leaseNotFound, .invalidArgument, .cancelled, .other] {
            XCTAssertTrue(rule(code) == (false, false), "\(code) is the answer, not a transient failure")
        }
    }

    func testBackoffDoublesUpToTheMaximumWithJitterInTheUpperHalf() throws {
        var configuration = try EtcdConfiguration(endpoints: ["127.0.0.1:2379"], tls: nil)
        configuration.backoffInitial = .milliseconds(100)
        configuration.backoffMaximum = .milliseconds(800)
        var random = SystemRandomNumberGenerator()
        for (attempt, ceiling) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 800), (20, 800)] {
            for _ in 0..<50 {
                let delay = configuration.backoff(attempt: attempt, using: &random)
                XCTAssertGreaterThanOrEqual(delay, .milliseconds(ceiling / 2), "attempt \(attempt)")
                XCTAssertLessThanOrEqual(delay, .milliseconds(ceiling), "attempt \(attempt)")
            }
        }
    }
}
