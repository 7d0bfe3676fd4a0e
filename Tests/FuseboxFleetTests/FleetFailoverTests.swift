import Foundation
import FuseboxTesting
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// Several independent fuseboxd processes given to the SDK and the CLI as one
/// endpoint list (until fuseboxd replicates, each holds its own state): when
/// the one in use dies, clients carry on with the next.
final class FleetFailoverTests: XCTestCase {
    private var fleet: Fleet?

    override func tearDown() async throws {
        fleet?.tearDown()
    }

    func testAServiceFailsOverWhenItsFuseboxdIsKilledAndFollowsTheOther() throws {
        try failover(stopping: SIGKILL)
    }

    /// SIGTERM: fuseboxd shuts down gracefully (GOAWAY, watches ended).
    func testAServiceFailsOverWhenItsFuseboxdShutsDown() throws {
        try failover(stopping: SIGTERM)
    }

    /// Two fuseboxd, a service given both; `signal` stops the first, which the
    /// service uses; it must carry on with the second.
    private func failover(stopping signal: Int32) throws {
        let fleet = try Fleet()
        self.fleet = fleet
        let first = fleet.server
        let second = try FuseboxdProcess(dataDirectory: fleet.directory + "/data-second")
        fleet.otherServers.append(second)
        let secondAddress = "127.0.0.1:\(second.port)"
        try fleet.apply(fleetPolicy)
        try fleet.apply(fleetPolicy, server: secondAddress)

        let id = "svc-failover"
        let service = try fleet.startService(id, staleness: 2, servers: "127.0.0.1:\(first.port),\(secondAddress)")
        let started = service.waitForLine(timeout: 30) { $0.contains("\"event\":\"started\"") }
        XCTAssertTrue(
            started?.contains("\"source\":\"server\"") ?? false,
            "did not start from the server: \(service.stderrTail())")
        XCTAssertTrue(
            eventually(10) {
                fleet.lastStatus(id)?["mode"] as? String == "fleet" && (fleet.lastStatus(id)?["ok"] as? Int ?? 0) > 10
            },
            "not calling in fleet mode: \(service.text)")
        // The service reports to the first server, the one it was given first.
        XCTAssertTrue(
            eventually(10) { (try? fleet.serverBreaker()) != nil }, "the first fuseboxd never heard of the breaker")

        let killed = Date()
        kill(first.process.processIdentifier, signal)
        let linesAtKill = service.lines.count
        // Its reports now reach the second server: the breaker appears there…
        XCTAssertTrue(
            eventually(15) { (try? fleet.serverBreaker(server: secondAddress)) != nil },
            "the second fuseboxd never received the service's reports: \(service.lines.suffix(5)) \(service.stderrTail())"
        )
        // Before GOAWAY ended the outcome stream, a graceful shutdown kept the
        // reports on the draining server for its whole drain (about 5 s).
        XCTAssertLessThan(Date().timeIntervalSince(killed), 3.5, "reports took too long to move to the second fuseboxd")
        print(
            "first fuseboxd signalled (\(signal)): reports reach the second after \(String(format: "%.2f", Date().timeIntervalSince(killed))) s"
        )
        // …and the service is (back) in fleet mode, whether or not it went local meanwhile.
        XCTAssertTrue(
            eventually(15) {
                service.lines.count > linesAtKill && fleet.lastStatus(id)?["mode"] as? String == "fleet"
                    && !(service.lines.last { $0.contains("\"event\":\"mode\"") }?.contains("\"local\"") ?? false)
            },
            "not in fleet mode after the failover: \(service.lines.suffix(5))")

        // A breaker tripped by the second server reaches the service.
        let transitionsBefore = fleet.transitions(id).count
        _ = try fleet.upstreamRequest("POST", "/fail")
        XCTAssertTrue(
            eventually(15) { (try? fleet.serverBreaker(server: secondAddress))?.state == "OPEN" },
            "the second fuseboxd did not trip the breaker: \(service.lines.suffix(5))")
        let open = eventually(10) { fleet.transitions(id).dropFirst(transitionsBefore).contains { $0.to == "OPEN" } }
        XCTAssertTrue(
            open,
            "the second server's OPEN did not reach the service: \(service.lines.suffix(8)) \(service.stderrTail())")
        if let server = try fleet.serverBreaker(server: secondAddress),
            let seen = fleet.transitions(id).dropFirst(transitionsBefore).first(where: { $0.to == "OPEN" })
        {
            XCTAssertTrue(
                seen.generation > 0 && seen.generation <= server.generation,
                "the service's OPEN carries a generation of the second server: \(seen) vs \(server)")
        }
        _ = try fleet.upstreamRequest("POST", "/recover")
    }

    func testTheCLIUsesTheNextEndpointWhenTheFirstIsDown() throws {
        let fleet = try Fleet()
        self.fleet = fleet
        let dead = try unusedPort()
        let alive = "127.0.0.1:\(fleet.server.port)"

        let listed = try fleet.cli(["registries", "list"], server: "127.0.0.1:\(dead),\(alive)")
        XCTAssertEqual(listed.status, 0, listed.output)

        let health = try fleet.cli(["health", "-o", "json"], server: "127.0.0.1:\(dead),\(alive)")
        XCTAssertEqual(health.status, 0, health.output)
        XCTAssertTrue(health.output.contains(alive), "health names the endpoint that answered: \(health.output)")

        // The same command against the dead endpoint alone fails: the list is what made it work.
        let alone = try fleet.cli(["registries", "list"], server: "127.0.0.1:\(dead)")
        XCTAssertEqual(alone.status, 3, alone.output)
        XCTAssertTrue(alone.output.contains("cannot reach fuseboxd at 127.0.0.1:\(dead)"), alone.output)

        let malformed = try fleet.cli(["registries", "list"], server: "\(alive),,\(alive)")
        XCTAssertEqual(malformed.status, 2, malformed.output)
    }

    /// A port on 127.0.0.1 that nothing listens on: bound, then closed.
    private func unusedPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw FleetHarnessFailure("socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else { throw FleetHarnessFailure("bind() failed") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
