public import FuseboxCore
import NIOConcurrencyHelpers

/// An event of a registry watch.
public enum RegistryWatchEvent: Sendable {
    /// The registry as a whole (empty, with version 0, if it does not exist):
    /// first, and again after the watcher fell behind.
    case snapshot(StoredRegistry)
    /// Changes in version order: one as it happens, or those after the
    /// version a watcher resumes from.
    case changes([PolicyChangeRecord])
}

/// Named registries of policies, as a domain service: reads from memory;
/// every write goes to the store first (durable, with its audit entry in the
/// same transaction; writes that arrive together share one transaction), then
/// to memory and the watchers, in the store's order, so watchers see versions
/// in order.
public final class PolicyRegistry: Sendable {
    private struct State {
        var registries: [String: StoredRegistry] = [:]
        var listeners: [@Sendable (PolicyChangeRecord) -> Void] = []
        /// Writers of a shared store waiting for their change to come back through the feed.
        var waiting: [(id: UInt64, registry: String, version: UInt64, continuation: CheckedContinuation<Void, Never>)] = []
        var nextWaiter: UInt64 = 0
        /// Writes waiting to be stored in the next group, with their tickets.
        var queued: [(ticket: UInt64, write: PolicyWrite)] = []
        var nextTicket: UInt64 = 0
        /// Results of stored groups, until their writers pick them up.
        var answers: [UInt64: Result<PolicyChangeRecord, StoreError>] = [:]
        /// Groups of writes this process has stored, and the writes in them.
        var groups: (count: UInt64, writes: UInt64) = (0, 0)
    }

    private let store: any PolicyStore
    private let clock: any FleetClock
    /// Other writers share the store (replicas on etcd): changes reach memory
    /// only through `applyFromStore`, in the store's order.
    private let shared: Bool
    private let limits: AuthorityLimits
    private let gate = SerialGate()
    /// Orders a shared store's writes (its feed applies them under `gate`).
    private let writeGate = SerialGate()
    private let state = NIOLockedValueBox(State())
    /// Registry watches.
    public let hub = WatchHub<RegistryWatchEvent>()

    /// Loads every registry from `store`.
    ///
    /// `shared`: the store has other writers (replicas), whose changes, and
    /// this one's own, are applied from the store's change feed through
    /// `applyFromStore`; a write returns once its change has come back.
    public init(store: any PolicyStore, clock: any FleetClock, shared: Bool = false, limits: AuthorityLimits = AuthorityLimits()) async throws(StoreError) {
        self.store = store
        self.clock = clock
        self.shared = shared
        self.limits = limits
        let loaded = try await store.loadRegistries()
        state.withLockedValue { s in for r in loaded { s.registries[r.name] = r } }
    }

    /// Loads the presets into `default` if it does not exist yet (first start).
    public func seedPresetsIfEmpty() async throws(StoreError) {
        guard registryVersion("default") == 0 else { return }
        for preset in Presets.all {
            do {
                if shared {
                    // Replicas starting together must not load a preset twice
                    // (expected version 0: create only). Nothing waits for the
                    // feed, which starts with serving and begins with a re-read
                    // of the store, presets included.
                    _ = try await store.putPolicy(
                        registry: "default", policy: preset, expectedVersion: 0, actor: "fuseboxd",
                        reason: "preset loaded on first start", atMs: clock.now().milliseconds, audit: nil)
                } else {
                    _ = try await put(
                        registry: "default", policy: preset, expectedVersion: nil, actor: "fuseboxd",
                        reason: "preset loaded on first start", audit: nil)
                }
            } catch where shared && error.code == .versionConflict {
                continue
            }
        }
    }

    // MARK: Reads

    /// The current policy `registry/name`.
    public func policy(registry: String, name: String) -> Policy? {
        state.withLockedValue { $0.registries[registry]?.policies[name]?.policy }
    }

    /// The current record of `registry/name`.
    public func record(registry: String, name: String) -> StoredPolicy? {
        state.withLockedValue { $0.registries[registry]?.policies[name] }
    }

