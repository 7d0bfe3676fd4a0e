import Foundation
import FuseboxAPI
import FuseboxCore
import FuseboxRPC
import FuseboxTLS
import FuseboxTesting
import FuseboxWire
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import Logging
import XCTest

@testable import FuseboxClient

/// What the SDK puts on the wire when it reports, and how it reacts to a trip
/// below quorum, against a stand-in for fuseboxd's BreakerService that
/// records every batch and answers every failing breaker as below quorum.
final class OutcomeReportingTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var server: RPCServer!
    private var serving: Task<Void, any Error>?
    private let standIn = StandInBreakerService()
    private var work = ""

    override func setUp() async throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        work =
            FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-reporting-\(UUID().uuidString)").path
        var router = RPCRouter()
        standIn.register(on: &router)
        let tls = try TLSContextProvider(
            configuration: .server(
                certificateChainPath: TestCertificates.path("server.pem"),
                privateKeyPath: TestCertificates.path("server.key"),
                clientCAPath: TestCertificates.path("ca.pem")))
        server = RPCServer(configuration: RPCServerConfiguration(), router: router, tls: tls, group: group)
        _ = try await server.start()
        let server = self.server!
        serving = Task { try await server.serve() }
    }

    override func tearDown() async throws {
        await server?.shutdown()
        _ = try? await serving?.value
        try await group.shutdownGracefully()
        try? FileManager.default.removeItem(atPath: work)
    }

    struct Boom: Error {}

    /// The SDK's configuration for the stand-in, as `clientID`, with a reporter's certificate.
    func configuration(_ clientID: String) throws -> FuseboxConfiguration {
        FuseboxConfiguration(
            host: "127.0.0.1", port: server.port,
            tls: .client(
                trustRootsPath: try TestCertificates.path("ca.pem"),
                certificateChainPath: try TestCertificates.path("reporter.pem"),
                privateKeyPath: try TestCertificates.path("reporter.key")),
            clientID: clientID, cacheDirectory: work + "/cache")
    }

    func testFailuresBringATripBelowQuorumBackSoonAndShutdownSaysGoodbye() async throws {
        var configuration = try configuration("reporting-test")
        configuration.stalenessBound = .seconds(60)
        let changes = StateChanges()
        configuration.onStateChange = { change in changes.list.withLock { $0.append(change) } }
        let fusebox = try await Fusebox.start(configuration, group: group)
        XCTAssertEqual(fusebox.policySource, .server)
        let payments = fusebox.guard("payments", policy: "quorum")

        // Healthy calls: reported on the stream, which stays open (no failures, no rotation).
        for i in 0..<5 { _ = try await payments.run { i } }
        await waitUntil("the first batch reaches the stand-in") { !self.standIn.batches.isEmpty }
        try await Task.sleep(for: .milliseconds(400))
        XCTAssertEqual(standIn.streamResponses, 0, "the stream ended without a failure to report")

        // One failure: the stream ends soon after, and its response opens this client's breaker.
        let failed = ContinuousClock.now
        _ = try? await payments.run { () async throws -> Int in throw Boom() }
        await waitUntil("the trip below quorum comes back", timeout: 4) { payments.localOpenUntil != nil }
        let took = ContinuousClock.now - failed
        print("reporting: a failure came back as a local open after \(took)")
        XCTAssertLessThan(took, .seconds(2), "the trip below quorum waited for the 5 s stream rotation")
        do {
            _ = try await payments.run { 1 }
            XCTFail("a locally open breaker let a call through")
        } catch let e as GuardError {
            guard case .circuitOpen(let retryAfter) = e.kind else { return XCTFail("\(e)") }
            XCTAssertGreaterThan(retryAfter ?? .zero, .seconds(50))
        }
        XCTAssertEqual(payments.breakerState?.state, .closed)
        // The gate closes first, then the change is announced on the task that received the trip.
        await waitUntil("the local open is announced", timeout: 4) { changes.list.withLock { !$0.isEmpty } }
        let opened = changes.list.withLock { $0.last }
        XCTAssertEqual(opened?.clientOnly, true)
        XCTAssertEqual(opened?.to, .open)
        XCTAssertEqual(opened?.reason, "local open below quorum: \(StandInBreakerService.reason)")

        await fusebox.shutdown()
        let received = standIn.batches
        // Every batch names this run of the process; sequences go 1, 2, 3… without gaps.
        XCTAssertGreaterThan(fusebox.incarnation, 1_700_000_000_000_000)
        XCTAssertTrue(
            received.allSatisfy { $0.batch.incarnation == fusebox.incarnation }, "\(received.map(\.batch.incarnation))")
        XCTAssertTrue(received.allSatisfy { $0.batch.clientId == "reporting-test" })
        XCTAssertEqual(received.map(\.batch.sequence).sorted(), Array(1...UInt64(received.count)))
        // The last batch says goodbye, once, by unary call, after everything else; nothing was left to report.
        let last = try XCTUnwrap(received.last)
        XCTAssertTrue(last.batch.final)
        XCTAssertTrue(last.unary)
        XCTAssertTrue(last.batch.breakers.isEmpty)
        XCTAssertEqual(last.batch.sequence, UInt64(received.count))
        XCTAssertEqual(received.filter(\.batch.final).count, 1)
        let failures = received.flatMap(\.batch.breakers).reduce(UInt64(0)) { $0 + ($1.counts?.failure ?? 0) }
        let successes = received.flatMap(\.batch.breakers).reduce(UInt64(0)) { $0 + ($1.counts?.success ?? 0) }
        XCTAssertEqual(failures, 1)
        XCTAssertEqual(successes, 5)
    }
}

