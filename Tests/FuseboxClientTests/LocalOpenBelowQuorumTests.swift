import Foundation
import FuseboxCore
import FuseboxRPC
import FuseboxTLS
import FuseboxTesting
import FuseboxWire
import Logging
import NIOCore
import NIOPosix
import PropertyBased
import Synchronization
import Testing

@testable import FuseboxClient

/// A client's own breaker, opened because its failures tripped a rule below
/// the fleet's quorum: the gate, with time passed in by hand.
@Suite struct LocalOpenGateTests {
    private let t = Timestamp(milliseconds: 1_800_000_000_000)

    @Test func rejectsWhatTheFleetWouldLetThroughUntilItsTime() {
        let gate = BreakerGate(state: .closed, generation: BreakerGeneration(3))
        #expect(gate.localOpenUntil == nil)
        #expect(gate.openLocally(until: t.adding(milliseconds: 1_000)))
        #expect(gate.admit(now: t) == .reject(state: .open, generation: BreakerGeneration(3)))
        #expect(gate.admit(now: t.adding(milliseconds: 999)) == .reject(state: .open, generation: BreakerGeneration(3)))
        #expect(
            gate.admit(now: t.adding(milliseconds: 1_000)) == .pass(generation: BreakerGeneration(3)),
            "still rejecting after its time")
        #expect(
            gate.snapshot == .init(state: .closed, generation: BreakerGeneration(3)),
            "a local open changed the fleet's state")
        #expect(gate.localOpenUntil == t.adding(milliseconds: 1_000))
    }

    @Test func appliesOverTheFleetsStatesButNotOverAnOperatorsOverride() {
        let gate = BreakerGate()
        gate.openLocally(until: t.adding(milliseconds: 60_000))
        let expected: [(BreakerState, BreakerGate.Admission)] = [
            (.halfOpen, .reject(state: .open, generation: BreakerGeneration(1))),
            (.open, .reject(state: .open, generation: BreakerGeneration(2))),
            (.forcedOpen, .reject(state: .forcedOpen, generation: BreakerGeneration(3))),
            (.forcedClosed, .pass(generation: BreakerGeneration(4))),
            (.disabled, .pass(generation: BreakerGeneration(5))),
            (.shadow, .pass(generation: BreakerGeneration(6))),
            (.closed, .reject(state: .open, generation: BreakerGeneration(7))),
        ]
        for (i, (state, admission)) in expected.enumerated() {
            #expect(gate.apply(state, generation: BreakerGeneration(UInt64(i + 1))))
            #expect(gate.admit(now: t) == admission, "fleet state \(state)")
        }
        // The local breaker of local mode moving the gate keeps the local open too.
        gate.force(.closed, generation: BreakerGeneration(2))
        #expect(gate.admit(now: t) == .reject(state: .open, generation: BreakerGeneration(2)))
        #expect(gate.localOpenUntil != nil)
    }

    @Test func extendsToTheLaterEndAndEndsOnlyWhenDue() {
        let gate = BreakerGate()
        #expect(gate.openLocally(until: t.adding(milliseconds: 1_000)))
        #expect(!gate.openLocally(until: t.adding(milliseconds: 500)), "an extension announced as a new open")
        #expect(gate.localOpenUntil == t.adding(milliseconds: 1_000), "a shorter trip cut the open short")
        #expect(!gate.openLocally(until: t.adding(milliseconds: 2_000)))
        #expect(gate.localOpenUntil == t.adding(milliseconds: 2_000))
        #expect(!gate.endLocalOpen(ifDueAt: t.adding(milliseconds: 1_999)))
        #expect(
            gate.admit(now: t.adding(milliseconds: 1_999)) == .reject(state: .open, generation: BreakerGeneration(0)))
        #expect(gate.endLocalOpen(ifDueAt: t.adding(milliseconds: 2_000)))
        #expect(gate.localOpenUntil == nil)
        #expect(!gate.endLocalOpen(ifDueAt: t.adding(milliseconds: 3_000)), "ended twice")
        #expect(gate.admit(now: t) == .pass(generation: BreakerGeneration(0)), "rejecting after the local open ended")
        #expect(gate.openLocally(until: t.adding(milliseconds: 5_000)), "a new trip after the end is a new open")
    }

    /// Whatever order concurrent pushes arrive in, the gate ends at the newest
    /// generation and a local open made meanwhile is not lost.
    @Test func concurrentPushesKeepTheLocalOpen() async {
        let t = self.t
        await propertyCheck(count: 50, input: Gen.int(in: 1...1_000).array(of: 1...200), Gen.int(in: 0...199)) {
            generations, at in
            let gate = BreakerGate()
            await withTaskGroup(of: Void.self) { group in
                for (i, g) in generations.enumerated() {
                    group.addTask {
                        gate.apply(g % 2 == 0 ? .halfOpen : .closed, generation: BreakerGeneration(UInt64(g)))
                    }
                    if i == at % generations.count {
                        group.addTask { gate.openLocally(until: t.adding(milliseconds: 1_000)) }
                    }
                }
            }
            let newest = UInt64(generations.max() ?? 0)
            #expect(gate.snapshot.generation == BreakerGeneration(newest))
            #expect(gate.localOpenUntil == t.adding(milliseconds: 1_000))
            #expect(gate.admit(now: t) == .reject(state: .open, generation: BreakerGeneration(newest)))
        }
    }

    @Test func theSharedBreakerAnnouncesTheOpenAndItsEndAndTellsWhenToRetry() {
        let breaker = SharedBreaker(registry: "default", name: "payments", policyName: "p")
        breaker.applyFleet(
            BreakerStatus(
                state: .closed, evaluatedState: .closed, generation: BreakerGeneration(4), since: t, reason: ""))
        let open = breaker.openBelowQuorum(until: t.adding(milliseconds: 1_500))
        #expect(open?.from == .closed && open?.to == .open)
        #expect(breaker.openBelowQuorum(until: t.adding(milliseconds: 1_500)) == nil, "an extension announced twice")
        #expect(breaker.retryAfter(now: t.adding(milliseconds: 500)) == .milliseconds(1_000))
        #expect(breaker.endBelowQuorumOpen(now: t.adding(milliseconds: 1_499)) == nil)
        let ended = breaker.endBelowQuorumOpen(now: t.adding(milliseconds: 1_500))
        #expect(ended?.from == .open && ended?.to == .closed)
        #expect(breaker.retryAfter(now: t.adding(milliseconds: 1_500)) == nil)
    }
}

