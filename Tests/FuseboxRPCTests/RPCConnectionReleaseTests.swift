import FuseboxRPC
import FuseboxTesting
import FuseboxWire
import NIOCore
import NIOPosix
import XCTest

/// A connection that has closed is released: its channel, pipeline, HTTP/2
/// and TLS state leave memory, whatever its calls were doing.
final class RPCConnectionReleaseTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    }

    override func tearDown() async throws {
        try await group.shutdownGracefully()
    }

    /// 200 clients, 50 at a time, each opening a watch and leaving: half
    /// cancel the watch and close at once (the reset and the close reach the
    /// server in one flight), half close with the watch open. Before the fix,
    /// about half of the first kind stayed in memory for good (NIOHTTP2 held
    /// the reset stream until a read-complete that never came), about
    /// 15 KiB each: the growth the soak found.
    func testConnectionsWithOpenWatchesAreReleasedWhenTheirClientsLeave() async throws {
        let server = try await TestRPCServer.start(group: group)
        let before = RPCServer.connectionsInMemory
        let port = server.port
        let group = self.group!
        try await withThrowingTaskGroup(of: Void.self) { sessions in
            for i in 0..<200 {
                if i >= 50 { try await sessions.next() }
                sessions.addTask {
                    let client = try makeClient(port: port, group: group, identity: "reader")
                    let seen = NIOLockedValueBoxStrings()
                    let watch = Task {
                        try await client.serverStreaming(
                            "grpc.health.v1.Health", "Watch", Grpc_Health_V1_HealthCheckRequest(),
                            as: Grpc_Health_V1_HealthCheckResponse.self
                        ) { seen.append("\($0.status)") }
                    }
                    await waitUntil("session \(i): the watch's first status") { seen.values.count == 1 }
                    if i.isMultiple(of: 2) {
                        watch.cancel()
                        _ = await watch.result
                    }
                    await client.close()
                    _ = await watch.result
                }
            }
            try await sessions.waitForAll()
        }
        await waitUntil("every connection closed on the server") { server.server.openConnections == 0 }
        await waitUntil("every connection released", timeout: 15) { RPCServer.connectionsInMemory <= before }
        XCTAssertEqual(RPCServer.connectionsInMemory, before, "connections kept in memory after their clients left")
        XCTAssertEqual(server.server.callsInFlight, 0)
        try await server.stop()
    }
}