extension OutcomeReportingTests {
    /// Batches say the client's mode: FLEET with outcomes; in local mode
    /// (here: no watch ever opens, the staleness bound is 300 ms) a batch
    /// without outcomes says LOCAL, so the server counts it exactly.
    func testBatchesSayTheClientsMode() async throws {
        var configuration = try configuration("mode-test")
        configuration.stalenessBound = .milliseconds(300)
        let fusebox = try await Fusebox.start(configuration, group: group)
        _ = try await fusebox.guard("payments", policy: "quorum").run { 1 }
        await waitUntil("a LOCAL batch reaches the stand-in", timeout: 10) { self.standIn.batches.contains { $0.batch.mode == .local } }
        XCTAssertEqual(fusebox.mode, .local)
        let batches = standIn.batches
        let withOutcomes = batches.filter { !$0.batch.breakers.isEmpty }
        XCTAssertFalse(withOutcomes.isEmpty)
        XCTAssertTrue(withOutcomes.allSatisfy { $0.batch.mode == .fleet }, "\(withOutcomes.map(\.batch.mode))")
        XCTAssertTrue(batches.filter { $0.batch.mode == .local }.allSatisfy { $0.batch.breakers.isEmpty })
        await fusebox.shutdown()
    }

    /// A StreamOutcomes call that fails (here: UNAVAILABLE, as from a replica
    /// that lost its leader) loses no outcomes: its batches go out again on
    /// the next call, and none is counted twice.
    func testBatchesOfAFailedStreamAreSentAgainAndCountedOnce() async throws {
        standIn.refuseNextStreams(2)
        var configuration = try configuration("resending-test")
        configuration.reconnectBackoffBase = .milliseconds(10)
        configuration.reconnectBackoffMaximum = .milliseconds(50)
        let fusebox = try await Fusebox.start(configuration, group: group)
        let payments = fusebox.guard("payments", policy: "quorum")
        for i in 0..<30 {
            _ = try await payments.run { i }
            try await Task.sleep(for: .milliseconds(20))
        }
        await waitUntil("two stream calls refused") { self.standIn.refusedStreams == 2 }
        await fusebox.shutdown()
        let counted = standIn.batches
        let successes = counted.flatMap(\.batch.breakers).reduce(UInt64(0)) { $0 + ($1.counts?.success ?? 0) }
        XCTAssertEqual(successes, 30, "outcomes of the refused streams were lost")
        // Sent again with their own sequence numbers: 1, 2, 3… with no gap.
        XCTAssertEqual(counted.map(\.batch.sequence).sorted(), Array(1...UInt64(counted.count)))
        XCTAssertEqual(standIn.duplicates, 0, "batches the stand-in had counted were sent again")
    }

    /// The session as a Service: run by a ServiceGroup, ended by its graceful
    /// shutdown, which sends the goodbye and leaves no task running.
    func testTheSessionRunsInAServiceGroupAndGracefulShutdownSaysGoodbye() async throws {
        let tasksBefore = FleetSession.tasksRunning
        let configuration = try configuration("service-group-test")
        let fusebox = try await Fusebox.connect(configuration, group: group)
        let payments = fusebox.guard("payments", policy: "quorum")
        // Before the session runs, guards already work; nothing is reported yet.
        let answered = try await payments.run { 7 }
        XCTAssertEqual(answered, 7)
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertTrue(standIn.batches.isEmpty, "a session that is not running reported")

        let services = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: [.init(service: fusebox.session)], logger: Logger(label: "service-group-test")))
        let running = Task { try await services.run() }
        await waitUntil("the session's report reaches the stand-in") { !self.standIn.batches.isEmpty }
        XCTAssertGreaterThan(FleetSession.tasksRunning, tasksBefore, "the session's loops are not running as its children")

        await services.triggerGracefulShutdown()
        try await running.value
        XCTAssertEqual(FleetSession.tasksRunning, tasksBefore, "tasks of the session left running after it ended")
        let last = try XCTUnwrap(standIn.batches.last)
        XCTAssertTrue(last.batch.final, "graceful shutdown did not say goodbye")
        XCTAssertEqual(standIn.batches.filter(\.batch.final).count, 1)
        // shutdown() after the ServiceGroup ended the session returns at once and sends nothing more.
        let count = standIn.batches.count
        await fusebox.shutdown()
        XCTAssertEqual(standIn.batches.count, count)
    }
}

