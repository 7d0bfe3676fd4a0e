import FuseboxRPC
import FuseboxServer
import FuseboxAuthority
import FuseboxCore
import NIOCore
import FuseboxWire
import NIOConcurrencyHelpers
import NIOPosix
import FuseboxTesting
import XCTest

/// The fleet's breakers through the API: agreement, permits, quorum, overrides.
final class FleetBreakerTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var server: ServerHarness!
    private var admin: RPCClient!
    /// The authority's time: open periods, permit expiry and override ends
    /// happen when the test moves it, not after real time.
    private let clock = ManualFleetClock()

    override func setUp() async throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        server = try await ServerHarness.start(group: group, clock: clock)
        admin = try server.client("admin", group: group)
    }

    override func tearDown() async throws {
        await admin.close()
        try await server.stop()
        try await group.shutdownGracefully()
    }

    private let B = "fusebox.v1.BreakerService"

    private func report(_ client: RPCClient, _ b: Fusebox_V1_OutcomeBatch) async throws -> Fusebox_V1_ReportOutcomesResponse {
        try await client.unary(B, "ReportOutcomes", b, as: Fusebox_V1_ReportOutcomesResponse.self)
    }


    /// Three clients report; all three watchers see OPEN → HALF_OPEN → CLOSED
    /// with identical generations; a failed probe reopens it for all three.
    func testThreeClientsAgreeOnEveryTransition() async throws {
        try await putFleetPolicy(admin, minimumClients: 1, permits: 1, openMs: 300)
        let clients = try (0..<3).map { _ in try server.client("reporter", group: group) }
        let watches = clients.map { BreakerWatch(client: $0, prefix: "stripe") }
        _ = try await report(clients[0], batch(client: "c0", breaker: "stripe", generation: 0, success: 10))
        await waitUntil("watchers subscribed") { server.app.authority.watcherCount == 3 }
        for (i, client) in clients.enumerated() {
            _ = try await report(client, batch(client: "c\(i)", breaker: "stripe", generation: 0, failure: 5))
        }
        await waitUntil("OPEN everywhere") { watches.allSatisfy { $0.transitions.count >= 1 } }
        clock.advance(by: 300)
        await waitUntil("OPEN then HALF_OPEN everywhere") { watches.allSatisfy { $0.transitions.count >= 2 } }
        // A failed probe reopens; the next half-open probe succeeds and closes.
        var g = watches[0].transitions.last?.1 ?? 0
        var permit = try await acquire(clients[1], "stripe", generation: g, as: "c1")
        XCTAssertTrue(permit.granted, permit.reason)
        _ = try await report(clients[1], batch(client: "c1", breaker: "stripe", generation: g, probes: [(permit.permitId, .failure)]))
        await waitUntil("reopened") { watches.allSatisfy { $0.transitions.count >= 3 } }
        clock.advance(by: 300)
        await waitUntil("reopened and half-open again") { watches.allSatisfy { $0.transitions.count >= 4 } }
        g = watches[0].transitions.last?.1 ?? 0
        permit = try await acquire(clients[2], "stripe", generation: g, as: "c2")
        XCTAssertTrue(permit.granted, permit.reason)
        _ = try await report(clients[2], batch(client: "c2", breaker: "stripe", generation: g, probes: [(permit.permitId, .success)]))
        await waitUntil("closed everywhere") { watches.allSatisfy { $0.transitions.count >= 5 } }
        let seen = watches.map { $0.transitions.map { "\($0.0):\($0.1)" } }
        XCTAssertEqual(seen[0], ["open:1", "halfOpen:2", "open:3", "halfOpen:4", "closed:5"])
        XCTAssertEqual(seen[1], seen[0])
        XCTAssertEqual(seen[2], seen[0])
        for w in watches { w.task.cancel() }
        for c in clients { await c.close() }
    }

    /// Exactly N permits are granted fleet-wide to 50 concurrent acquirers; an
    /// expired permit counts as a failed probe.
    func testPermitBoundUnderFiftyConcurrentAcquirers() async throws {
        try await putFleetPolicy(admin, permits: 3, openMs: 200, maxWaitMs: 400)
        let reporter = try server.client("reporter", group: group)
        _ = try await report(reporter, batch(client: "a", breaker: "db", generation: 0, failure: 10))
        clock.advance(by: 199)
        XCTAssertEqual(server.app.authority.views(BreakerSelector(registry: "default", prefix: "db")).first?.status.state, .open)
        clock.advance(by: 1)
        await waitUntil("half-open") { server.app.authority.views(BreakerSelector(registry: "default", prefix: "db")).first?.status.state == .halfOpen }
        let generation = server.app.authority.views(BreakerSelector(registry: "default", prefix: "db")).first?.status.generation.value ?? 0
        let clients = try (0..<5).map { _ in try server.client("reporter", group: group) }
        let granted = try await withThrowingTaskGroup(of: Bool.self) { tasks in
            for i in 0..<50 {
                tasks.addTask { try await acquire(clients[i % 5], "db", generation: generation, as: "acq\(i)").granted }
            }
            return try await tasks.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        XCTAssertEqual(granted, 3)
        // Nobody reports: the permits expire and count as a failed probe.
        clock.advance(by: 400)
        await waitUntil("reopened by permit expiry") { server.app.authority.views(BreakerSelector(registry: "default", prefix: "db")).first?.status.state == .open }
        XCTAssertTrue(server.app.authority.views(BreakerSelector(registry: "default", prefix: "db")).first?.status.reason.contains("expired") == true)
        for c in clients + [reporter] { await c.close() }
    }

    /// Failures from one client alone do not trip a breaker that needs two.
    func testQuorumNeedsTwoClients() async throws {
        try await putFleetPolicy(admin, name: "quorum", minimumClients: 2)
        let reporter = try server.client("reporter", group: group)
        _ = try await report(reporter, batch(client: "sick-host", breaker: "search", policy: "quorum", generation: 0, failure: 50))
        XCTAssertEqual(server.app.authority.views(BreakerSelector(registry: "default", prefix: "search")).first?.status.state, .closed)
        _ = try await report(reporter, batch(client: "other-host", breaker: "search", policy: "quorum", generation: 0, failure: 1))
        XCTAssertEqual(server.app.authority.views(BreakerSelector(registry: "default", prefix: "search")).first?.status.state, .open)
        await reporter.close()
    }

    /// The server counts the clients whose last batch said LOCAL.
    func testClientsSayingTheyRunLocallyAreCounted() async throws {
        try await putFleetPolicy(admin, name: "fleet")
        let reporter = try server.client("reporter", group: group)
        var local = batch(client: "cut-off", breaker: "ok", generation: 0, success: 1)
        local.breakers = []
        local.mode = .local
        local.incarnation = 1
        local.sequence = 1
        _ = try await report(reporter, local)
        XCTAssertEqual(server.app.coordinator?.localModeClients(), 1)
        var back = local
        back.mode = .fleet
        back.sequence = 2
        _ = try await report(reporter, back)
        XCTAssertEqual(server.app.coordinator?.localModeClients(), 0)
        await reporter.close()
    }

    /// Refused entries are named by their index in the request as sent, in
    /// request order, even when an entry before them was refused on its own.
    func testRefusedEntriesAreNamedByTheirIndexAsSent() async throws {
        try await putFleetPolicy(admin, name: "fleet")
        let reporter = try server.client("reporter", group: group)
        var b = batch(client: "indexer", breaker: "ok", generation: 0, success: 1)
        var badName = b.breakers[0]
        badName.breaker = ref("no spaces allowed")
        var unknownPolicy = b.breakers[0]
        unknownPolicy.breaker = ref("elsewhere")
        unknownPolicy.policy = "no-such-policy"
        var unknownPolicy2 = unknownPolicy
        unknownPolicy2.breaker = ref("elsewhere-2")
        // A first report must name the policy to bind: breaker.proto calls `policy` required then.
        var noPolicy = unknownPolicy
        noPolicy.breaker = ref("never-seen")
        noPolicy.policy = ""
        b.breakers = [badName, b.breakers[0]] + Array(repeating: b.breakers[0], count: 8) + [unknownPolicy, unknownPolicy2, noPolicy]
        let response = try await report(reporter, b)
        XCTAssertEqual(
            response.rejected.map(\.field), ["breakers[0].breaker.name", "breakers[10].policy", "breakers[11].policy", "breakers[12].policy"],
            "\(response.rejected)")
        XCTAssertEqual(response.accepted, 9)
        await reporter.close()
    }

    /// One INVALID_ARGUMENT lists every problem of the request, in field
    /// order (common.proto), not only the first one found.
    func testEveryProblemOfARequestIsListed() async throws {
        func violations<Request: WireMessage, Response: WireMessage>(
            _ service: String, _ method: String, _ request: Request, as: Response.Type
        ) async throws -> [String] {
            do throws(RPCError) {
                _ = try await admin.unary(service, method, request, as: Response.self)
                XCTFail("\(method) accepted \(request)")
                return []
            } catch {
                XCTAssertEqual(error.code, .invalidArgument, error.message)
                let bytes = try XCTUnwrap(error.metadata.firstBinary("fusebox-error-details-bin"), error.message)
                return try Fusebox_V1_ErrorDetails(decoding: bytes).violations.map(\.field)
            }
        }
        var force = Fusebox_V1_OverrideRequest()
        force.breaker = Fusebox_V1_BreakerRef()
        force.breaker?.registry = "no spaces"
        force.reason = "   "
        let forceFields = try await violations("fusebox.v1.AdminService", "ForceOpen", force, as: Fusebox_V1_AdminActionResponse.self)
        XCTAssertEqual(forceFields, ["breaker.registry", "breaker.name", "reason"])
        var reset = Fusebox_V1_ResetRequest()
        reset.reason = String(repeating: "x", count: 2_000)
        let resetFields = try await violations("fusebox.v1.AdminService", "Reset", reset, as: Fusebox_V1_AdminActionResponse.self)
        XCTAssertEqual(resetFields, ["breaker.name", "reason"])
        var audit = Fusebox_V1_ListAuditRequest()
        audit.actions = [.forceOpen, .unspecified]
        audit.limit = 5_000
        let auditFields = try await violations("fusebox.v1.AdminService", "ListAudit", audit, as: Fusebox_V1_ListAuditResponse.self)
        XCTAssertEqual(auditFields, ["actions[1]", "limit"])
        var list = Fusebox_V1_ListBreakersRequest()
        list.registry = "a/b"
        list.pageSize = 1_001
        list.pageToken = "no-slash"
        let listFields = try await violations("fusebox.v1.BreakerService", "ListBreakers", list, as: Fusebox_V1_ListBreakersResponse.self)
        XCTAssertEqual(listFields, ["registry", "page_size", "page_token"])
        var put = Fusebox_V1_PutPolicyRequest()
        put.registry = ""
        put.reason = String(repeating: "y", count: 2_000)
        let putFields = try await violations("fusebox.v1.RegistryService", "PutPolicy", put, as: Fusebox_V1_PutPolicyResponse.self)
        XCTAssertEqual(putFields, ["registry", "policy", "reason"])
        // The invalid attempt is audited with everything it asked for.
        var filter = Fusebox_V1_ListAuditRequest()
        filter.actions = [.forceOpen]
        let entries = try await admin.unary("fusebox.v1.AdminService", "ListAudit", filter, as: Fusebox_V1_ListAuditResponse.self).entries
        let refused = try XCTUnwrap(entries.first)
        XCTAssertFalse(refused.allowed)
        XCTAssertTrue(refused.deniedReason.hasPrefix("invalid: breaker.registry: "), refused.deniedReason)
        XCTAssertTrue(refused.deniedReason.contains("; reason: required for ForceOpen"), refused.deniedReason)
    }

    func testOverridesExpiryAndShadow() async throws {
        try await putFleetPolicy(admin)
        var request = Fusebox_V1_OverrideRequest()
        request.breaker = ref("payments")
        request.policy = "fleet"
        request.reason = "incident 7"
        request.durationMs = 300
        let forced = try await admin.unary("fusebox.v1.AdminService", "ForceOpen", request, as: Fusebox_V1_AdminActionResponse.self)
        XCTAssertEqual(forced.after?.state, .forcedOpen)
        XCTAssertEqual(forced.after?.policy, "fleet")
        clock.advance(by: 300)
        await waitUntil("override lifted by itself") { server.app.authority.views(BreakerSelector(registry: "default", prefix: "payments")).first?.status.state == .closed }
        // Shadow: reports that would trip publish "would open" but never block.
        request.durationMs = 0
        request.reason = "tuning"
        _ = try await admin.unary("fusebox.v1.AdminService", "Shadow", request, as: Fusebox_V1_AdminActionResponse.self)
        let reporter = try server.client("reporter", group: group)
        let g = server.app.authority.views(BreakerSelector(registry: "default", prefix: "payments")).first?.status.generation.value ?? 0
        let response = try await report(reporter, batch(client: "x", breaker: "payments", generation: g, failure: 20))
        XCTAssertEqual(response.states.first?.state, .shadow)
        XCTAssertEqual(response.states.first?.evaluatedState, .open, "shadow reports the state it would take")
        // ForceOpen needs a reason.
        request.reason = ""
        do throws(RPCError) {
            _ = try await admin.unary("fusebox.v1.AdminService", "ForceOpen", request, as: Fusebox_V1_AdminActionResponse.self)
            XCTFail("a reason is required")
        } catch {
            XCTAssertEqual(error.code, .invalidArgument)
        }
        await reporter.close()
    }

    /// A reporter cannot force-open; a caller without a certificate is refused
    /// at the handshake; the audit log shows the denied action.
    func testAuthorizationAndAudit() async throws {
        try await putFleetPolicy(admin)
        let reporter = try server.client("reporter", group: group)
        var request = Fusebox_V1_OverrideRequest()
        request.breaker = ref("payments")
        request.policy = "fleet"
        request.reason = "not allowed"
        request.durationMs = 60_000
        do throws(RPCError) {
            _ = try await reporter.unary("fusebox.v1.AdminService", "ForceOpen", request, as: Fusebox_V1_AdminActionResponse.self)
            XCTFail("a reporter must not force-open")
        } catch {
            XCTAssertEqual(error.code, .permissionDenied)
            XCTAssertTrue(error.message.hasPrefix("missing role admin"), error.message)
            XCTAssertEqual(error.metadata.first("fusebox-missing-role"), "admin")
        }
        let anonymous = try server.client(nil, group: group)
        do throws(RPCError) {
            _ = try await anonymous.unary("fusebox.v1.RegistryService", "ListRegistries", Fusebox_V1_ListRegistriesRequest(), as: Fusebox_V1_ListRegistriesResponse.self)
            XCTFail("no certificate must be refused")
        } catch {
            XCTAssertEqual(error.code, .unavailable)
            XCTAssertTrue(error.message.contains("client certificate"), error.message)
        }
        var filter = Fusebox_V1_ListAuditRequest()
        filter.deniedOnly = true
        let audit = try await admin.unary("fusebox.v1.AdminService", "ListAudit", filter, as: Fusebox_V1_ListAuditResponse.self)
        let denied = try XCTUnwrap(audit.entries.first { $0.action == .forceOpen })
        XCTAssertEqual(denied.actor?.commonName, "fusebox-reporter")
        XCTAssertFalse(denied.allowed)
        XCTAssertTrue(denied.deniedReason.contains("missing role admin"))
        XCTAssertEqual(denied.durationMs, 60_000, "a denied override's entry says how long it was asked for")
        var refusalAudited = false
        for _ in 0..<200 where !refusalAudited {
            let entries = try await admin.unary("fusebox.v1.AdminService", "ListAudit", filter, as: Fusebox_V1_ListAuditResponse.self).entries
            refusalAudited = entries.contains { $0.action == .connectionRefused && $0.deniedReason.contains("client sent no certificate") }
            try await Task.sleep(for: .milliseconds(20))
        }
        XCTAssertTrue(refusalAudited, "the refused handshake is in the audit log")

        // Reads through AdminService are audited too: allowed, denied and invalid ListAudit, and GetClusterStatus.
        _ = try await reporter.unary(
            "fusebox.v1.AdminService", "GetClusterStatus", Fusebox_V1_GetClusterStatusRequest(), as: Fusebox_V1_ClusterStatus.self)
        var invalid = Fusebox_V1_ListAuditRequest()
        invalid.limit = 1_000_000
        do {
            _ = try await admin.unary("fusebox.v1.AdminService", "ListAudit", invalid, as: Fusebox_V1_ListAuditResponse.self)
            XCTFail("a limit of 1,000,000 was accepted")
        } catch {
            XCTAssertEqual(error.code, .invalidArgument)
        }
        var reads = Fusebox_V1_ListAuditRequest()
        reads.actions = [.listAudit, .getClusterStatus]
        let before = try await admin.unary("fusebox.v1.AdminService", "ListAudit", reads, as: Fusebox_V1_ListAuditResponse.self).entries
        let after = try await admin.unary("fusebox.v1.AdminService", "ListAudit", reads, as: Fusebox_V1_ListAuditResponse.self).entries
        XCTAssertEqual(after.count, before.count + 1, "the first read was not audited (or an answer listed its own read)")
        XCTAssertTrue(
            after.contains { $0.action == .getClusterStatus && $0.allowed && $0.actor?.commonName == "fusebox-reporter" },
            "GetClusterStatus not audited: \(after.map { ($0.action, $0.allowed) })")
        XCTAssertTrue(after.contains { $0.action == .listAudit && !$0.allowed && $0.deniedReason.hasPrefix("invalid: ") })
        XCTAssertTrue(after.contains { $0.action == .listAudit && $0.allowed && $0.actor?.commonName == "fusebox-admin" })
        await reporter.close()
        await anonymous.close()
    }
}

func acquire(_ client: RPCClient, _ name: String, generation: UInt64, as clientID: String) async throws -> Fusebox_V1_AcquirePermitResponse {
    var request = Fusebox_V1_AcquirePermitRequest()
    request.breaker = ref(name)
    request.clientId = clientID
    request.generation = generation
    return try await client.unary("fusebox.v1.BreakerService", "AcquirePermit", request, as: Fusebox_V1_AcquirePermitResponse.self)
}