/// The SDK's handling of ReportOutcomes responses, through FleetSession (no
/// server: the link is not started, responses are handed to it).
final class BelowQuorumResponseTests: Sendable {
    private let group = MultiThreadedEventLoopGroup.singleton
    private let changes = Mutex<[BreakerStateChange]>([])
    private let logs = LogRecorder()

    private func makeLink() throws -> FleetSession {
        let tls = FuseboxTLS.client(
            trustRootsPath: try TestCertificates.path("ca.pem"),
            certificateChainPath: try TestCertificates.path("reporter.pem"),
            privateKeyPath: try TestCertificates.path("reporter.key"))
        var configuration = FuseboxConfiguration(
            host: "127.0.0.1", port: 1, tls: tls, clientID: "sick-host",
            cacheDirectory: FileManager.default.temporaryDirectory.path)
        configuration.onStateChange = { change in self.changes.withLock { $0.append(change) } }
        var policy = Policy(name: "guarded")
        var cb = CircuitBreakerPolicy()
        cb.consecutiveFailuresThreshold = 3
        cb.minimumClients = 2
        policy.circuitBreaker = cb
        let snapshot = PolicySnapshot(
            registries: ["default": ["guarded": policy]], versions: ["default": 1], source: .server)
        let client = try RPCClient(
            configuration: RPCClientConfiguration(host: "127.0.0.1", port: 1, tls: tls.transport), group: group)
        let logger = Logger(label: "below-quorum-test") { _ in self.logs.handler() }
        return FleetSession(
            configuration: configuration, client: RPCFailoverClient(client), eventLoop: group.next(), policies: snapshot, logger: logger)
    }

    private func trip(_ name: String, openMs: UInt32, generation: UInt64 = 0) -> Fusebox_V1_ReportOutcomesResponse {
        var trip = Fusebox_V1_BelowQuorumTrip()
        var ref = Fusebox_V1_BreakerRef()
        ref.registry = "default"
        ref.name = name
        trip.breaker = ref
        trip.reason = "3 consecutive failures ≥ 3 from 1 client; only 1 of 2 required clients failing"
        trip.openMs = openMs
        trip.generation = generation
        var response = Fusebox_V1_ReportOutcomesResponse()
        response.belowQuorum = [trip]
        return response
    }

    struct Called: Error {}

