import Foundation
import FuseboxRPC
import FuseboxTesting
import FuseboxWire
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// The chaos suite: five SDK processes under steady load against a real
/// fuseboxd that is killed, frozen or starved of disk. Each scenario prints
/// one `CHAOS name: …` line of figures (docs/CHAOS.md) and asserts the goals:
/// no guarded call blocked past its attempt timeout by the outage, no
/// acknowledged write lost, every client back on the server's breaker
/// states, and a server that recovers by itself.
///
/// Run with `swift test --filter ChaosTests` (about 2 minutes, debug build).
final class ChaosTests: XCTestCase {
    private var fleet: ChaosFleet?
    private var directory = ""

    override func setUp() async throws {
        directory =
            FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-chaos-\(UUID().uuidString)").path
    }

    override func tearDown() async throws {
        await fleet?.tearDown()
        fleet = nil
        try? FileManager.default.removeItem(atPath: directory)
    }

    // MARK: 1. kill -9, ten times

    /// fuseboxd is killed (SIGKILL) and restarted on the same port and data
    /// directory ten times while the services call and an admin writes
    /// policies. After each restart an operator's ForceOpen must reach all
    /// five services; afterwards every acknowledged write is there, also
    /// after one more kill.
    func testKillNineTenTimes() async throws {
        let watchdog = TestWatchdog("ChaosTests.testKillNineTenTimes", limit: .seconds(170))
        defer { watchdog.disarm() }
        let fleet = try ChaosFleet(directory: directory)
        self.fleet = fleet
        try fleet.applyChaosPolicy()
        try fleet.startServices()
        let port = fleet.server.port
        let callsBefore = fleet.totalCalls()
        let writer = PolicyWriter()
        let writing = Task { await writer.run(fleet, registry: "chaos-kill9", prefix: "kill9") }

        var converged: [Double] = []
        var restarts: [Double] = []
        var lastAcknowledged: (generation: UInt64, action: String) = (0, "none")
        var overridesAcknowledged = 0
        for cycle in 1...10 {
            try await Task.sleep(for: .milliseconds(Int.random(in: 300...700)))  // steady load between kills
            fleet.server.stop(SIGKILL)
            let down = Date()
            fleet.server = try FuseboxdProcess(dataDirectory: fleet.dataDirectory, port: port)
            restarts.append(Date().timeIntervalSince(down))

            let sent = Date()
            let opened = try await fleet.forceOpen("chaos: kill -9 cycle \(cycle)")
            overridesAcknowledged += 1
            lastAcknowledged = (opened, "ForceOpen")
            guard let seconds = fleet.convergence(on: "FORCED_OPEN", generation: opened, since: sent, timeout: 15)
            else {
                XCTFail(
                    "cycle \(cycle): not every service saw the ForceOpen (generation \(opened)) within 15 s: "
                        + "\(fleet.firstSeen("FORCED_OPEN", generation: opened))")
                break
            }
            converged.append(seconds)
            lastAcknowledged = (try await fleet.reset("chaos: cycle \(cycle) over"), "Reset")
            overridesAcknowledged += 1
        }
        writer.stop()
        await writing.value
        let callsDuring = fleet.totalCalls() - callsBefore

        // One more crash, then read back: every acknowledged write survived.
        fleet.server.stop(SIGKILL)
        fleet.server = try FuseboxdProcess(dataDirectory: fleet.dataDirectory, port: port)
        let stored = try await fleet.policyNames("chaos-kill9")
        let lost = Set(writer.acked).subtracting(stored)
        let breaker = try await fleet.serverBreaker()
        let overrideLost = breaker.generation < lastAcknowledged.generation || breaker.state != .closed
        let blocked = fleet.blockedCalls()

        chaosFigure(
            "kill9x10",
            "restarts=\(restarts.count) blockedCalls=\(blocked.count) (of \(callsDuring) guarded calls, longest \(fleet.longestCallMs()) ms) "
                + "converge(all 5 see FORCED_OPEN) \(range(converged)) s, restart \(range(restarts)) s, "
                + "writes acked=\(writer.acked.count) lost=\(lost.count), overrides acked=\(overridesAcknowledged) lost=\(overrideLost ? 1 : 0)"
        )
        XCTAssertEqual(converged.count, 10, "every cycle's ForceOpen reached every service")
        XCTAssertLessThan(converged.max() ?? 0, 12, "a service took too long to follow the restarted server")
        XCTAssertEqual(blocked.count, 0, "guarded calls blocked past their attempt timeout: \(blocked.prefix(10))")
        XCTAssertTrue(lost.isEmpty, "acknowledged policy writes lost: \(lost.sorted().prefix(20))")
        XCTAssertGreaterThan(writer.acked.count, 50, "the writer hardly wrote: \(writer.refused.suffix(3))")
        XCTAssertFalse(
            overrideLost,
            "the last acknowledged override (\(lastAcknowledged.action), generation \(lastAcknowledged.generation)) is lost: server has \(breaker)"
        )
        // The load went on through the storm: about 5 × 50 calls a second, whatever fuseboxd did.
        XCTAssertGreaterThan(callsDuring, 500, "the services stopped calling during the storm")
    }

