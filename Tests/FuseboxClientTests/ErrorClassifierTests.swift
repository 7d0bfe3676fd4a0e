import Foundation
import FuseboxCore
import FuseboxRPC
import NIOCore
import NIOPosix
import XCTest

@testable import FuseboxClient

/// What the standard classifier makes of the errors services meet, without
/// their adopting any SDK protocol.
final class ErrorClassifierTests: XCTestCase {
    struct HTTPFailure: HTTPStatusError {
        var httpStatusCode: Int
        var retryAfter: String?
    }

    struct OtherGRPCLibraryError: GRPCStatusError {
        var grpcStatusCode: Int
        var grpcRetryPushback: String?
    }

    private func classify(_ error: any Error) -> ErrorClassification? {
        ErrorClassifier.standard.classify(error)
    }

    func testNetworkErrorsFromNIOAndPOSIX() {
        XCTAssertEqual(classify(IOError(errnoCode: ECONNREFUSED, reason: "connect")), .init(condition: .networkError, code: "net.ECONNREFUSED"))
        XCTAssertEqual(classify(IOError(errnoCode: ECONNRESET, reason: "read")), .init(condition: .networkError, code: "net.ECONNRESET"))
        XCTAssertEqual(classify(IOError(errnoCode: ETIMEDOUT, reason: "connect")), .init(condition: .timeout, code: "net.ETIMEDOUT"))
        XCTAssertEqual(classify(POSIXError(.EHOSTUNREACH)), .init(condition: .networkError, code: "net.EHOSTUNREACH"))
        XCTAssertEqual(classify(POSIXError(.EPIPE)), .init(condition: .networkError, code: "net.EPIPE"))
        XCTAssertEqual(classify(ChannelError.connectTimeout(.seconds(1))), .init(condition: .timeout, code: "net.connect-timeout"))
        XCTAssertEqual(classify(ChannelError.ioOnClosedChannel), .init(condition: .networkError, code: "net.closed"))
        XCTAssertNil(classify(IOError(errnoCode: EACCES, reason: "open")), "not a network failure")
    }

    /// A real connection attempt to a port nobody listens on.
    func testARefusedConnectionIsANetworkError() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let closed = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let port = try XCTUnwrap(closed.localAddress?.port)
        try await closed.close()
        do {
            _ = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port).get()
            XCTFail("connected to a closed port")
        } catch {
            let c = classify(error)
            XCTAssertEqual(c?.condition, .networkError, "\(error)")
            XCTAssertEqual(c?.code, "net.ECONNREFUSED", "\(error)")
        }
        try await group.shutdownGracefully()
    }

    func testGRPCStatusesAndPushback() {
        var pushback = RPCMetadata()
        pushback.add("grpc-retry-pushback-ms", "250")
        XCTAssertEqual(
            classify(RPCError(.unavailable, "down", metadata: pushback)),
            .init(condition: .serverError, code: "grpc.UNAVAILABLE", pushbackMs: 250))
        XCTAssertEqual(classify(RPCError(.deadlineExceeded, "slow")), .init(condition: .timeout, code: "grpc.DEADLINE_EXCEEDED"))
        XCTAssertEqual(classify(RPCError(.resourceExhausted, "busy")), .init(condition: .rateLimited, code: "grpc.RESOURCE_EXHAUSTED"))
        XCTAssertEqual(classify(RPCError(.notFound, "no")), .init(condition: nil, code: "grpc.NOT_FOUND"))
        // Another library's status error, and a pushback that says "do not retry".
        XCTAssertEqual(
            classify(OtherGRPCLibraryError(grpcStatusCode: 14, grpcRetryPushback: "-1")),
            .init(condition: .serverError, code: "grpc.UNAVAILABLE", pushbackMs: -1))
        XCTAssertEqual(classify(OtherGRPCLibraryError(grpcStatusCode: 13, grpcRetryPushback: "soon"))?.pushbackMs, -1, "malformed: do not retry")
    }

    func testHTTPStatusesAndRetryAfter() {
        XCTAssertEqual(classify(HTTPFailure(httpStatusCode: 503, retryAfter: "2")), .init(condition: .serverError, code: "http.503", pushbackMs: 2_000))
        XCTAssertEqual(classify(HTTPFailure(httpStatusCode: 429)), .init(condition: .rateLimited, code: "http.429"))
        XCTAssertEqual(classify(HTTPFailure(httpStatusCode: 408)), .init(condition: .timeout, code: "http.408"))
        XCTAssertEqual(classify(HTTPFailure(httpStatusCode: 404)), .init(condition: nil, code: "http.404"))
        let now = Date(timeIntervalSince1970: 784_111_770)  // Sun, 06 Nov 1994 08:49:30 GMT
        XCTAssertEqual(ErrorClassifier.retryAfterMilliseconds("Sun, 06 Nov 1994 08:49:37 GMT", now: now), 7_000)
        XCTAssertEqual(ErrorClassifier.retryAfterMilliseconds("Sun, 06 Nov 1994 08:49:00 GMT", now: now), 0, "a date already past")
        XCTAssertNil(ErrorClassifier.retryAfterMilliseconds("tomorrow", now: now))
        XCTAssertNil(ErrorClassifier.retryAfterMilliseconds("Sun, 31 Feb 1994 08:49:37 GMT", now: now), "no such day")
    }

    func testACustomClassifierFallsBackToTheStandardOne() {
        struct QuotaExceeded: Error {}
        let classifier = ErrorClassifier { error in
            error is QuotaExceeded ? ErrorClassification(condition: .rateLimited, code: "quota") : nil
        }.orElse(.standard)
        XCTAssertEqual(classifier.classify(QuotaExceeded()), .init(condition: .rateLimited, code: "quota"))
        XCTAssertEqual(classifier.classify(POSIXError(.ECONNRESET))?.code, "net.ECONNRESET")
        XCTAssertNil(ErrorClassifier.standard.classify(QuotaExceeded()))
    }
}
