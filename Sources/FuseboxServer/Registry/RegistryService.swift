import FuseboxAPI
public import FuseboxCore
public import FuseboxRPC
import FuseboxWire
import NIOConcurrencyHelpers

/// `fusebox.v1.RegistryService`: named registries of policies, versioned,
/// with history and watches. Reads are served from memory; every write goes
/// to the store first (durable), then to memory and the watchers, one write
/// at a time so watchers see versions in order.
public final class RegistryService: Sendable {
    private struct State {
        var registries: [String: StoredRegistry] = [:]
        /// Each registry's encoded snapshot, for the version it was made at.
        var encodedSnapshots: [String: (version: UInt64, bytes: [UInt8])] = [:]
        var watchers: [UInt64: (registry: String, continuation: AsyncStream<PolicyChangeRecord>.Continuation)] = [:]
        var listeners: [@Sendable (PolicyChangeRecord) async -> Void] = []
        var nextWatcher: UInt64 = 0
    }

    private let store: any FuseboxStore
    private let authorizer: Authorizer
    private let audit: AuditLog
    private let clock: @Sendable () -> Int64
    private let gate = SerialGate()
    private let state = NIOLockedValueBox(State())

    /// Loads every registry from `store`.
    public init(store: any FuseboxStore, authorizer: Authorizer, clock: @escaping @Sendable () -> Int64) async throws(StoreError) {
        self.store = store
        self.authorizer = authorizer
        self.clock = clock
        self.audit = AuditLog(store: store, clock: clock)
        let loaded = try await store.loadRegistries()
        state.withLockedValue { s in for r in loaded { s.registries[r.name] = r } }
    }

    /// Loads the presets into `default` if it does not exist yet (first start).
    public func seedPresetsIfEmpty() async throws(StoreError) {
        guard policy(registry: "default", name: Presets.all[0].name) == nil, registryVersion("default") == 0 else { return }
        for preset in Presets.all {
            _ = try await write { () async throws(StoreError) in
                try await self.store.putPolicy(registry: "default", policy: preset, expectedVersion: nil, actor: "fuseboxd", reason: "preset loaded on first start", atMs: self.clock())
            }
        }
    }

    /// The current policy `registry/name`.
    public func policy(registry: String, name: String) -> Policy? {
        state.withLockedValue { $0.registries[registry]?.policies[name]?.policy }
    }

    /// A registry's current version (0 if it does not exist).
    public func registryVersion(_ registry: String) -> UInt64 {
        state.withLockedValue { $0.registries[registry]?.version ?? 0 }
    }

    /// Calls `listener` after every durable write (the breaker coordinator follows policy changes this way).
    public func addListener(_ listener: @escaping @Sendable (PolicyChangeRecord) async -> Void) {
        state.withLockedValue { $0.listeners.append(listener) }
    }

