import FuseboxAPI
import FuseboxCore
public import FuseboxAuthority
public import FuseboxRPC
import FuseboxWire
import NIOConcurrencyHelpers

/// `fusebox.v1.RegistryService` over the domain registry: authorization,
/// validation, audit and the mapping between messages and domain values.
public struct RegistryService: Sendable {
    let registry: PolicyRegistry
    let authorizer: Authorizer
    let audit: AuditLog
    /// Each registry's encoded snapshot, for the version it was made at: a
    /// fleet starting at once fetches the same bytes (building and encoding
    /// them per call was a fifth of fuseboxd's CPU in the cold-start benchmark).
    private let encoded = NIOLockedValueBox<[String: (version: UInt64, bytes: [UInt8])]>([:])

    /// Replicated mode: watches are refused while this replica cannot serve;
    /// policy writes go to the leader while one is known (one writer groups
    /// them into shared etcd transactions instead of replicas conflicting).
    public var routing: (any DecisionRouting)?
    /// Largest policy accepted, encoded (`limits.maxPolicyBytes`).
    public var maxPolicyBytes = AuthorityLimits().maxPolicyBytes

    /// The service over `registry`.
    public init(registry: PolicyRegistry, authorizer: Authorizer, audit: AuditLog) {
        self.registry = registry
        self.authorizer = authorizer
        self.audit = audit
    }

    /// In replicated mode, a policy write taken by a follower goes to the
    /// leader (whose group commit stores it); this replica answers once its
    /// own copy holds the new version. nil: this replica writes it itself.
    private func forwardedToLeader<Request: WireMessage, Response: WireMessage>(
        _ method: String, _ request: Request, as: Response.Type, context: RPCServerContext, registry name: String,
        version: (Response) -> UInt64
    ) async throws(RPCError) -> Response? {
        // A replica that lost etcd would forward, then wait in vain for its watch.
        try routing?.requireServing()
        guard let leader = try? routing?.leader() else { return nil }
        let response = try await Forwarding.unary(
            leader, "fusebox.v1.RegistryService", method, request, as: Response.self, caller: authorizer.caller(context))
        await registry.waitUntilApplied(registry: name, version: version(response))
        return response
    }