    // MARK: 2. SIGSTOP past the keepalive timeout

    /// fuseboxd freezes (SIGSTOP) while the breaker is HALF_OPEN fleet-wide,
    /// so every call needs a probe permit from the frozen server, for longer
    /// than keepalive + timeout + staleness; then it resumes (SIGCONT).
    /// No call may wait on the frozen server past its attempt timeout; the
    /// services go local, come back, and follow the server's next override.
    func testSIGSTOPPastTheKeepaliveTimeout() async throws {
        let watchdog = TestWatchdog("ChaosTests.testSIGSTOPPastTheKeepaliveTimeout", limit: .seconds(120))
        defer { watchdog.disarm() }
        let fleet = try ChaosFleet(directory: directory)
        self.fleet = fleet
        try fleet.applyChaosPolicy()
        try fleet.startServices()
        let writer = PolicyWriter()
        let writing = Task { await writer.run(fleet, registry: "chaos-stop", prefix: "stop") }

        // HALF_OPEN fleet-wide: the upstream fails until the breaker opens, then recovers;
        // 1,000 probes must pass one at a time, so HALF_OPEN outlasts the freeze below.
        _ = try upstream(fleet, "/fail")
        let tripped = try await eventuallyAsync(10) { try await fleet.serverBreaker().state == .open }
        _ = try upstream(fleet, "/recover")
        XCTAssertTrue(tripped, "the failing upstream did not open the breaker")
        let halfOpen = try await eventuallyAsync(10) { try await fleet.serverBreaker().state == .halfOpen }
        XCTAssertTrue(halfOpen, "the breaker did not half-open")
        let halfOpenGeneration = try await fleet.serverBreaker().generation
        XCTAssertNotNil(
            fleet.convergence(on: "HALF_OPEN", generation: halfOpenGeneration, since: Date(), timeout: 5),
            "not every service saw HALF_OPEN: \(fleet.firstSeen("HALF_OPEN", generation: halfOpenGeneration))")

        let stateAtStop = try await fleet.serverBreaker().state
        let blockedBefore = fleet.blockedCalls().count
        let pid = fleet.server.process.processIdentifier
        // Local mode comes about keepalive + timeout after the stop (the connection is
        // declared dead), plus the staleness bound from then: 3.3 s here.
        let frozenFor = 2 * ChaosFleet.keepalive + ChaosFleet.staleness + 2.5
        let callsBefore = fleet.totalCalls()
        kill(pid, SIGSTOP)
        let stopped = Date()
        let wentLocal = eventually(frozenFor) { ChaosFleet.serviceIDs.allSatisfy { fleet.mode($0) == "local" } }
        let toLocal = Date().timeIntervalSince(stopped)
        try await Task.sleep(for: .milliseconds(Int(max(0, frozenFor - toLocal) * 1000)))
        let callsWhileFrozen = fleet.totalCalls() - callsBefore
        kill(pid, SIGCONT)
        let resumed = Date()
        let backToFleet = eventually(15) { ChaosFleet.serviceIDs.allSatisfy { fleet.mode($0) == "fleet" } }
        let toFleet = Date().timeIntervalSince(resumed)

        let sent = Date()
        let opened = try await fleet.forceOpen("chaos: after SIGCONT")
        let converged = fleet.convergence(on: "FORCED_OPEN", generation: opened, since: sent, timeout: 15)
        let closedGeneration = try await fleet.reset("chaos: SIGSTOP over")
        writer.stop()
        await writing.value
        let stored = try await fleet.policyNames("chaos-stop")
        let lost = Set(writer.acked).subtracting(stored)
        let breaker = try await fleet.serverBreaker()
        let blocked = fleet.blockedCalls().dropFirst(blockedBefore)
        XCTAssertTrue(fleet.server.process.isRunning, "fuseboxd died")

        chaosFigure(
            "sigstop",
            "frozen=\(String(format: "%.1f", frozenFor)) s blockedCalls=\(blocked.count) (of \(callsWhileFrozen) guarded calls while frozen, longest \(fleet.longestCallMs()) ms) "
                + "local after \(wentLocal ? String(format: "%.2f", toLocal) : "never") s, fleet again \(backToFleet ? String(format: "%.2f", toFleet) : "never") s after SIGCONT, "
                + "converge(all 5 see FORCED_OPEN) \(converged.map { String(format: "%.2f", $0) } ?? "never") s, "
                + "writes acked=\(writer.acked.count) lost=\(lost.count)")
        XCTAssertEqual(
            stateAtStop, .halfOpen,
            "fuseboxd was not frozen while the breaker was HALF_OPEN: the permit path went untested")
        XCTAssertEqual(
            blocked.count, 0,
            "guarded calls waited on the frozen fuseboxd past their attempt timeout (\(ChaosFleet.attemptMs) ms + \(ChaosFleet.graceMs) ms): \(Array(blocked.prefix(10)))"
        )
        XCTAssertTrue(
            wentLocal,
            "the services did not go local while fuseboxd was frozen: \(ChaosFleet.serviceIDs.map { fleet.mode($0) ?? "?" })"
        )
        XCTAssertTrue(backToFleet, "the services did not return to fleet mode after SIGCONT")
        XCTAssertLessThan(toFleet, 12, "fleet mode came back too late")
        XCTAssertNotNil(
            converged,
            "not every service saw the ForceOpen after SIGCONT: \(fleet.firstSeen("FORCED_OPEN", generation: opened))")
        XCTAssertLessThan(converged ?? 0, 12)
        XCTAssertTrue(lost.isEmpty, "acknowledged policy writes lost: \(lost.sorted().prefix(20))")
        XCTAssertEqual(
            breaker.state, .closed,
            "the acknowledged Reset (generation \(closedGeneration)) is not in force: \(breaker)")
        XCTAssertGreaterThan(callsWhileFrozen, 100, "the services stopped calling while fuseboxd was frozen")
    }