    @Test func aTripBelowQuorumOpensOnlyThisClientsBreakerForItsPeriod() async throws {
        let link = try makeLink()
        let payments = link.makeGuard("payments", policy: "guarded", registry: "default")
        let ledger = link.makeGuard("ledger", policy: "guarded", registry: "default")
        #expect(try await payments.run { 1 } == 1)

        let now = wallNow()
        link.reporter.apply(trip("payments", openMs: 60_000), now: now)

        // The guard rejects as circuit open, with when to retry, without calling the operation.
        do {
            _ = try await payments.run { () async throws -> Int in throw Called() }
            Issue.record("a locally open breaker let a call through")
        } catch let e as GuardError {
            guard case .circuitOpen(let retryAfter) = e.kind else { Issue.record("\(e)"); return }
            #expect(e.breaker == "payments")
            #expect(
                (retryAfter ?? .zero) > .seconds(55) && (retryAfter ?? .zero) <= .seconds(60),
                "retryAfter \(String(describing: retryAfter))")
        }
        #expect(payments.breakerState?.state == .closed, "the fleet's state changed")
        #expect(payments.localOpenUntil == now.adding(milliseconds: 60_000))
        #expect(try await ledger.run { 2 } == 2, "another breaker of the same client was opened")

        // Announced like a transition, as this client's alone, and logged with its reason.
        let opened = changes.withLock { $0 }
        #expect(opened.count == 1)
        #expect(opened.first?.breaker == "payments" && opened.first?.from == .closed && opened.first?.to == .open)
        #expect(opened.first?.clientOnly == true)
        #expect(
            opened.first?.reason
                == "local open below quorum: 3 consecutive failures ≥ 3 from 1 client; only 1 of 2 required clients failing"
        )
        #expect(logs.messages(at: .notice).contains { $0.hasPrefix("local open below quorum: 3 consecutive failures") })

        // A second trip while open extends it without a second announcement.
        link.reporter.apply(trip("payments", openMs: 90_000), now: now)
        #expect(payments.localOpenUntil == now.adding(milliseconds: 90_000))
        #expect(changes.withLock { $0.count } == 1)

        // Its time comes: the reporter's tick announces the end, and calls follow the fleet (CLOSED) again.
        link.localMode.endLocalOpens(now: now.adding(milliseconds: 89_999))
        #expect(payments.localOpenUntil != nil)
        link.localMode.endLocalOpens(now: now.adding(milliseconds: 90_000))
        #expect(payments.localOpenUntil == nil)
        let ended = changes.withLock { $0.last }
        #expect(ended?.from == .open && ended?.to == .closed && ended?.clientOnly == true)
        #expect(try await payments.run { 3 } == 3)
        #expect(changes.withLock { $0.count } == 2)
    }

    @Test func unknownBreakersAndTripsWithoutAPeriodAreIgnoredAndDuplicatesOnlyLogged() async throws {
        let link = try makeLink()
        let payments = link.makeGuard("payments", policy: "guarded", registry: "default")
        link.reporter.apply(trip("not-guarded-here", openMs: 60_000))
        link.reporter.apply(trip("payments", openMs: 0))
        var duplicate = Fusebox_V1_ReportOutcomesResponse()
        duplicate.duplicate = true
        link.reporter.apply(duplicate)
        #expect(payments.localOpenUntil == nil)
        #expect(changes.withLock { $0.isEmpty })
        #expect(try await payments.run { 1 } == 1)
        #expect(logs.messages(at: .debug).contains { $0.contains("not counted again") })
        #expect(logs.messages(at: .warning).isEmpty && logs.messages(at: .notice).isEmpty)
    }

    @Test func theIncarnationIsTheStartTimeInMicroseconds() {
        #expect(FleetSession.startIncarnation(now: Date(timeIntervalSince1970: 1_800_000_000.25)) == 1_800_000_000_250_000)
        let first = FleetSession.startIncarnation()
        let restarted = FleetSession.startIncarnation(now: Date().addingTimeInterval(0.001))
        #expect(restarted > first)
    }
}

/// Collects log lines, for asserting what the SDK logged.
final class LogRecorder: Sendable {
    private let lines = Mutex<[(Logger.Level, String)]>([])

    func record(_ level: Logger.Level, _ message: String) {
        lines.withLock { $0.append((level, message)) }
    }

    func messages(at level: Logger.Level) -> [String] {
        lines.withLock { $0.filter { $0.0 == level }.map(\.1) }
    }

    func handler() -> Handler { Handler(recorder: self) }

    struct Handler: LogHandler {
        let recorder: LogRecorder
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            recorder.record(event.level, "\(event.message)")
        }
    }
}
