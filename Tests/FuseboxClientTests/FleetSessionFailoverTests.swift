import Foundation
import FuseboxAPI
import FuseboxCore
import FuseboxRPC
import FuseboxTLS
import FuseboxTesting
import FuseboxWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest

@testable import FuseboxClient

/// FleetSession over two endpoints whose WatchRegistry is scripted: a watch that
/// breaks on the first resumes on the second after the last version seen.
final class FleetSessionFailoverTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    }

    override func tearDown() async throws {
        try await group.shutdownGracefully()
    }

    /// WatchRegistry requests as the servers received them: (server, from_version).
    private let requests = NIOLockedValueBox<[(String, UInt64)]>([])

    private static func record(_ p: String) -> Fusebox_V1_PolicyRecord {
        var r = Fusebox_V1_PolicyRecord()
        r.policy = PolicyMapping.wire(Policy(name: p))
        return r
    }

    private static func change(_ p: String, version: UInt64) -> Fusebox_V1_RegistryEvent {
        var c = Fusebox_V1_PolicyChange()
        c.registry = "default"
        c.version = version
        c.policyName = p
        c.after = PolicyMapping.wire(Policy(name: p))
        var e = Fusebox_V1_RegistryEvent()
        e.event = .change(c)
        return e
    }

    /// A server whose WatchRegistry runs `script`.
    private func server(
        _ name: String, _ script: @escaping @Sendable (RPCStreamWriter<Fusebox_V1_RegistryEvent>) async throws -> Void
    ) async throws -> (RPCServer, Task<Void, any Error>) {
        var router = RPCRouter()
        router.serverStreaming("fusebox.v1.RegistryService", "WatchRegistry") {
            [requests] (request: Fusebox_V1_WatchRegistryRequest, writer: RPCStreamWriter<Fusebox_V1_RegistryEvent>, _)
            in
            requests.withLockedValue { $0.append((name, request.fromVersion)) }
            try await script(writer)
        }
        let tls = try TLSContextProvider(
            configuration: .server(
                certificateChainPath: TestCertificates.path("server.pem"),
                privateKeyPath: TestCertificates.path("server.key"),
                clientCAPath: TestCertificates.path("ca.pem")))
        let server = RPCServer(configuration: RPCServerConfiguration(), router: router, tls: tls, group: group)
        try await server.start()
        return (server, Task { try await server.serve() })
    }

    func testARegistryWatchThatBreaksResumesOnTheNextEndpointAfterTheLastVersionSeen() async throws {
        let (first, firstTask) = try await server("first") { writer in
            var snapshot = Fusebox_V1_RegistrySnapshot()
            snapshot.version = 7
            snapshot.policies = [Self.record("p1")]
            var e = Fusebox_V1_RegistryEvent()
            e.event = .snapshot(snapshot)
            try await writer.send(e)
            try await writer.send(Self.change("p2", version: 8))
            // Messages went out: the server may have done work, so the call is not repeated.
            throw RPCError(.unavailable, "going away")
        }
        let (second, secondTask) = try await server("second") { writer in
            try await writer.send(Self.change("p3", version: 9))
            try await Task.sleep(for: .seconds(30))
        }
        let tls = FuseboxTLS.client(
            trustRootsPath: try TestCertificates.path("ca.pem"),
            certificateChainPath: try TestCertificates.path("reporter.pem"),
            privateKeyPath: try TestCertificates.path("reporter.key"))
        let endpoints = RPCEndpoints(
            RPCEndpoint(host: "127.0.0.1", port: first.port), RPCEndpoint(host: "127.0.0.1", port: second.port))
        var configuration = FuseboxConfiguration(
            endpoints: endpoints.all.map { FuseboxEndpoint(host: $0.host, port: $0.port) }, tls: tls, clientID: "resumer",
            cacheDirectory: FileManager.default.temporaryDirectory.path + "/resume-\(UUID())")
        configuration.reconnectBackoffBase = .milliseconds(10)
        configuration.reconnectBackoffMaximum = .milliseconds(100)
        let client = try RPCFailoverClient(
            configuration: RPCClientConfiguration(host: "127.0.0.1", port: first.port, tls: tls.transport), endpoints: endpoints,
            backoff: RPCBackoff(initial: .milliseconds(10), maximum: .milliseconds(100)), group: group)
        let link = FleetSession(
            configuration: configuration, client: client, eventLoop: group.next(),
            policies: PolicySnapshot(registries: [:], versions: [:], source: .presets),
            logger: Logger(label: "resume-test"))
        let running = Task { await link.run() }
        let deadline = ContinuousClock.now + .seconds(10)
        while link.policies.versions["default"] != 9, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        await link.shutdown()
        await running.value

        XCTAssertEqual(link.policies.versions["default"], 9)
        XCTAssertEqual(
            link.policies.registries["default"].map { Set($0.keys) }, ["p1", "p2", "p3"],
            "changes apply on top of what was held")
        let seen = requests.withLockedValue { $0 }
        XCTAssertEqual(seen.first?.0, "first")
        XCTAssertEqual(seen.first?.1, 0, "the first watch of a run asks for a snapshot")
        XCTAssertEqual(seen.dropFirst().first?.0, "second", "the broken watch moved to the next endpoint: \(seen)")
        XCTAssertEqual(seen.dropFirst().first?.1, 8, "and resumed after the last version seen: \(seen)")

        await first.shutdown()
        await second.shutdown()
        _ = try? await firstTask.value
        _ = try? await secondTask.value
    }
}