    // MARK: 3. The data directory's disk fills up

    /// fuseboxd's data directory is on a 16 MB tmpfs, which is then filled.
    /// Writes must be refused with an error that says so (no crash, no
    /// acknowledged write lost), the services must not notice, and once
    /// space returns fuseboxd must take writes again by itself: same process,
    /// no restart. Then one kill -9 shows everything acknowledged is on disk.
    /// `command` as root: as it is when the tests run as root, else through `sudo -n`.
    static func privileged(_ command: [String]) -> [String] {
        getuid() == 0 ? command : ["sudo", "-n"] + command
    }

    func testDataDirectoryDiskFull() async throws {
        let mountPoint = directory + "/small-disk"
        // A hang ends the test process without running any defer: the watchdog leaves no mount behind either.
        let watchdog = TestWatchdog("ChaosTests.testDataDirectoryDiskFull", limit: .seconds(120)) {
            let r = try? runProcess(Self.privileged(["umount", "-l", mountPoint]), timeout: 10)
            return "umount -l \(mountPoint): \(r.map { "status \($0.status) \($0.output)" } ?? "did not run")"
        }
        defer { watchdog.disarm() }
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        // As root, or through sudo without a password; mode 1777 so fuseboxd can write there either way.
        let mounted = try runProcess(Self.privileged(["mount", "-t", "tmpfs", "-o", "size=16m,mode=1777", "tmpfs", mountPoint]), timeout: 20)
        guard mounted.status == 0 else {
            throw XCTSkip("cannot mount a size-limited tmpfs here (needs root, or sudo without a password): \(mounted.output)")
        }
        defer {
            // fuseboxd holds files on the mount: it must be gone before unmounting.
            self.fleet?.server.stop(SIGKILL)
            if (try? runProcess(Self.privileged(["umount", mountPoint]), timeout: 20))?.status != 0 {
                _ = try? runProcess(Self.privileged(["umount", "-l", mountPoint]), timeout: 20)
            }
        }
        let fleet = try ChaosFleet(directory: directory, dataDirectory: mountPoint + "/data")
        self.fleet = fleet
        try fleet.applyChaosPolicy()
        try fleet.startServices()
        let port = fleet.server.port
        let pid = fleet.server.process.processIdentifier
        var acked: [String] = []
        for i in 0..<20 {
            try await fleet.putPolicy("before-\(i)", registry: "chaos-disk", padding: 1_000)
            acked.append("before-\(i)")
        }

        // Fill the disk. Writes may still land in space SQLite already holds; keep writing until one is refused.
        let filler = mountPoint + "/filler"
        let filled = fill(filler, limitBytes: 32 << 20)
        let blockedBefore = fleet.blockedCalls().count
        let callsBefore = fleet.totalCalls()
        var refusal: RPCError?
        var writtenWhileFull = 0
        for i in 0..<400 where refusal == nil {
            do throws(RPCError) {
                try await fleet.putPolicy("full-\(i)", registry: "chaos-disk", padding: 1_000)
                acked.append("full-\(i)")
                writtenWhileFull += 1
            } catch {
                refusal = error
            }
        }
        var overrideRefusal: RPCError?
        do throws(RPCError) {
            _ = try await fleet.forceOpen("chaos: disk full", timeout: .seconds(5))
        } catch {
            overrideRefusal = error
        }
        let stateWhileFull = try await fleet.serverBreaker()
        // The upstream fails while the disk is full: the trip is decided but cannot be stored,
        // so it must not be published yet, and must be once the store takes writes again.
        _ = try upstream(fleet, "/fail")
        // The services go on calling against a server that cannot write.
        try await Task.sleep(for: .milliseconds(1_500))
        let aliveWhileFull = fleet.server.process.isRunning
        let modesWhileFull = ChaosFleet.serviceIDs.map { fleet.mode($0) ?? "?" }
        let tripVisibleWhileFull = fleet.firstSeen("OPEN", generation: stateWhileFull.generation + 1).values.contains {
            $0 != nil
        }

        // Space returns: the same process takes writes again, with nobody touching it.
        try? FileManager.default.removeItem(atPath: filler)
        let freed = Date()
        var recovered = false
        for i in 0..<150 where !recovered {
            do throws(RPCError) {
                try await fleet.putPolicy("after-\(i)", registry: "chaos-disk", padding: 1_000)
                acked.append("after-\(i)")
                recovered = true
            } catch {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        let recoverySeconds = Date().timeIntervalSince(freed)
        let samePid = fleet.server.process.isRunning && fleet.server.process.processIdentifier == pid
        let tripSeen = fleet.convergence(
            on: "OPEN", generation: stateWhileFull.generation + 1, since: freed, timeout: 15)
        _ = try upstream(fleet, "/recover")
        let sent = Date()
        let opened = try await fleet.forceOpen("chaos: disk has room again")
        let converged = fleet.convergence(on: "FORCED_OPEN", generation: opened, since: sent, timeout: 15)
        _ = try await fleet.reset("chaos: disk full over")
        let blocked = fleet.blockedCalls().dropFirst(blockedBefore)
        let callsDuring = fleet.totalCalls() - callsBefore

        // Everything acknowledged is there, in this process and after a crash.
        let storedLive = try await fleet.policyNames("chaos-disk")
        fleet.server.stop(SIGKILL)
        fleet.server = try FuseboxdProcess(dataDirectory: fleet.dataDirectory, port: port)
        let storedAfterCrash = try await fleet.policyNames("chaos-disk")
        let lost = Set(acked).subtracting(storedLive).union(Set(acked).subtracting(storedAfterCrash))

        chaosFigure(
            "diskfull",
            "filled=\(filled >> 10) KiB, writes acked after filling=\(writtenWhileFull) then refused: \(refusal.map { "\($0.code)" } ?? "never"), "
                + "server alive=\(aliveWhileFull) recovered without restart=\(recovered && samePid) after \(String(format: "%.2f", recoverySeconds)) s, "
                + "blockedCalls=\(blocked.count) (of \(callsDuring) guarded calls, longest \(fleet.longestCallMs()) ms), "
                + "trip published while full=\(tripVisibleWhileFull), reached all 5 \(tripSeen.map { String(format: "%.2f", $0) } ?? "never") s after space returned, converge(all 5 see FORCED_OPEN) \(converged.map { String(format: "%.2f", $0) } ?? "never") s, "
                + "writes acked=\(acked.count) lost=\(lost.count)")
        print(
            "CHAOS diskfull refusal: \(refusal.map { "\($0)" } ?? "none"); override refusal: \(overrideRefusal.map { "\($0)" } ?? "none")"
        )
        XCTAssertGreaterThan(filled, 0, "could not fill the disk")
        guard let refusal else {
            XCTFail("a full data directory never refused a write (\(writtenWhileFull) writes acknowledged)")
            return
        }
        XCTAssertEqual(refusal.code, .unavailable, "\(refusal)")
        XCTAssertTrue(
            refusal.message.contains("the disk holding the database") && refusal.message.contains("is full"),
            "the refusal does not say the disk is full: \(refusal)")
        XCTAssertEqual(
            overrideRefusal?.code, .unavailable,
            "a ForceOpen on a full disk: \(overrideRefusal.map { "\($0)" } ?? "acknowledged")")
        XCTAssertEqual(stateWhileFull.state, .closed, "a refused ForceOpen took effect: \(stateWhileFull)")
        XCTAssertTrue(aliveWhileFull, "fuseboxd died on a full disk: \(fleet.server.launched.stderrTail())")
        XCTAssertEqual(
            modesWhileFull, Array(repeating: "fleet", count: 5),
            "the services left fleet mode while only the disk was full")
        XCTAssertTrue(
            recovered,
            "fuseboxd did not take writes again within 15 s of the space returning: \(fleet.server.launched.stderrTail())"
        )
        XCTAssertTrue(samePid, "fuseboxd was restarted")
        XCTAssertFalse(tripVisibleWhileFull, "a transition the store had not taken was published")
        XCTAssertNotNil(
            tripSeen,
            "the trip decided while the disk was full never reached every service: \(fleet.firstSeen("OPEN", generation: stateWhileFull.generation + 1))"
        )
        XCTAssertNotNil(converged, "not every service saw the ForceOpen after the disk recovered")
        XCTAssertEqual(
            blocked.count, 0, "guarded calls blocked past their attempt timeout: \(Array(blocked.prefix(10)))")
        XCTAssertTrue(lost.isEmpty, "acknowledged writes lost: \(lost.sorted().prefix(20))")
    }

    // MARK: Helpers

    /// Writes zeros to `path` until the file system says it is full (or `limitBytes`); the bytes written.
    private func fill(_ path: String, limitBytes: Int) -> Int {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        let chunk = [UInt8](repeating: 0, count: 64 << 10)
        var written = 0
        while written < limitBytes {
            let n = chunk.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            written += n
        }
        // Smaller pieces, down to the last free page.
        while written < limitBytes {
            let n = chunk.withUnsafeBytes { write(fd, $0.baseAddress, 4096) }
            if n <= 0 { break }
            written += n
        }
        return written
    }

    private func upstream(_ fleet: ChaosFleet, _ path: String) throws -> String {
        let script = """
            import urllib.request, sys
            r = urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:\(fleet.upstreamPort)\(path)", method="POST", data=b""), timeout=5)
            sys.stdout.write(r.read().decode())
            """
        let r = try runProcess(["python3", "-c", script], timeout: 20)
        guard r.status == 0 else { throw ChaosFailure("upstream \(path) failed: \(r.output)") }
        return r.output
    }

    /// Polls an async condition every 20 ms for at most `timeout` seconds.
    private func eventuallyAsync(_ timeout: TimeInterval, _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return try await condition()
    }

    /// "min–max (median m)" of seconds.
    private func range(_ values: [Double]) -> String {
        guard let low = values.min(), let high = values.max() else { return "none" }
        let median = values.sorted()[values.count / 2]
        return String(format: "%.2f–%.2f (median %.2f)", low, high, median)
    }
}
