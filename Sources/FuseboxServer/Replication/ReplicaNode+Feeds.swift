import FuseboxAuthority
import FuseboxCore
import FuseboxEtcd
import Logging
import NIOConcurrencyHelpers

/// A replica's copies of etcd (policies and breakers, each read once and
/// then followed through etcd's watch) and its heartbeat record.
extension ReplicaNode {
    // MARK: Feeds

    /// Policies: read everything, then follow `P/history/` from the next
    /// revision; re-read everything after a compaction or a broken watch.
    func runPolicyFeed() async {
        await follow(
            name: "policies",
            load: { () async throws(StoreError) -> Int64 in
                let (registries, revision) = try await self.store.loadRegistriesAndRevision()
                await self.registry.resetFromStore(registries)
                return revision
            },
            prefix: store.layout.history,
            apply: { event async throws(StoreError) in
                guard case .put(let kv) = event else { return }
                let change = try EtcdRecords.change(try EtcdRecords.decode(EtcdRecords.Change.self, kv.value, key: kv.key))
                await self.registry.applyFromStore(change)
            },
            live: { self.setFeed(policies: $0) })
    }

    /// Breakers: read everything into the mirror, then follow `P/breakers/`.
    func runBreakerFeed() async {
        await follow(
            name: "breakers",
            load: { () async throws(StoreError) -> Int64 in
                let (breakers, revision) = try await self.store.loadBreakersAndRevision()
                self.mirror.reset(breakers, revision: revision)
                return revision
            },
            prefix: store.layout.breakers,
            apply: { event async throws(StoreError) in
                switch event {
                case .put(let kv):
                    let b = try EtcdRecords.breaker(try EtcdRecords.decode(EtcdRecords.Breaker.self, kv.value, key: kv.key))
                    self.mirror.apply(b, revision: kv.modRevision)
                case .delete(let kv):
                    if let key = self.store.layout.breakerKey(kv.key) { self.mirror.remove(key, revision: kv.modRevision) }
                case .progress, .compacted:
                    break
                }
            },
            live: { self.setFeed(breakers: $0) })
    }

    func follow(
        name: String, load: @escaping @Sendable () async throws(StoreError) -> Int64, prefix: [UInt8],
        apply: @escaping @Sendable (EtcdWatchEvent) async throws(StoreError) -> Void, live: @escaping @Sendable (Bool) -> Void
    ) async {
        var failures = 0
        while !Task.isCancelled {
            do throws(StoreError) {
                let revision = try await load()
                live(true)
                failures = 0
                let watch = client.watch(prefix, rangeEnd: EtcdKeys.prefixEnd(prefix), startRevision: revision + 1)
                let outcome = await withTaskGroup(of: String?.self) { group -> String in
                    group.addTask {
                        do throws(EtcdError) {
                            try await watch.run()
                            return nil
                        } catch {
                            return "its watch failed: \(error.message)"
                        }
                    }
                    group.addTask {
                        for await event in watch {
                            if case .compacted(let r) = event { return "its watch position was compacted away (revision \(r)); re-reading" }
                            do throws(StoreError) { try await apply(event) } catch { return "a change could not be applied: \(error.message)" }
                        }
                        return nil
                    }
                    var reason: String?
                    while let next = await group.next() {
                        if let r = next { reason = r; break }
                    }
                    group.cancelAll()
                    return reason ?? "its watch ended"
                }
                if Task.isCancelled { return }
                logger.warning("this replica's copy of the \(name) is re-read", metadata: ["reason": "\(outcome)"])
                if !outcome.contains("compacted") { live(false) }
            } catch {
                live(false)
                failures += 1
                logger.error("cannot read the \(name) from etcd", metadata: ["error": "\(error.message)"])
                try? await Task.sleep(for: .milliseconds(min(2_000, 100 * (1 << min(failures, 5)))))
            }
        }
    }

    // MARK: Heartbeat

    /// `P/replicas/<id>` every second, bound to the lease: what `fusebox
    /// cluster status` lists. A put that fails marks etcd unreachable.
    func runHeartbeat() async {
        var misses = 0
        while !Task.isCancelled {
            let (lease, started) = state.withLockedValue { ($0.leaseID, $0.startedAtMs) }
            if lease != 0 {
                let record = EtcdRecords.Replica(
                    id: settings.replicaId, address: advertise, version: settings.version, startedAtMs: started,
                    appliedRevision: max(mirror.revision, 0), serving: isServing, heartbeatMs: clock.now().milliseconds)
                do {
                    _ = try await client.put(store.layout.replica(settings.replicaId), try EtcdRecords.encode(record), lease: lease)
                    misses = 0
                    setEtcdReachable(true)
                } catch {
                    misses += 1
                    if misses >= 2 { setEtcdReachable(false) }
                }
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }
}