    /// Writes through the store, then applies to memory and tells watchers, in order.
    private func write(
        _ body: @escaping @Sendable () async throws(StoreError) -> PolicyChangeRecord
    ) async throws(StoreError) -> PolicyChangeRecord {
        let result: Result<PolicyChangeRecord, StoreError> = await gate.run {
            do throws(StoreError) {
                let change = try await body()
                let (watchers, listeners) = state.withLockedValue { s in
                    var r = s.registries[change.registry] ?? StoredRegistry(name: change.registry, version: 0, updatedAtMs: 0, policies: [:])
                    r.version = change.version
                    r.updatedAtMs = change.atMs
                    if let after = change.after {
                        r.policies[change.name] = StoredPolicy(policy: after, version: change.version, updatedAtMs: change.atMs, updatedBy: change.actor)
                    } else {
                        r.policies[change.name] = nil
                    }
                    s.registries[change.registry] = r
                    return (s.watchers.values.filter { $0.registry == change.registry }.map(\.continuation), s.listeners)
                }
                for watcher in watchers { watcher.yield(change) }
                for listener in listeners { await listener(change) }
                return .success(change)
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    // MARK: RPC

    /// Registers the service's methods on `router`.
    public func register(on router: inout RPCRouter) {
        let service = "fusebox.v1.RegistryService"
        router.unary(service, "ListRegistries") { [self] (_: Fusebox_V1_ListRegistriesRequest, context) in
            try authorizer.require(.reader, context)
            var response = Fusebox_V1_ListRegistriesResponse()
            response.registries = state.withLockedValue { s in
                s.registries.values.sorted { $0.name < $1.name }.map { r in
                    var summary = Fusebox_V1_RegistrySummary()
                    summary.name = r.name
                    summary.version = r.version
                    summary.policyCount = UInt32(r.policies.count)
                    summary.updatedAtMs = r.updatedAtMs
                    return summary
                }
            }
            return response
        }
        router.unaryEncoded(service, "GetRegistry") { [self] (request: Fusebox_V1_GetRegistryRequest, context) in
            try authorizer.require(.reader, context)
            guard let bytes = try encodedSnapshot(request.registry) else {
                throw RPCError(.notFound, "registry \"\(request.registry)\" does not exist")
            }
            return bytes
        }
        router.unary(service, "GetPolicy") { [self] (request: Fusebox_V1_GetPolicyRequest, context) in
            try authorizer.require(.reader, context)
            guard let stored = state.withLockedValue({ $0.registries[request.registry]?.policies[request.name] }) else {
                throw RPCError(.notFound, "policy \"\(request.name)\" does not exist in registry \"\(request.registry)\"")
            }
            return WireConversions.record(stored)
        }
        router.unary(service, "PutPolicy") { [self] (request: Fusebox_V1_PutPolicyRequest, context) in
            try await requireAdmin(context, action: .putPolicy, policy: "\(request.registry)/\(request.policy?.name ?? "")")
            try Self.checkName(request.registry, field: "registry")
            guard let wire = request.policy else { throw RPCError(.invalidArgument, "policy: required") }
            let policy: Policy
            switch PolicyMapping.validatedPolicy(from: wire) {
            case .success(let p): policy = p
            case .failure(let error): throw WireConversions.invalidArgument(error)
            }
            let actor = Authorizer.describe(context.peer)
            let change: PolicyChangeRecord
            do throws(StoreError) {
                change = try await write { () async throws(StoreError) in
                    try await self.store.putPolicy(
                        registry: request.registry, policy: policy, expectedVersion: request.expectedVersion?.version,
                        actor: actor, reason: request.reason, atMs: self.clock())
                }
            } catch {
                throw WireConversions.status(error)
            }
            _ = try? await audit.record(.putPolicy, peer: context.peer, policy: "\(request.registry)/\(policy.name)", reason: request.reason, allowed: true)
            var response = Fusebox_V1_PutPolicyResponse()
            response.record = WireConversions.record(StoredPolicy(policy: policy, version: change.version, updatedAtMs: change.atMs, updatedBy: actor))
            response.registryVersion = change.version
            response.kind = change.kind == .created ? .created : .updated
            return response
        }
        router.unary(service, "DeletePolicy") { [self] (request: Fusebox_V1_DeletePolicyRequest, context) in
            try await requireAdmin(context, action: .deletePolicy, policy: "\(request.registry)/\(request.name)")
            let actor = Authorizer.describe(context.peer)
            let change: PolicyChangeRecord
            do throws(StoreError) {
                change = try await write { () async throws(StoreError) in
                    try await self.store.deletePolicy(
                        registry: request.registry, name: request.name, expectedVersion: request.expectedVersion?.version,
                        actor: actor, reason: request.reason, atMs: self.clock())
                }
            } catch {
                throw WireConversions.status(error)
            }
            _ = try? await audit.record(.deletePolicy, peer: context.peer, policy: "\(request.registry)/\(request.name)", reason: request.reason, allowed: true)
            var response = Fusebox_V1_DeletePolicyResponse()
            response.registryVersion = change.version
            return response
        }
        router.unary(service, "ValidatePolicy") { [self] (request: Fusebox_V1_ValidatePolicyRequest, context) in
            try authorizer.require(.reader, context)
            var response = Fusebox_V1_ValidatePolicyResponse()
            switch PolicyMapping.validatedPolicy(from: request.policy ?? Fusebox_V1_Policy()) {
            case .success:
                response.valid = true
            case .failure(let error):
                response.violations = error.violations.map { v in
                    var w = Fusebox_V1_FieldViolation()
                    w.field = v.field
                    w.description = v.message
                    return w
                }
            }
            return response
        }
        router.unary(service, "PolicyHistory") { [self] (request: Fusebox_V1_PolicyHistoryRequest, context) in
            try authorizer.require(.reader, context)
            let limit = request.limit == 0 ? 100 : min(Int(request.limit), 1_000)
            let changes: [PolicyChangeRecord]
            do throws(StoreError) {
                changes = try await store.history(
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
            [self] (request: Fusebox_V1_WatchRegistryRequest, writer: RPCStreamWriter<Fusebox_V1_RegistryEvent>, context) in
            try authorizer.require(.reader, context)
            try await watch(request, writer: writer)
        }
    }

    /// The encoded snapshot of `registry`, made once per registry version: a
    /// fleet starting at once fetches the same bytes (building and encoding
    /// them per call was a fifth of fuseboxd's CPU in the cold-start benchmark).
    private func encodedSnapshot(_ registry: String) throws -> [UInt8]? {
        let cached = state.withLockedValue { s -> [UInt8]? in
            guard let r = s.registries[registry], let c = s.encodedSnapshots[registry], c.version == r.version else { return nil }
            return c.bytes
        }
        if let cached { return cached }
        guard let snapshot = snapshot(registry) else { return nil }
        let bytes = try snapshot.encode()
        state.withLockedValue { s in
            if s.registries[registry]?.version == snapshot.version { s.encodedSnapshots[registry] = (snapshot.version, bytes) }
        }
        return bytes
    }

    private func snapshot(_ registry: String) -> Fusebox_V1_RegistrySnapshot? {
        state.withLockedValue { s in
            guard let r = s.registries[registry] else { return nil }
            var snapshot = Fusebox_V1_RegistrySnapshot()
            snapshot.name = r.name
            snapshot.version = r.version
            snapshot.policies = r.policies.values.sorted { $0.policy.name < $1.policy.name }.map(WireConversions.record)
            return snapshot
        }
    }

    private func watch(_ request: Fusebox_V1_WatchRegistryRequest, writer: RPCStreamWriter<Fusebox_V1_RegistryEvent>) async throws {
        // Subscribe first, so no change falls between the snapshot (or replay) and the live stream.
        let (stream, continuation) = AsyncStream<PolicyChangeRecord>.makeStream(bufferingPolicy: .bufferingNewest(10_000))
        let id = state.withLockedValue { s -> UInt64 in
            s.nextWatcher += 1
            s.watchers[s.nextWatcher] = (request.registry, continuation)
            return s.nextWatcher
        }
        defer { _ = state.withLockedValue { $0.watchers.removeValue(forKey: id) } }
        var sent: UInt64
        if request.fromVersion > 0 {
            sent = request.fromVersion
            var replay: [PolicyChangeRecord]
            repeat {
                do throws(StoreError) {
                    replay = try await store.history(registry: request.registry, name: nil, afterVersion: sent, limit: 1_000)
                } catch {
                    throw WireConversions.status(error)
                }
                for change in replay {
                    var event = Fusebox_V1_RegistryEvent()
                    event.event = .change(WireConversions.change(change))
                    try await writer.send(event)
                    sent = change.version
                }
            } while replay.count == 1_000
        } else {
            var snapshot = self.snapshot(request.registry) ?? Fusebox_V1_RegistrySnapshot()
            snapshot.name = request.registry
            sent = snapshot.version
            var event = Fusebox_V1_RegistryEvent()
            event.event = .snapshot(snapshot)
            try await writer.send(event)
        }
        for await change in stream where change.version > sent {
            var event = Fusebox_V1_RegistryEvent()
            event.event = .change(WireConversions.change(change))
            try await writer.send(event)
            sent = change.version
        }
    }

    /// Number of open watch streams.
    public var watcherCount: Int { state.withLockedValue { $0.watchers.count } }

    /// Ends every watch (server shutdown).
    public func shutdown() {
        let watchers = state.withLockedValue { s in
            defer { s.watchers = [:] }
            return s.watchers.values.map(\.continuation)
        }
        for watcher in watchers { watcher.finish() }
    }

    private func requireAdmin(_ context: RPCServerContext, action: Fusebox_V1_AuditAction, policy: String) async throws(RPCError) {
        do {
            try authorizer.require(.admin, context)
        } catch {
            _ = try? await audit.record(action, peer: context.peer, policy: policy, reason: "", allowed: false, deniedReason: error.message)
            throw error
        }
    }

    static func checkName(_ name: String, field: String) throws(RPCError) {
        guard (1...128).contains(name.count), name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) else {
            throw RPCError(.invalidArgument, "\(field) (\"\(name)\") must be 1-128 characters of A-Z a-z 0-9 . _ -")
        }
    }
}
