import FuseboxCore
import FuseboxAuthority
import PropertyBased
import Testing

@Suite struct ReporterLedgerTests {
    private let start = Timestamp(milliseconds: 1_000_000)

    private func at(_ ms: Int64) -> Timestamp { start.adding(milliseconds: ms) }

    @Test func aRestartedProcessWithTheSameClientIDStartsANewSequence() {
        var ledger = ReporterLedger()
        for sequence in UInt64(1)...50 {
            #expect(
                ledger.admit(client: "checkout-1", incarnation: 1_700_000_000_000_000, sequence: sequence, at: at(0))
                    == .fresh)
        }
        // Killed and restarted: a later start time, and the sequence begins at 1 again.
        #expect(
            ledger.admit(client: "checkout-1", incarnation: 1_700_000_005_000_000, sequence: 1, at: at(10)) == .fresh)
        #expect(
            ledger.admit(client: "checkout-1", incarnation: 1_700_000_005_000_000, sequence: 2, at: at(20)) == .fresh)
        #expect(ledger.count == 1)
    }

    @Test func clientsInLocalModeAreCountedUntilTheySayFleetLeaveOrAreForgotten() {
        var ledger = ReporterLedger(idleAfterMs: 1_000, forgetAfterMs: 10_000)
        _ = ledger.admit(client: "a", incarnation: 7, sequence: 1, local: true, at: at(0))
        _ = ledger.admit(client: "b", incarnation: 7, sequence: 1, local: true, at: at(0))
        _ = ledger.admit(client: "c", incarnation: 7, sequence: 1, at: at(0))
        #expect(ledger.localModeClients == 2)
        _ = ledger.admit(client: "a", incarnation: 7, sequence: 2, local: true, at: at(1))
        #expect(ledger.localModeClients == 2, "saying it again counts once")
        _ = ledger.admit(client: "a", incarnation: 7, sequence: 3, local: false, at: at(2))
        #expect(ledger.localModeClients == 1, "back in fleet mode")
        _ = ledger.admit(client: "b", incarnation: 6, sequence: 9, local: false, at: at(3))
        #expect(ledger.localModeClients == 1, "a replaced process's word does not count")
        ledger.farewell(client: "b", incarnation: 7)
        #expect(ledger.localModeClients == 0, "a client that said goodbye is not counted")
        _ = ledger.admit(client: "d", incarnation: 1, sequence: 1, local: true, at: at(4))
        #expect(ledger.localModeClients == 1)
        _ = ledger.silentReporters(at: at(20_000))
        #expect(ledger.localModeClients == 0, "forgotten clients are not counted")
    }

    @Test func aRetransmittedBatchIsADuplicate() {
        var ledger = ReporterLedger()
        #expect(ledger.admit(client: "a", incarnation: 7, sequence: 5, at: at(0)) == .fresh)
        #expect(ledger.admit(client: "a", incarnation: 7, sequence: 5, at: at(1)) == .duplicate)
        #expect(
            ledger.admit(client: "a", incarnation: 7, sequence: 3, at: at(2)) == .duplicate,
            "an older batch arriving late")
        #expect(ledger.admit(client: "a", incarnation: 7, sequence: 6, at: at(3)) == .fresh)
        // Sequence 0 disables the check: the same batch twice is counted twice.
        #expect(ledger.admit(client: "a", incarnation: 7, sequence: 0, at: at(4)) == .fresh)
        #expect(ledger.admit(client: "a", incarnation: 7, sequence: 0, at: at(5)) == .fresh)
        #expect(
            ledger.admit(client: "a", incarnation: 7, sequence: 6, at: at(6)) == .duplicate,
            "sequence 0 did not reset the check")
        // Another client's sequence is its own.
        #expect(ledger.admit(client: "b", incarnation: 7, sequence: 5, at: at(7)) == .fresh)
    }

    @Test func aReplacedIncarnationIsADuplicateAndItsFarewellIsIgnored() {
        var ledger = ReporterLedger()
        #expect(ledger.admit(client: "a", incarnation: 100, sequence: 1, at: at(0)) == .fresh)
        #expect(ledger.admit(client: "a", incarnation: 200, sequence: 1, at: at(1)) == .fresh)
        #expect(ledger.admit(client: "a", incarnation: 100, sequence: 2, at: at(2)) == .duplicate)
        #expect(
            ledger.admit(client: "a", incarnation: 100, sequence: 0, at: at(3)) == .duplicate,
            "sequence 0 does not excuse an old incarnation")
        ledger.farewell(client: "a", incarnation: 100)
        #expect(ledger.count == 1, "the replaced process's goodbye removed its successor")
        #expect(
            ledger.admit(client: "a", incarnation: 200, sequence: 1, at: at(4)) == .duplicate,
            "the successor's sequence was reset")
        #expect(ledger.admit(client: "a", incarnation: 200, sequence: 2, at: at(5)) == .fresh)
    }

    @Test func incarnationZeroChecksOnlyTheSequenceOfIncarnationZero() {
        var ledger = ReporterLedger()
        #expect(ledger.admit(client: "old-sdk", incarnation: 0, sequence: 4, at: at(0)) == .fresh)
        #expect(ledger.admit(client: "old-sdk", incarnation: 0, sequence: 4, at: at(1)) == .duplicate)
        #expect(
            ledger.admit(client: "old-sdk", incarnation: 0, sequence: 1, at: at(2)) == .duplicate,
            "as before incarnations existed")
        // A process that knows incarnations shares the id: neither disturbs the other's sequence.
        #expect(ledger.admit(client: "old-sdk", incarnation: 9, sequence: 1, at: at(3)) == .fresh)
        #expect(
            ledger.admit(client: "old-sdk", incarnation: 0, sequence: 5, at: at(4)) == .fresh,
            "incarnation 0 is not older than 9")
        #expect(ledger.admit(client: "old-sdk", incarnation: 0, sequence: 5, at: at(5)) == .duplicate)
        #expect(ledger.admit(client: "old-sdk", incarnation: 9, sequence: 2, at: at(6)) == .fresh)
        #expect(ledger.admit(client: "old-sdk", incarnation: 9, sequence: 2, at: at(7)) == .duplicate)
    }

    @Test func duplicatesStillCountAsBeingHeardFrom() {
        var ledger = ReporterLedger(idleAfterMs: 100, forgetAfterMs: 1_000)
        _ = ledger.admit(client: "a", incarnation: 1, sequence: 1, at: at(0))
        #expect(ledger.admit(client: "a", incarnation: 1, sequence: 1, at: at(500)) == .duplicate)
        #expect(ledger.lastReport(of: "a") == at(500))
        #expect(ledger.silentReporters(at: at(550)) == 0)
    }

    @Test func aFarewellRemovesTheClientFromTheSilentCount() {
        var ledger = ReporterLedger(idleAfterMs: 100, forgetAfterMs: 1_000)
        _ = ledger.admit(client: "a", incarnation: 5, sequence: 1, at: at(0))
        _ = ledger.admit(client: "b", incarnation: 5, sequence: 1, at: at(0))
        #expect(ledger.silentReporters(at: at(200)) == 2)
        _ = ledger.admit(client: "a", incarnation: 5, sequence: 2, at: at(200))
        ledger.farewell(client: "a", incarnation: 5)
        #expect(ledger.lastReport(of: "a") == nil)
        #expect(ledger.silentReporters(at: at(400)) == 1, "only b went silent; a said goodbye")
        // A farewell from a newer incarnation than the one held also forgets the client.
        ledger.farewell(client: "b", incarnation: 6)
        #expect(ledger.silentReporters(at: at(400)) == 0)
        #expect(ledger.count == 0)
    }

    @Test func aClientIsSilentAfterIdleAndForgottenAfterForget() {
        var ledger = ReporterLedger(idleAfterMs: 100, forgetAfterMs: 1_000)
        #expect(ledger.admit(client: "a", incarnation: 3, sequence: 9, at: at(0)) == .fresh)
        #expect(ledger.silentReporters(at: at(100)) == 0, "heard from within idleAfterMs")
        #expect(ledger.silentReporters(at: at(101)) == 1)
        #expect(ledger.silentReporters(at: at(1_000)) == 1, "heard from within forgetAfterMs")
        #expect(ledger.lastReport(of: "a") == at(0))
        #expect(ledger.silentReporters(at: at(1_001)) == 0)
        #expect(ledger.count == 0)
        #expect(ledger.lastReport(of: "a") == nil)
        // Forgotten: even an old sequence of the same incarnation counts again.
        #expect(ledger.admit(client: "a", incarnation: 3, sequence: 9, at: at(1_002)) == .fresh)
    }

    @Test func admittingPrunesExpiredClients() {
        var ledger = ReporterLedger(idleAfterMs: 10, forgetAfterMs: 100)
        for i in 0..<5 { _ = ledger.admit(client: "old-\(i)", incarnation: 1, sequence: 1, at: at(Int64(i))) }
        _ = ledger.admit(client: "new", incarnation: 1, sequence: 1, at: at(104))
        #expect(ledger.count == 2, "old-0…old-3 expired; old-4 was heard 100 ms ago, within forgetAfterMs")
        #expect(ledger.lastReport(of: "old-3") == nil)
        #expect(ledger.lastReport(of: "old-4") == at(4))
    }

    @Test func atCapacityTheLeastRecentlyHeardClientIsEvicted() {
        var ledger = ReporterLedger(capacity: 3)
        _ = ledger.admit(client: "a", incarnation: 1, sequence: 1, at: at(0))
        _ = ledger.admit(client: "b", incarnation: 1, sequence: 1, at: at(1))
        _ = ledger.admit(client: "c", incarnation: 1, sequence: 1, at: at(2))
        _ = ledger.admit(client: "a", incarnation: 1, sequence: 2, at: at(3))
        _ = ledger.admit(client: "d", incarnation: 1, sequence: 1, at: at(4))
        #expect(ledger.count == 3)
        #expect(ledger.lastReport(of: "b") == nil, "b was the least recently heard")
        #expect(ledger.lastReport(of: "a") == at(3))
        #expect(ledger.lastReport(of: "c") == at(2))
        #expect(ledger.lastReport(of: "d") == at(4))
    }

    @Test func outOfRangeSettingsAreBroughtIntoRange() {
        let ledger = ReporterLedger(idleAfterMs: -5, forgetAfterMs: -10, capacity: 0)
        #expect(ledger.idleAfterMs == 0)
        #expect(ledger.forgetAfterMs == 0)
        #expect(ledger.capacity == 1)
    }

    @Test func admissionsDoNotScanTheLedger() {
        // O(1) per admission: 200,000 admissions of 40,000 clients into 20,000 slots, so
        // every admission of a new client evicts one. A scan per admission (4·10⁹ steps)
        // would take minutes; the list takes about a second in a debug build.
        var ledger = ReporterLedger(capacity: 20_000)
        let elapsed = ContinuousClock().measure {
            for i in 0..<200_000 {
                _ = ledger.admit(
                    client: "client-\(i % 40_000)", incarnation: 1, sequence: UInt64(i / 40_000 + 1),
                    at: at(Int64(i / 1_000)))
            }
        }
        #expect(ledger.count == 20_000)
        #expect(elapsed < .seconds(20), "200,000 admissions took \(elapsed)")
    }

    /// Against a plain model (a dictionary, and a scan to find the least
    /// recently heard client): the same admissions, counts, last reports and
    /// silent counts for any sequence of operations on a moving clock, and
    /// never more than `capacity` clients.
    @Test func behavesLikeTheModelAndNeverExceedsItsCapacity() async {
        await propertyCheck(count: 300, input: Gen.int(in: 0...Int(Int32.max)).array(of: 1...300), Gen.int(in: 1...5)) {
            ops, capacity in
            var ledger = ReporterLedger(idleAfterMs: 300, forgetAfterMs: 1_000, capacity: capacity)
            var model = LedgerModel(idleAfterMs: 300, forgetAfterMs: 1_000, capacity: capacity)
            var now = start
            for op in ops {
                now = now.adding(milliseconds: Int64(op % 400) / 4)
                let client = "c\((op / 400) % 7)"
                let incarnation = UInt64((op / 2_800) % 4)
                let sequence = UInt64((op / 11_200) % 6)
                switch (op / 67_200) % 8 {
                case 0:
                    model.farewell(client, incarnation)
                    ledger.farewell(client: client, incarnation: incarnation)
                case 1:
                    #expect(ledger.silentReporters(at: now) == model.silent(now))
                default:
                    let expected = model.admit(client, incarnation, sequence, now)
                    #expect(
                        ledger.admit(client: client, incarnation: incarnation, sequence: sequence, at: now) == expected)
                }
                #expect(ledger.count <= capacity)
                #expect(ledger.count == model.reporters.count)
                for c in (0..<7).map({ "c\($0)" }) {
                    #expect(ledger.lastReport(of: c) == model.reporters[c]?.lastReportAt)
                }
            }
        }
    }
}