/// The state changes a client announced.
final class StateChanges: Sendable {
    let list = Mutex<[BreakerStateChange]>([])
}

/// Records every OutcomeBatch; answers each breaker with failures as a trip
/// below quorum (open 60 s). Serves policy "quorum" of registry "default".
final class StandInBreakerService: Sendable {
    struct Received: Sendable {
        var batch: Fusebox_V1_OutcomeBatch
        var unary: Bool
    }

    static let reason = "1 consecutive failures ≥ 1 from 1 client; only 1 of 2 required clients failing"

    private let received = Mutex<[Received]>([])
    private let responses = Mutex(0)
    /// StreamOutcomes calls still to refuse (UNAVAILABLE after their first
    /// batch, which is not counted), and how many were refused.
    private let refusing = Mutex((next: 0, done: 0))

    func refuseNextStreams(_ n: Int) { refusing.withLock { $0.next = n } }
    var refusedStreams: Int { refusing.withLock { $0.done } }
    /// Batches answered as duplicates (incarnation and sequence seen before), as fuseboxd does.
    private let seen = Mutex((keys: Set<[UInt64]>(), duplicates: 0))
    var duplicates: Int { seen.withLock { $0.duplicates } }

    /// True (and remembered) the first time a batch's incarnation and sequence come.
    private func fresh(_ batch: Fusebox_V1_OutcomeBatch) -> Bool {
        seen.withLock { s in
            guard s.keys.insert([batch.incarnation, batch.sequence]).inserted else {
                s.duplicates += 1
                return false
            }
            return true
        }
    }

    var batches: [Received] { received.withLock { $0 } }
    /// StreamOutcomes calls answered.
    var streamResponses: Int { responses.withLock { $0 } }

    func register(on router: inout RPCRouter) {
        router.unary("fusebox.v1.RegistryService", "GetRegistry") { (_: Fusebox_V1_GetRegistryRequest, _) in
            var policy = Policy(name: "quorum")
            var cb = CircuitBreakerPolicy()
            cb.consecutiveFailuresThreshold = 1
            cb.minimumClients = 2
            policy.circuitBreaker = cb
            var record = Fusebox_V1_PolicyRecord()
            record.policy = PolicyMapping.wire(policy)
            record.version = 1
            var snapshot = Fusebox_V1_RegistrySnapshot()
            snapshot.name = "default"
            snapshot.version = 1
            snapshot.policies = [record]
            return snapshot
        }
        router.unary("fusebox.v1.BreakerService", "ReportOutcomes") { (batch: Fusebox_V1_OutcomeBatch, _) in
            guard self.fresh(batch) else {
                var duplicate = Fusebox_V1_ReportOutcomesResponse()
                duplicate.duplicate = true
                return duplicate
            }
            self.received.withLock { $0.append(Received(batch: batch, unary: true)) }
            return Self.response(to: [batch])
        }
        router.clientStreaming("fusebox.v1.BreakerService", "StreamOutcomes") {
            (stream: RPCMessageStream<Fusebox_V1_OutcomeBatch>, _) in
            var batches: [Fusebox_V1_OutcomeBatch] = []
            for try await batch in stream {
                let refuse = self.refusing.withLock { r in
                    guard r.next > 0 else { return false }
                    r.next -= 1
                    r.done += 1
                    return true
                }
                if refuse { throw RPCError(.unavailable, "stand-in: this replica lost its leader") }
                guard self.fresh(batch) else { continue }
                self.received.withLock { $0.append(Received(batch: batch, unary: false)) }
                batches.append(batch)
            }
            self.responses.withLock { $0 += 1 }
            return Self.response(to: batches)
        }
    }

    private static func response(to batches: [Fusebox_V1_OutcomeBatch]) -> Fusebox_V1_ReportOutcomesResponse {
        var response = Fusebox_V1_ReportOutcomesResponse()
        for entry in batches.flatMap(\.breakers) {
            response.accepted += 1
            guard (entry.counts?.failure ?? 0) + (entry.counts?.slowFailure ?? 0) > 0 else { continue }
            var trip = Fusebox_V1_BelowQuorumTrip()
            trip.breaker = entry.breaker
            trip.reason = reason
            trip.openMs = 60_000
            trip.generation = entry.generation
            response.belowQuorum.append(trip)
        }
        return response
    }
}