    /// Registers the service's methods on `router`.
    public func register(on router: inout RPCRouter) {
        let service = "fusebox.v1.RegistryService"
        router.unary(service, "ListRegistries") { (_: Fusebox_V1_ListRegistriesRequest, context) in
            try authorizer.require(.reader, context)
            var response = Fusebox_V1_ListRegistriesResponse()
            response.registries = registry.registries().map { r in
                var summary = Fusebox_V1_RegistrySummary()
                summary.name = r.name
                summary.version = r.version
                summary.policyCount = UInt32(r.policies.count)
                summary.updatedAtMs = r.updatedAtMs
                return summary
            }
            return response
        }
        router.unaryEncoded(service, "GetRegistry") { (request: Fusebox_V1_GetRegistryRequest, context) in
            try authorizer.require(.reader, context)
            try WireConversions.checkRegistry(request.registry, field: "registry")
            guard let bytes = try encodedSnapshot(request.registry) else {
                throw RPCError(.notFound, "registry \"\(request.registry)\" does not exist")
            }
            return bytes
        }
        router.unary(service, "GetPolicy") { (request: Fusebox_V1_GetPolicyRequest, context) in
            try authorizer.require(.reader, context)
            try WireConversions.checkRegistry(request.registry, field: "registry")
            guard let stored = registry.record(registry: request.registry, name: request.name) else {
                throw RPCError(.notFound, "policy \"\(request.name)\" does not exist in registry \"\(request.registry)\"")
            }
            return WireConversions.record(stored)
        }
        router.unary(service, "PutPolicy") { (request: Fusebox_V1_PutPolicyRequest, context) in
            let target = "\(request.registry)/\(request.policy?.name ?? "")"
            try await audit.authorize(.admin, context, action: .putPolicy, policy: target, reason: request.reason)
            let policy: Policy
            do throws(RPCError) {
                var problems = ViolationCollector()
                try problems.check { () throws(RPCError) in try WireConversions.checkRegistry(request.registry, field: "registry") }
                let checked = try problems.check { () throws(RPCError) -> Policy in
                    guard let wire = request.policy else { throw WireConversions.invalid("policy", "required") }
                    try Self.checkSize(wire, limit: maxPolicyBytes)
                    switch PolicyMapping.validatedPolicy(from: wire) {
                    case .success(let p): return p
                    case .failure(let error): throw WireConversions.invalidArgument(error)
                    }
                }
                try problems.check { () throws(RPCError) in try WireConversions.checkReason(request.reason) }
                policy = try problems.result(checked ?? Policy(name: ""))
            } catch {
                await audit.refused(context, action: .putPolicy, policy: target, reason: request.reason, error)
                throw error
            }
            if let forwarded = try await forwardedToLeader("PutPolicy", request, as: Fusebox_V1_PutPolicyResponse.self, context: context, registry: request.registry, version: \.registryVersion) {
                return forwarded
            }
            let actor = Authorizer.describe(authorizer.caller(context))
            let change: PolicyChangeRecord
            do throws(StoreError) {
                change = try await registry.put(
                    registry: request.registry, policy: policy, expectedVersion: request.expectedVersion?.version, actor: actor,
                    reason: request.reason, audit: audit.allowed(context, action: .putPolicy, policy: "\(request.registry)/\(policy.name)", reason: request.reason))
            } catch {
                throw WireConversions.status(error)
            }
            var response = Fusebox_V1_PutPolicyResponse()
            response.record = WireConversions.record(StoredPolicy(policy: policy, version: change.version, updatedAtMs: change.atMs, updatedBy: actor))
            response.registryVersion = change.version
            response.kind = change.kind == .created ? .created : .updated
            return response
        }
        router.unary(service, "DeletePolicy") { (request: Fusebox_V1_DeletePolicyRequest, context) in
            let target = "\(request.registry)/\(request.name)"
            try await audit.authorize(.admin, context, action: .deletePolicy, policy: target, reason: request.reason)
            do throws(RPCError) {
                var problems = ViolationCollector()
                try problems.check { () throws(RPCError) in try WireConversions.checkRegistry(request.registry, field: "registry") }
                if request.name.isEmpty { problems.add("name", "required") }
                try problems.check { () throws(RPCError) in try WireConversions.checkReason(request.reason) }
                try problems.throwIfAny()
            } catch {
                await audit.refused(context, action: .deletePolicy, policy: target, reason: request.reason, error)
                throw error
            }
            if let forwarded = try await forwardedToLeader("DeletePolicy", request, as: Fusebox_V1_DeletePolicyResponse.self, context: context, registry: request.registry, version: \.registryVersion) {
                return forwarded
            }
            let change: PolicyChangeRecord
            do throws(StoreError) {
                change = try await registry.delete(
                    registry: request.registry, name: request.name, expectedVersion: request.expectedVersion?.version,
                    actor: Authorizer.describe(authorizer.caller(context)), reason: request.reason,
                    audit: audit.allowed(context, action: .deletePolicy, policy: target, reason: request.reason))
            } catch {
                throw WireConversions.status(error)
            }
            var response = Fusebox_V1_DeletePolicyResponse()
            response.registryVersion = change.version
            return response
        }
        router.unary(service, "ValidatePolicy") { (request: Fusebox_V1_ValidatePolicyRequest, context) in
            try authorizer.require(.reader, context)
            var response = Fusebox_V1_ValidatePolicyResponse()
            let policy = request.policy ?? Fusebox_V1_Policy()
            switch PolicyMapping.validatedPolicy(from: policy) {
            case .success:
                response.valid = true
            case .failure(let error):
                // Paths relative to the policy.
                response.violations = PolicyMapping.fieldViolations(error)
            }
            // As PutPolicy would refuse it: the whole policy (an empty path) is too large.
            if let size = try? policy.encode().count, size > maxPolicyBytes {
                response.valid = false
                response.violations.append(WireConversions.violation("", "\(size) bytes encoded; at most \(maxPolicyBytes) (limits.maxPolicyBytes)"))
            }
            return response
        }
        router.unary(service, "PolicyHistory") { (request: Fusebox_V1_PolicyHistoryRequest, context) in
            try authorizer.require(.reader, context)
            var problems = ViolationCollector()
            try problems.check { () throws(RPCError) in try WireConversions.checkRegistry(request.registry, field: "registry") }
            let checkedLimit = try problems.check { () throws(RPCError) in try WireConversions.pageSize(request.limit, field: "limit") }
            let limit = try problems.result(checkedLimit ?? 0)
            let changes: [PolicyChangeRecord]
            do throws(StoreError) {
                changes = try await registry.history(
                    registry: request.registry, name: request.name.isEmpty ? nil : request.name, afterVersion: request.afterVersion, limit: limit + 1)
            } catch {
                throw WireConversions.status(error)
            }
            var response = Fusebox_V1_PolicyHistoryResponse()
            response.changes = changes.prefix(limit).map(WireConversions.change)
            response.truncated = changes.count > limit
            return response
        }
        router.serverStreaming(service, "WatchRegistry") {
            (request: Fusebox_V1_WatchRegistryRequest, writer: RPCStreamWriter<Fusebox_V1_RegistryEvent>, context) in
            try authorizer.require(.reader, context)
            try routing?.requireServing()
            try WireConversions.checkRegistry(request.registry, field: "registry")
            let sink = RegistryStreamSink(writer: writer)
            let id: UInt64
            do throws(StoreError) {
                id = try await registry.watch(registry: request.registry, fromVersion: request.fromVersion, sink: sink)
            } catch {
                throw WireConversions.status(error)
            }
            defer { registry.unwatch(id) }
            await sink.waitUntilFinished()
        }
    }