/// The ledger's rules written the obvious way, for comparison.
private struct LedgerModel {
    struct Reporter {
        var incarnation: UInt64
        var sequence: UInt64
        var sequenceOfZero: UInt64
        var lastReportAt: Timestamp
        var heard: Int
    }

    let idleAfterMs: Int64
    let forgetAfterMs: Int64
    let capacity: Int
    var reporters: [String: Reporter] = [:]
    var admissions = 0

    mutating func prune(_ now: Timestamp) {
        reporters = reporters.filter { now.milliseconds(since: $0.value.lastReportAt) <= forgetAfterMs }
    }

    mutating func admit(
        _ client: String, _ incarnation: UInt64, _ sequence: UInt64, _ now: Timestamp
    ) -> ReporterLedger.Admission {
        prune(now)
        admissions += 1
        guard var r = reporters[client] else {
            if reporters.count >= capacity, let oldest = reporters.min(by: { $0.value.heard < $1.value.heard }) {
                reporters[oldest.key] = nil
            }
            reporters[client] = Reporter(
                incarnation: incarnation, sequence: incarnation == 0 ? 0 : sequence,
                sequenceOfZero: incarnation == 0 ? sequence : 0,
                lastReportAt: now, heard: admissions)
            return .fresh
        }
        defer { reporters[client] = r }
        r.lastReportAt = now
        r.heard = admissions
        if incarnation == 0 {
            if sequence == 0 { return .fresh }
            if sequence <= r.sequenceOfZero { return .duplicate }
            r.sequenceOfZero = sequence
            return .fresh
        }
        if incarnation < r.incarnation { return .duplicate }
        if incarnation > r.incarnation {
            r.incarnation = incarnation
            r.sequence = sequence
            return .fresh
        }
        if sequence == 0 { return .fresh }
        if sequence <= r.sequence { return .duplicate }
        r.sequence = sequence
        return .fresh
    }

    mutating func farewell(_ client: String, _ incarnation: UInt64) {
        if let r = reporters[client], incarnation >= r.incarnation { reporters[client] = nil }
    }

    mutating func silent(_ now: Timestamp) -> Int {
        prune(now)
        return reporters.values.filter { now.milliseconds(since: $0.lastReportAt) > idleAfterMs }.count
    }
}
