import Foundation
import FuseboxCore
import FuseboxRPC
import FuseboxServer
import FuseboxTLS
import FuseboxTesting
import XCTest

@testable import FuseboxClient

/// Sessions started and shut down leave nothing behind: no connection on the
/// server, no session (or task holding one) in the client process.
final class SessionLeakTests: GuardTestCase {
    func testAHundredSessionsStartAndShutDownLeavingNothingBehind() async throws {
        try await ServerHarness.put(breakerPolicy("leak-check", failures: 100), with: admin)
        let sessionsBefore = FleetSession.inMemory
        let tasksBefore = FleetSession.tasksRunning
        let connectionsBefore = server.app.rpc.openConnections  // the admin client's
        let port = server.port
        let group = self.group!
        let work = self.work
        for round in 0..<10 {
            try await withThrowingTaskGroup(of: Void.self) { sessions in
                for i in 0..<10 {
                    sessions.addTask {
                        var configuration = FuseboxConfiguration(
                            host: "127.0.0.1", port: port,
                            tls: .client(
                                trustRootsPath: try TestCertificates.path("ca.pem"), certificateChainPath: try TestCertificates.path("reporter.pem"),
                                privateKeyPath: try TestCertificates.path("reporter.key")),
                            clientID: "session-\(round)-\(i)", cacheDirectory: work + "/cache-\(round)-\(i)")
                        configuration.reportInterval = .milliseconds(20)
                        let f = try await Fusebox.start(configuration, group: group)
                        try await f.guard("checkout", policy: "leak-check").run {}
                        await f.shutdown()
                    }
                }
                try await sessions.waitForAll()
            }
        }
        await waitUntil("every session's connection closed on the server") { self.server.app.rpc.openConnections == connectionsBefore }
        await waitUntil("every session released") { FleetSession.inMemory == sessionsBefore }
        XCTAssertEqual(FleetSession.inMemory, sessionsBefore, "sessions (or tasks holding them) left after shutdown")
        XCTAssertEqual(FleetSession.tasksRunning, tasksBefore, "sessions' tasks still running after shutdown")
        XCTAssertEqual(server.app.rpc.openConnections, connectionsBefore, "connections left open on the server")
        XCTAssertEqual(server.app.rpc.callsInFlight, 0, "calls (watches, report streams) left running on the server")
    }
}