    /// A registry's current version (0 if it does not exist).
    public func registryVersion(_ registry: String) -> UInt64 {
        state.withLockedValue { $0.registries[registry]?.version ?? 0 }
    }

    /// A registry at its current version.
    public func registry(_ name: String) -> StoredRegistry? {
        state.withLockedValue { $0.registries[name] }
    }

    /// Every registry, sorted by name.
    public func registries() -> [StoredRegistry] {
        state.withLockedValue { $0.registries.values.sorted { $0.name < $1.name } }
    }

    /// Changes after `afterVersion`, oldest first.
    public func history(registry: String, name: String?, afterVersion: UInt64, limit: Int) async throws(StoreError) -> [PolicyChangeRecord] {
        try await store.history(registry: registry, name: name, afterVersion: afterVersion, limit: limit)
    }

    /// Calls `listener` after every durable write, in version order (the
    /// breaker coordinator follows policy changes this way). It must not block.
    public func addListener(_ listener: @escaping @Sendable (PolicyChangeRecord) -> Void) {
        state.withLockedValue { $0.listeners.append(listener) }
    }

    // MARK: Writes

    /// Creates or replaces a policy; `audit` is written in the same transaction.
    public func put(
        registry: String, policy: Policy, expectedVersion: UInt64?, actor: String, reason: String, audit: AuditRecord?
    ) async throws(StoreError) -> PolicyChangeRecord {
        let known = state.withLockedValue { s in (s.registries[registry] != nil, s.registries.count) }
        if !known.0, known.1 >= limits.maxRegistries {
            AuthorityMetrics.limitReached("registries")
            throw StoreError(
                .resourceExhausted,
                "the server holds \(limits.maxRegistries) registries, its limit (limits.maxRegistries); registry \"\(registry)\" was not created")
        }
        return try await write(.put(
            registry: registry, policy: policy, expectedVersion: expectedVersion, actor: actor, reason: reason,
            atMs: clock.now().milliseconds, audit: audit))
    }

    /// Deletes a policy; `audit` is written in the same transaction.
    public func delete(
        registry: String, name: String, expectedVersion: UInt64?, actor: String, reason: String, audit: AuditRecord?
    ) async throws(StoreError) -> PolicyChangeRecord {
        try await write(.delete(
            registry: registry, name: name, expectedVersion: expectedVersion, actor: actor, reason: reason,
            atMs: clock.now().milliseconds, audit: audit))
    }

    /// Writes through the store, then applies to memory and tells watchers
    /// and listeners, in the store's order.
    ///
    /// Group commit: a write joins the queue, then waits for the gate. A writer
    /// whose write is still queued when its turn comes stores everything queued
    /// at that moment as one group (one transaction, one sync; on etcd, one
    /// transaction per replica's group) and answers
    /// every writer in it; a writer whose write went in an earlier group finds
    /// its answer waiting and leaves at once. So writes that arrive while a
    /// group is being stored share the next sync, instead of each waiting for
    /// its own.
    private func write(_ write: PolicyWrite) async throws(StoreError) -> PolicyChangeRecord {
        let ticket = state.withLockedValue { s in
            s.nextTicket += 1
            s.queued.append((s.nextTicket, write))
            return s.nextTicket
        }
        // A shared store's writes take their own gate: memory follows the
        // store's feed, which must not wait behind a write in flight.
        await (shared ? writeGate : gate).run {
            // Stored in an earlier group while this writer waited for the gate:
            // return at once, leaving what is queued to its own writers, each
            // of whom is in line behind (or is) this one.
            guard self.state.withLockedValue({ $0.answers[ticket] == nil }) else { return }
            await self.storeQueued()
        }
        let result = state.withLockedValue { s in s.answers.removeValue(forKey: ticket) }
        guard let result else { throw StoreError(.internal, "policy write \(ticket) was not answered") }
        let change = try result.get()
        // A shared store orders writes; memory follows its feed.
        if shared { await waitUntilApplied(registry: change.registry, version: change.version) }
        return change
    }

