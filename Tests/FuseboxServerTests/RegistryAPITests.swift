import FuseboxAPI
import FuseboxCore
import FuseboxRPC
import FuseboxServer
import FuseboxWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import FuseboxTesting
import XCTest

/// RegistryService through the API: CRUD, versions, history, watch resume,
/// validation errors with paths; breakers following policy changes live.
final class RegistryAPITests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var server: ServerHarness!
    private var admin: RPCClient!
    private let R = "fusebox.v1.RegistryService"

    override func setUp() async throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        server = try await ServerHarness.start(group: group)
        admin = try server.client("admin", group: group)
    }

    override func tearDown() async throws {
        await admin.close()
        try await server.stop()
        try await group.shutdownGracefully()
    }

    private func put(_ policy: Policy, registry: String = "payments", expected: UInt64? = nil) async throws(RPCError) -> Fusebox_V1_PutPolicyResponse {
        var request = Fusebox_V1_PutPolicyRequest()
        request.registry = registry
        request.policy = PolicyMapping.wire(policy)
        request.reason = "test"
        if let expected {
            var e = Fusebox_V1_ExpectedVersion()
            e.version = expected
            request.expectedVersion = e
        }
        return try await admin.unary(R, "PutPolicy", request, as: Fusebox_V1_PutPolicyResponse.self)
    }

    func testCRUDVersionsHistoryAndPresets() async throws {
        let list = try await admin.unary(R, "ListRegistries", Fusebox_V1_ListRegistriesRequest(), as: Fusebox_V1_ListRegistriesResponse.self)
        XCTAssertEqual(list.registries.first { $0.name == "default" }?.policyCount, 5, "presets on first start")
        let created = try await put(Presets.api, expected: 0)
        XCTAssertEqual(created.kind, .created)
        XCTAssertEqual(created.registryVersion, 1)
        var changed = Presets.api
        changed.bulkhead = BulkheadPolicy(maxConcurrent: 7)
        let updated = try await put(changed, expected: 1)
        XCTAssertEqual(updated.kind, .updated)
        do throws(RPCError) {
            _ = try await put(Presets.api, expected: 1)
            XCTFail("stale version")
        } catch {
            XCTAssertEqual(error.code, .failedPrecondition)
            let details = try Fusebox_V1_ErrorDetails(decoding: error.metadata.firstBinary("fusebox-error-details-bin") ?? [])
            XCTAssertEqual(details.currentVersion, 2)
        }
        var get = Fusebox_V1_GetPolicyRequest()
        get.registry = "payments"
        get.name = "api"
        let record = try await admin.unary(R, "GetPolicy", get, as: Fusebox_V1_PolicyRecord.self)
        XCTAssertEqual(record.version, 2)
        XCTAssertEqual(record.updatedBy, "fusebox-admin")
        XCTAssertEqual(record.policy?.bulkhead?.maxConcurrent, 7)
        var delete = Fusebox_V1_DeletePolicyRequest()
        delete.registry = "payments"
        delete.name = "api"
        _ = try await admin.unary(R, "DeletePolicy", delete, as: Fusebox_V1_DeletePolicyResponse.self)
        do throws(RPCError) {
            _ = try await admin.unary(R, "GetPolicy", get, as: Fusebox_V1_PolicyRecord.self)
            XCTFail("deleted")
        } catch {
            XCTAssertEqual(error.code, .notFound)
        }
        var history = Fusebox_V1_PolicyHistoryRequest()
        history.registry = "payments"
        let changes = try await admin.unary(R, "PolicyHistory", history, as: Fusebox_V1_PolicyHistoryResponse.self).changes
        XCTAssertEqual(changes.map(\.kind), [.created, .updated, .deleted])
        XCTAssertEqual(changes[1].before?.bulkhead?.maxConcurrent, 50)
        XCTAssertEqual(changes[1].after?.bulkhead?.maxConcurrent, 7)
        XCTAssertEqual(changes.map(\.actor), ["fusebox-admin", "fusebox-admin", "fusebox-admin"])
    }

    /// PolicyHistory answers up to its documented limit of 1,000 changes in one page.
    func testPolicyHistoryAnswersAFullPageOfAThousandChanges() async throws {
        for i in 0..<1_100 {
            var p = fleetPolicy("h\(i % 20)")
            p.description = String(repeating: "d", count: 200) + "\(i)"
            try await ServerHarness.put(p, with: admin)
        }
        var request = Fusebox_V1_PolicyHistoryRequest()
        request.registry = "default"
        request.limit = 1_000
        let page = try await admin.unary("fusebox.v1.RegistryService", "PolicyHistory", request, as: Fusebox_V1_PolicyHistoryResponse.self)
        XCTAssertEqual(page.changes.count, 1_000)
        XCTAssertTrue(page.truncated)
        request.afterVersion = page.changes.last?.version ?? 0
        let rest = try await admin.unary("fusebox.v1.RegistryService", "PolicyHistory", request, as: Fusebox_V1_PolicyHistoryResponse.self)
        XCTAssertFalse(rest.truncated)
        // The presets' writes came first; together the pages are every version, once, in order.
        let versions = (page.changes + rest.changes).map(\.version)
        XCTAssertEqual(versions, Array(1...UInt64(versions.count)))
        XCTAssertGreaterThanOrEqual(versions.count, 1_100)
    }

    func testInvalidPolicyListsEveryProblemWithItsPath() async throws {
        var bad = Presets.api
        bad.retry?.backoff.initialMs = 500
        bad.retry?.backoff.maxMs = 100
        bad.bulkhead = BulkheadPolicy(maxConcurrent: 0)
        do throws(RPCError) {
            _ = try await put(bad)
            XCTFail("invalid")
        } catch {
            XCTAssertEqual(error.code, .invalidArgument)
            let details = try Fusebox_V1_ErrorDetails(decoding: error.metadata.firstBinary("fusebox-error-details-bin") ?? [])
            XCTAssertEqual(details.violations.map(\.field), ["policy.retry.backoff.max_ms", "policy.bulkhead.max_concurrent"])
            XCTAssertTrue(error.message.contains("retry.backoff.max_ms: (100) must be ≥ retry.backoff.initial_ms (500)"), error.message)
        }
        let reader = try server.client("reader", group: group)
        do throws(RPCError) {
            _ = try await reader.unary(R, "PutPolicy", Fusebox_V1_PutPolicyRequest(), as: Fusebox_V1_PutPolicyResponse.self)
            XCTFail("a reader cannot write")
        } catch {
            XCTAssertEqual(error.code, .permissionDenied)
        }
        await reader.close()
    }

    /// A policy over 64 KiB encoded is refused naming the limit; ValidatePolicy says the same.
    func testAnOversizedPolicyIsRefused() async throws {
        var big = Presets.api
        big.description = String(repeating: "x", count: 1_000)
        for i in 0..<100 { big.labels["label-\(i)"] = String(repeating: "v", count: 700) }
        do throws(RPCError) {
            _ = try await put(big)
            XCTFail("a policy over the size limit was stored")
        } catch {
            XCTAssertEqual(error.code, .invalidArgument)
            let details = try Fusebox_V1_ErrorDetails(decoding: error.metadata.firstBinary("fusebox-error-details-bin") ?? [])
            XCTAssertEqual(details.violations.map(\.field), ["policy"])
            XCTAssertTrue(error.message.contains("limits.maxPolicyBytes"), error.message)
        }
        var validate = Fusebox_V1_ValidatePolicyRequest()
        validate.policy = PolicyMapping.wire(big)
        let answer = try await admin.unary(R, "ValidatePolicy", validate, as: Fusebox_V1_ValidatePolicyResponse.self)
        XCTAssertFalse(answer.valid)
        XCTAssertTrue(answer.violations.contains { $0.description.contains("limits.maxPolicyBytes") })
    }

    /// A watch resumed from a version gets exactly the later changes, then live ones.
    func testWatchResumesFromAVersion() async throws {
        for i in 1...3 {
            var p = Presets.api
            p.name = "p\(i)"
            _ = try await put(p)
        }
        let seen = NIOLockedValueBox<[UInt64]>([])
        var request = Fusebox_V1_WatchRegistryRequest()
        request.registry = "payments"
        request.fromVersion = 1
        let client: RPCClient = admin
        let watch = Task {
            try await client.serverStreaming("fusebox.v1.RegistryService", "WatchRegistry", request, as: Fusebox_V1_RegistryEvent.self) { event in
                if case .change(let c)? = event.event { seen.withLockedValue { $0.append(c.version) } }
            }
        }
        await waitUntil("replayed 2 and 3") { seen.withLockedValue { $0 } == [2, 3] }
        var p = Presets.api
        p.name = "p4"
        _ = try await put(p)
        await waitUntil("live 4") { seen.withLockedValue { $0 } == [2, 3, 4] }
        watch.cancel()
    }

    /// A breaker bound to a policy follows its changes without a restart; Get shows stats and contributions.
    func testBreakersFollowPolicyChangesAndShowDetail() async throws {
        try await putFleetPolicy(admin, name: "live", permits: 1)
        let reporter = try server.client("reporter", group: group)
        _ = try await reporter.unary("fusebox.v1.BreakerService", "ReportOutcomes",
            batch(client: "c1", breaker: "inventory", policy: "live", generation: 0, success: 4, failure: 3), as: Fusebox_V1_ReportOutcomesResponse.self)
        var get = Fusebox_V1_GetBreakerRequest()
        get.breaker = ref("inventory")
        var detail = try await admin.unary("fusebox.v1.BreakerService", "GetBreaker", get, as: Fusebox_V1_BreakerDetail.self)
        XCTAssertEqual(detail.window?.calls, 7)
        XCTAssertEqual(detail.contributions.map(\.clientId), ["c1"])
        XCTAssertEqual(detail.status?.state, .closed, "7 calls are below minimumCalls 10")
        // Lower minimumCalls live: the next report trips it.
        var getPolicy = Fusebox_V1_GetPolicyRequest()
        getPolicy.registry = "default"
        getPolicy.name = "live"
        let stored = try await admin.unary(R, "GetPolicy", getPolicy, as: Fusebox_V1_PolicyRecord.self)
        var policy = try PolicyMapping.policy(from: stored.policy ?? Fusebox_V1_Policy()).get()
        policy.circuitBreaker?.minimumCalls = 5
        _ = try await put(policy, registry: "default")
        _ = try await reporter.unary("fusebox.v1.BreakerService", "ReportOutcomes",
            batch(client: "c2", breaker: "inventory", policy: "live", generation: 0, failure: 1), as: Fusebox_V1_ReportOutcomesResponse.self)
        detail = try await admin.unary("fusebox.v1.BreakerService", "GetBreaker", get, as: Fusebox_V1_BreakerDetail.self)
        XCTAssertEqual(detail.status?.state, .open, "the changed policy applies without a restart")
        XCTAssertEqual(detail.trips, 1)
        await reporter.close()
    }
}
