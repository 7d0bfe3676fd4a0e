import Foundation
import FuseboxAPI
public import FuseboxAuthority
public import FuseboxCore
public import FuseboxRPC
public import FuseboxServer
import FuseboxTLS
import FuseboxWire
public import NIOCore

/// A FuseboxServerApp in the test process, on 127.0.0.1 port 0 with the test
/// certificates and a fresh data directory.
public struct ServerHarness: Sendable {
    public let app: FuseboxServerApp
    public let task: Task<Void, any Error>
    public let directory: String

    /// `clock` is the authority's time: pass a `ManualFleetClock` to move it by hand.
    public static func start(group: any EventLoopGroup, directory: String? = nil, clock: any FleetClock = SystemFleetClock()) async throws -> ServerHarness {
        let dir = directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-server-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tls = TLSConfiguration.server(
            certificateChainPath: try TestCertificates.path("server.pem"), privateKeyPath: try TestCertificates.path("server.key"),
            clientCAPath: try TestCertificates.path("ca.pem"))
        let app = try await FuseboxServerApp.start(.init(dataDirectory: dir, tls: tls), group: group, clock: clock)
        // A test's server outlives the setUp that starts it, so it runs in a task of
        // its own; stop() shuts the app down and awaits this task.
        return ServerHarness(app: app, task: Task { try await app.serve() }, directory: dir)
    }

    public var port: Int { app.rpc.port }

    /// A client with test identity `identity` ("admin", "reporter", "reader"), or none.
    public func client(_ identity: String?, group: any EventLoopGroup) throws -> RPCClient {
        try RPCClient(configuration: RPCClientConfiguration(
            host: "127.0.0.1", port: port,
            tls: .client(
                trustRootsPath: try TestCertificates.path("ca.pem"),
                certificateChainPath: try identity.map { try TestCertificates.path("\($0).pem") },
                privateKeyPath: try identity.map { try TestCertificates.path("\($0).key") })), group: group)
    }

    /// Stores `policy` in registry `default` through the API, as admin `admin`.
    public static func put(_ policy: Policy, with admin: RPCClient, registry: String = "default") async throws {
        var request = Fusebox_V1_PutPolicyRequest()
        request.registry = registry
        request.policy = PolicyMapping.wire(policy)
        _ = try await admin.unary("fusebox.v1.RegistryService", "PutPolicy", request, as: Fusebox_V1_PutPolicyResponse.self)
    }

    public func stop() async throws {
        await app.shutdown()
        try await task.value
    }
}