    /// Stores the queued writes as one group, then (unless the store is
    /// shared, whose feed does it) applies and publishes them in order, and
    /// answers them. Runs inside the gate.
    private func storeQueued() async {
        let group = state.withLockedValue { s in
            defer { s.queued = [] }
            return s.queued
        }
        guard !group.isEmpty else { return }
        // The group is stored for every writer in it, not only for the one
        // whose task runs this: in a task of its own, awaited here (it never
        // outlives the call), so that writer's cancellation (its client left,
        // its deadline passed) cannot fail the others' writes, or leave them
        // unsure whether a transaction the store applied was stored.
        let writes = group.map(\.write)
        let results = await Task { await self.store.writePolicies(writes) }.value
        state.withLockedValue { $0.groups = ($0.groups.count + 1, $0.groups.writes + UInt64(group.count)) }
        for ((ticket, _), result) in zip(group, results) {
            if !shared, case .success(let change) = result {
                let listeners = hub.publish([.changes([change])]) {
                    state.withLockedValue { s in
                        Self.apply(change, to: &s.registries)
                        return s.listeners
                    }
                }
                for listener in listeners { listener(change) }
            }
            state.withLockedValue { $0.answers[ticket] = result }
        }
    }

    // MARK: A shared store's feed

    /// A change read from the shared store's feed, in the store's order: applied
    /// (unless memory already holds that registry version or a newer one),
    /// published to watchers and listeners, and its writer answered.
    public func applyFromStore(_ change: PolicyChangeRecord) async {
        await gate.run {
            let (fresh, listeners) = hub.publish(
                state.withLockedValue { ($0.registries[change.registry]?.version ?? 0) < change.version } ? [.changes([change])] : []
            ) {
                state.withLockedValue { s -> (Bool, [@Sendable (PolicyChangeRecord) -> Void]) in
                    guard (s.registries[change.registry]?.version ?? 0) < change.version else { return (false, []) }
                    Self.apply(change, to: &s.registries)
                    return (true, s.listeners)
                }
            }
            if fresh { for listener in listeners { listener(change) } }
            resumeWriters()
        }
    }

    /// Replaces every registry with `registries` (a re-read of the shared
    /// store after its feed position was compacted away). Watchers get fresh
    /// snapshots; listeners hear of every policy that changed.
    public func resetFromStore(_ registries: [StoredRegistry]) async {
        await gate.run {
            let (changed, listeners) = state.withLockedValue { s -> ([PolicyChangeRecord], [@Sendable (PolicyChangeRecord) -> Void]) in
                var changed: [PolicyChangeRecord] = []
                for r in registries {
                    let old = s.registries[r.name]
                    guard (old?.version ?? 0) < r.version else { continue }
                    for (name, p) in r.policies where old?.policies[name] != p {
                        changed.append(PolicyChangeRecord(
                            registry: r.name, version: p.version, name: name, kind: old?.policies[name] == nil ? .created : .updated,
                            before: old?.policies[name]?.policy, after: p.policy, actor: p.updatedBy, atMs: p.updatedAtMs, reason: "re-read from the store"))
                    }
                    s.registries[r.name] = r
                }
                return (changed, s.listeners)
            }
            hub.resnapshotAll()
            for change in changed { for listener in listeners { listener(change) } }
            resumeWriters()
        }
    }

    /// How long a writer waits for its change to come back through the feed
    /// before answering anyway (the write is durable; only this replica's
    /// copy lags).
    static let feedWait: Duration = .seconds(5)

    /// Groups of policy writes this process has stored (group commit), and
    /// the writes in them. A replica that forwards writes to the leader stores none.
    public var storedGroups: (count: UInt64, writes: UInt64) { state.withLockedValue { $0.groups } }

