import Foundation
import FuseboxCore
import FuseboxRPC
import FuseboxTLS
import FuseboxTesting
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Synchronization
import XCTest

@testable import FuseboxClient

/// What the guard tests share: a real fuseboxd in process (real TLS), an
/// admin client to put policies, and a Fusebox session started on demand.
class GuardTestCase: XCTestCase {
    var group: MultiThreadedEventLoopGroup!
    var server: ServerHarness!
    var admin: RPCClient!
    var fusebox: Fusebox?
    var work = ""

    override func setUp() async throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        work = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-guard-\(UUID().uuidString)").path
        server = try await ServerHarness.start(group: group, directory: work + "/data")
        admin = try server.client("admin", group: group)
    }

    override func tearDown() async throws {
        await fusebox?.shutdown()
        await admin?.close()
        try await server?.stop()
        try await group.shutdownGracefully()
        try? FileManager.default.removeItem(atPath: work)
    }

    func start(_ policies: [Policy], configure: (inout FuseboxConfiguration) -> Void = { _ in }) async throws -> Fusebox {
        for p in policies { try await ServerHarness.put(p, with: admin) }
        var configuration = FuseboxConfiguration(
            host: "127.0.0.1", port: server.port,
            tls: .client(trustRootsPath: try TestCertificates.path("ca.pem"), certificateChainPath: try TestCertificates.path("reporter.pem"),
                         privateKeyPath: try TestCertificates.path("reporter.key")),
            clientID: "guard-test", cacheDirectory: work + "/cache")
        configuration.reportInterval = .milliseconds(20)
        configure(&configuration)
        let f = try await Fusebox.start(configuration, group: group)
        fusebox = f
        XCTAssertEqual(f.policySource, .server)
        return f
    }

    struct Boom: GuardClassifiedError {
        var retryCondition: RetryCondition? { .serverError }
        var errorCode: String? { "http.503" }
    }

    final class Calls: Sendable {
        let n = Atomic(0)
        func hit() -> Int { n.add(1, ordering: .relaxed).newValue }
        var count: Int { n.load(ordering: .relaxed) }
    }

    func breakerPolicy(_ name: String, failures: Int = 3) -> Policy {
        var p = Policy(name: name)
        var cb = CircuitBreakerPolicy()
        cb.consecutiveFailuresThreshold = failures
        cb.minimumCalls = 1
        cb.openDuration.baseMs = 60_000
        p.circuitBreaker = cb
        return p
    }

    /// Retry with `attempts` attempts, 1 ms apart, on `conditions`.
    func quickRetry(attempts: Int, on conditions: Set<RetryCondition>) -> RetryPolicy {
        var retry = RetryPolicy()
        retry.maxAttempts = attempts
        retry.backoff.kind = .fixed
        retry.backoff.initialMs = 1
        retry.retryOn = conditions
        return retry
    }
}
