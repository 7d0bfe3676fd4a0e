import FuseboxAPI
import FuseboxCore
import FuseboxRPC
import FuseboxTLS
import FuseboxTesting
import FuseboxWire
import NIOPosix

/// A RegistryService whose PutPolicy is stricter than the CLI's own checks,
/// as a newer fuseboxd may be: it runs the real checks, then house rules,
/// and rejects the way fuseboxd does, with INVALID_ARGUMENT and every
/// problem in `fusebox-error-details-bin`, paths in proto names under
/// `policy.`. The CLI must place them in the file it applied.
struct StricterRegistry {
    let server: RPCServer
    let task: Task<Void, any Error>

    var port: Int { server.port }

    static func start() async throws -> StricterRegistry {
        var router = RPCRouter()
        router.unary("fusebox.v1.RegistryService", "PutPolicy") {
            (request: Fusebox_V1_PutPolicyRequest, _) -> Fusebox_V1_PutPolicyResponse in
            let wire = request.policy ?? Fusebox_V1_Policy()
            var found: [PolicyViolation] = []
            if case .failure(let error) = PolicyMapping.validatedPolicy(from: wire) { found = error.violations }
            if wire.labels["team"] == nil {
                found.append(PolicyViolation(field: #"labels["team"]"#, message: "is required in this registry"))
            }
            if let rate = wire.circuitBreaker?.failureRateThresholdPercent, rate > 40 {
                found.append(
                    PolicyViolation(
                        field: "circuit_breaker.failure_rate_threshold_percent",
                        message:
                            "(\(rate)) must be ≤ 40 in this registry, or use circuit_breaker.consecutive_failures_threshold"
                    ))
            }
            if let max = wire.retry?.backoff?.maxMs, max > 5_000 {
                found.append(
                    PolicyViolation(field: "retry.backoff.max_ms", message: "(\(max)) must be ≤ 5000 in this registry"))
            }
            guard !found.isEmpty else {
                var response = Fusebox_V1_PutPolicyResponse()
                response.kind = .created
                response.registryVersion = 1
                return response
            }
            let error = PolicyValidationError(policy: wire.name, violations: found)
            var details = Fusebox_V1_ErrorDetails()
            details.violations = PolicyMapping.fieldViolations(error, under: "policy")
            var trailers = RPCMetadata()
            trailers.add("fusebox-error-details-bin", binary: try details.encode())
            throw RPCError(.invalidArgument, error.description, metadata: trailers)
        }
        let tls = try TLSContextProvider(
            configuration: .server(
                certificateChainPath: TestCertificates.path("server.pem"),
                privateKeyPath: TestCertificates.path("server.key"),
                clientCAPath: TestCertificates.path("ca.pem"), requireClientCertificate: true))
        let server = RPCServer(
            configuration: RPCServerConfiguration(), router: router, tls: tls,
            group: MultiThreadedEventLoopGroup.singleton)
        _ = try await server.start()
        let task = Task { try await server.serve() }
        return StricterRegistry(server: server, task: task)
    }

    func stop() async throws {
        await server.shutdown()
        try await task.value
    }
}