    /// The encoded snapshot of `name`, made once per registry version.
    private func encodedSnapshot(_ name: String) throws -> [UInt8]? {
        guard let r = registry.registry(name) else { return nil }
        if let cached = encoded.withLockedValue({ $0[name] }), cached.version == r.version { return cached.bytes }
        let bytes = try WireConversions.snapshot(r).encode()
        encoded.withLockedValue { $0[name] = (r.version, bytes) }
        return bytes
    }
}

extension RegistryService {
    /// INVALID_ARGUMENT (field `policy`) for a policy larger than `limit` bytes encoded.
    static func checkSize(_ policy: Fusebox_V1_Policy, limit: Int) throws(RPCError) {
        let size = (try? policy.encode().count) ?? 0
        guard size <= limit else {
            ServerMetrics.limitReached("policy_bytes")
            throw WireConversions.invalid("policy", "\(size) bytes encoded; at most \(limit) (limits.maxPolicyBytes)")
        }
    }
}

/// A WatchRegistry stream as a watch sink (see `BreakerStreamSink`).
final class RegistryStreamSink: WatchSink, Sendable {
    private let writer: RPCStreamWriter<Fusebox_V1_RegistryEvent>
    private let done = Doorbell()

    init(writer: RPCStreamWriter<Fusebox_V1_RegistryEvent>) {
        self.writer = writer
    }

    func offer(_ event: RegistryWatchEvent) -> Bool {
        var messages: [Fusebox_V1_RegistryEvent] = []
        switch event {
        case .snapshot(let r):
            var e = Fusebox_V1_RegistryEvent()
            e.event = .snapshot(WireConversions.snapshot(r))
            messages.append(e)
        case .changes(let changes):
            for c in changes {
                var e = Fusebox_V1_RegistryEvent()
                e.event = .change(WireConversions.change(c))
                messages.append(e)
            }
        }
        guard writer.canAccept else { return false }
        for m in messages {
            // A replay may exceed what the stream buffers; it is all queued, in order.
            if let bytes = try? m.encode() { writer.enqueueKeepingOpen(RPCFrame(bytes)) }
        }
        return true
    }

    var canAccept: Bool { writer.canAccept }

    func finish() { done.close() }

    func waitUntilFinished() async {
        while await done.wait() {}
    }
}