    /// Returns once memory holds `registry` at `version` or later (a shared
    /// store's change, written here or through another replica, has come
    /// back through the feed), or after `feedWait` at most.
    public func waitUntilApplied(registry: String, version: UInt64) async {
        let id = state.withLockedValue { s in
            s.nextWaiter += 1
            return s.nextWaiter
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let done = self.state.withLockedValue { s -> Bool in
                        if (s.registries[registry]?.version ?? 0) >= version { return true }
                        s.waiting.append((id, registry, version, continuation))
                        return false
                    }
                    if done { continuation.resume() }
                }
            }
            group.addTask {
                // Cancelled once the change has come back: nothing to do then.
                do { try await Task.sleep(for: Self.feedWait) } catch { return }
                // Too long: this writer alone is answered (its write is
                // durable; only this replica's copy lags). Every other one
                // still waits for its own change.
                self.resumeWriter(id)
            }
            await group.next()
            group.cancelAll()
        }
    }

    private func resumeWriter(_ id: UInt64) {
        let continuation = state.withLockedValue { s -> CheckedContinuation<Void, Never>? in
            guard let i = s.waiting.firstIndex(where: { $0.id == id }) else { return nil }
            return s.waiting.remove(at: i).continuation
        }
        continuation?.resume()
    }

    private func resumeWriters() {
        let ready = state.withLockedValue { s -> [CheckedContinuation<Void, Never>] in
            var ready: [CheckedContinuation<Void, Never>] = []
            s.waiting.removeAll { w in
                guard (s.registries[w.registry]?.version ?? 0) >= w.version else { return false }
                ready.append(w.continuation)
                return true
            }
            return ready
        }
        for c in ready { c.resume() }
    }

    private static func apply(_ change: PolicyChangeRecord, to registries: inout [String: StoredRegistry]) {
        var r = registries[change.registry] ?? StoredRegistry(name: change.registry, version: 0, updatedAtMs: 0, policies: [:])
        r.version = change.version
        r.updatedAtMs = change.atMs
        if let after = change.after {
            r.policies[change.name] = StoredPolicy(policy: after, version: change.version, updatedAtMs: change.atMs, updatedBy: change.actor)
        } else {
            r.policies[change.name] = nil
        }
        registries[change.registry] = r
    }

    // MARK: Watches

    /// Most changes replayed to a resuming watcher; further behind, it gets a snapshot.
    public static let replayLimit = 10_000

    /// Starts a watch of `registry`: a snapshot, or with `fromVersion` > 0 the
    /// changes after it (a snapshot if it is further behind than
    /// `replayLimit`), then every change. Returns the watch's id.
    public func watch(registry: String, fromVersion: UInt64, sink: any WatchSink<RegistryWatchEvent>) async throws(StoreError) -> UInt64 {
        let snapshot: @Sendable () -> RegistryWatchEvent = { [state] in
            .snapshot(state.withLockedValue { $0.registries[registry] } ?? StoredRegistry(name: registry, version: 0, updatedAtMs: 0, policies: [:]))
        }
        let accepts: @Sendable (RegistryWatchEvent) -> Bool = { event in
            if case .changes(let changes) = event { return changes.first?.registry == registry }
            return false
        }
        guard fromVersion > 0 else { return hub.subscribe(sink, accepts: accepts, snapshot: snapshot) }
        // No write may land between the replay and the live stream.
        let result: Result<UInt64, StoreError> = await gate.run {
            do throws(StoreError) {
                let replay = try await store.history(registry: registry, name: nil, afterVersion: fromVersion, limit: Self.replayLimit + 1)
                guard replay.count <= Self.replayLimit else { return .success(hub.subscribe(sink, accepts: accepts, snapshot: snapshot)) }
                let first = NIOLockedValueBox(true)
                return .success(hub.subscribe(sink, accepts: accepts, snapshot: {
                    // The first "snapshot" is the replay; after falling behind, a real one.
                    let isFirst = first.withLockedValue { f in defer { f = false }; return f }
                    return isFirst ? .changes(replay) : snapshot()
                }))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Ends a watch.
    public func unwatch(_ id: UInt64) { hub.unsubscribe(id) }

    /// Open watches.
    public var watcherCount: Int { hub.count }

    /// Ends every watch (server shutdown).
    public func shutdown() { hub.finishAll() }
}
