import Foundation
import FuseboxCore
import FuseboxRPC
import FuseboxServer
import FuseboxTLS
import FuseboxTesting
import NIOCore
import NIOPosix
import XCTest

@testable import FuseboxClient

/// Startup is fail-static: server, else the disk cache of the last fetch, else presets.
final class PolicySnapshotTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var work: String!

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        work = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-client-\(UUID().uuidString)").path
    }

    override func tearDown() async throws {
        try? FileManager.default.removeItem(atPath: work)
        try await group.shutdownGracefully()
    }

    private func client(port: Int) throws -> RPCFailoverClient {
        RPCFailoverClient(try RPCClient(configuration: RPCClientConfiguration(
            host: "127.0.0.1", port: port,
            tls: .client(trustRootsPath: try TestCertificates.path("ca.pem"), certificateChainPath: try TestCertificates.path("reader.pem"),
                         privateKeyPath: try TestCertificates.path("reader.key"))), group: group))
    }

    func testServerThenCacheThenPresets() async throws {
        let tls = TLSConfiguration.server(
            certificateChainPath: try TestCertificates.path("server.pem"), privateKeyPath: try TestCertificates.path("server.key"),
            clientCAPath: try TestCertificates.path("ca.pem"))
        try FileManager.default.createDirectory(atPath: work + "/data", withIntermediateDirectories: true)
        let app = try await FuseboxServerApp.start(.init(dataDirectory: work + "/data", tls: tls), group: group)
        let serving = Task { try await app.serve() }
        let port = app.rpc.port
        let cache = work + "/cache"

        // 1. From the server; the cache is written.
        let online = try client(port: port)
        let fetched = await PolicySnapshot.load(registries: ["default", "empty"], client: online, cacheDirectory: cache)
        XCTAssertEqual(fetched.source, .server)
        XCTAssertEqual(fetched.policy("api"), Presets.api)
        XCTAssertEqual(fetched.versions["default"], 5)
        XCTAssertEqual(fetched.registries["empty"], [:], "a registry not created yet is empty, not an error")
        XCTAssertTrue(FileManager.default.fileExists(atPath: cache + "/default.registry.pb"))
        await online.close()
        await app.shutdown()
        try await serving.value

        // 2. Server gone: the cache, with the same policies.
        let offline = try client(port: port)
        let cached = await PolicySnapshot.load(registries: ["default", "empty"], client: offline, cacheDirectory: cache, timeout: .seconds(2))
        XCTAssertEqual(cached.source, .cache)
        XCTAssertEqual(cached.registries, fetched.registries)
        XCTAssertEqual(cached.versions, fetched.versions)

        // 3. No cache either: the presets.
        let fresh = await PolicySnapshot.load(registries: ["default"], client: offline, cacheDirectory: work + "/nothing", timeout: .seconds(2))
        XCTAssertEqual(fresh.source, .presets)
        XCTAssertEqual(fresh.policy("critical"), Presets.critical)
        await offline.close()
    }

    func testACorruptCacheFallsBackToPresets() async throws {
        let cache = work + "/cache"
        try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
        try Data([0xff, 0x00, 0x13]).write(to: URL(fileURLWithPath: cache + "/default.registry.pb"))
        let probe = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let port = probe.localAddress?.port ?? 0
        try await probe.close()
        let offline = try client(port: port)
        let loaded = await PolicySnapshot.load(registries: ["default"], client: offline, cacheDirectory: cache, timeout: .seconds(2))
        XCTAssertEqual(loaded.source, .presets)
        await offline.close()
    }
}
