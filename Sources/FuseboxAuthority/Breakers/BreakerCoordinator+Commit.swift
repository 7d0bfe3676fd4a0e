import FuseboxCore
import NIOConcurrencyHelpers
import Logging

extension BreakerCoordinator {
    /// Stores queued changes, everything queued at once in one transaction,
    /// until cancelled; then stores what is left.
    func runCommitter() async {
        while true {
            let ringing = await commitBell.wait()
            await commitQueued()
            if !ringing { break }
        }
        await commitQueued()  // shutting down: what is queued still goes to the store
    }

    /// Commits everything queued now, group after group, until the queue is empty.
    func commitQueued() async {
        while true {
            let limits = store.commitLimits
            let group = state.withLockedValue { s -> [Pending] in
                // Order is kept: a group ends where the store's limits would be passed.
                let count = limits.taking(s.queue.lazy.map { (key: $0.key, audits: $0.audits.count) })
                let taken = Array(s.queue.prefix(count))
                s.queue.removeFirst(taken.count)
                s.inFlight = taken.count
                return taken
            }
            guard !group.isEmpty else { return }
            let result: Result<[UInt64], StoreError>
            do throws(StoreError) {
                result = .success(try await store.commit(group.map { BreakerCommit(breaker: $0.stored, audits: $0.audits, evicted: $0.evicted) }))
            } catch {
                result = .failure(error)
            }
            switch result {
            case .success(let ids): stored(group, auditIDs: ids)
            case .failure(let error):
                refused(group, error)
                // Give the store a moment; what the rules decided is tried
                // again. Cancelled (shutdown, or a replica stepping down):
                // stop here rather than fail every queued change at once.
                do { try await Task.sleep(for: .milliseconds(500)) } catch { return }
            }
        }
    }

    /// The group is durable: make it visible, answer its callers, publish it.
    ///
    /// The callers are answered before the events are offered to the
    /// watchers: the reporter whose outcome tripped a breaker gets its reply
    /// while the fan-out to (possibly thousands of) watchers is still being
    /// written, not after the last of them. The state is visible (and durable)
    /// before either, so a caller that reads it after its reply sees it.
    private func stored(_ group: [Pending], auditIDs: [UInt64]) {
        hub.publish(buildEvents(group)) {
            let waiters = state.withLockedValue { s -> [(CheckedContinuation<Result<[UInt64], StoreError>, Never>, [UInt64])] in
                s.commits += 1
                s.retryAt = nil
                s.inFlight = 0
                var resumed: [(CheckedContinuation<Result<[UInt64], StoreError>, Never>, [UInt64])] = []
                var next = auditIDs.makeIterator()
                for p in group {
                    var ids: [UInt64] = []
                    for _ in p.audits { if let id = next.next() { ids.append(id) } }
                    if !p.evicted, var entry = s.entries[p.key] {
                        entry.visible = p.stored.status
                        entry.exists = true
                        entry.pending = max(0, entry.pending - 1)
                        s.entries[p.key] = entry
                    }
                    guard !p.resolved else { continue }
                    let waiting = s.waiters.removeValue(forKey: p.ticket) ?? []
                    // An operator's call collects its audit ids even if it comes to wait late.
                    if waiting.isEmpty, p.undo != nil { s.auditIDs[p.ticket] = ids }
                    for w in waiting { resumed.append((w, ids)) }
                    s.resolvedThrough = max(s.resolvedThrough, p.ticket)
                }
                return resumed
            }
            // Resuming only schedules each caller's task; it runs beside the fan-out.
            for (waiter, ids) in waiters { waiter.resume(returning: .success(ids)) }
        }
        AuthorityMetrics.committed()
        state.withLockedValue { if $0.storeProblem != nil { $0.storeProblem = nil } }
        for p in group {
            if p.created { AuthorityMetrics.state(p.key, p.stored.status) }
            for t in p.transitions {
                AuthorityMetrics.transition(p.key, t)
                logger.info("breaker transition", metadata: [
                    "registry": "\(p.key.registry)", "breaker": "\(p.key.name)", "policy": "\(p.policy)",
                    "from": "\(t.from.displayName)", "to": "\(t.status.state.displayName)",
                    "generation": "\(t.status.generation.value)", "reason": "\(t.status.reason)",
                    "clients": "\(t.contributingClients.joined(separator: ","))",
                ])
            }
        }
    }

    /// Events for the group's transitions, numbered in publish order.
    private func buildEvents(_ group: [Pending]) -> [BreakerWatchEvent] {
        var events: [BreakerWatchEvent] = []
        let count = group.reduce(0) { $0 + $1.transitions.count }
        guard count > 0 else { return [] }
        let first = state.withLockedValue { s -> UInt64 in
            defer { s.published += UInt64(count) }
            return s.published + 1
        }
        var sequence = first
        for p in group {
            for t in p.transitions {
                events.append(.transition(BreakerTransitionEvent(sequence: sequence, key: p.key, policy: p.policy, transition: t)))
                sequence += 1
            }
        }
        return events
    }

    /// The store refused the group: nothing of it becomes visible and its
    /// callers are told. Operator actions are undone, together with what was
    /// queued after them for the same breaker; the rules' own transitions
    /// are queued again, ahead of newer ones, for when the store recovers.
    private func refused(_ group: [Pending], _ error: StoreError) {
        logger.error("could not store breaker changes; the previous states stay visible", metadata: [
            "changes": "\(group.count)", "error": "\(error)",
        ])
        AuthorityMetrics.commitFailed()
        state.withLockedValue { $0.storeProblem = "\(error)" }
        let now = clock.now()
        let waiters = state.withLockedValue { s -> [CheckedContinuation<Result<[UInt64], StoreError>, Never>] in
            var resumed: [CheckedContinuation<Result<[UInt64], StoreError>, Never>] = []
            s.inFlight = 0
            var retry: [Pending] = []
            var undone: Set<BreakerKey> = []
            for var p in group {
                if !p.resolved {
                    resumed += s.waiters.removeValue(forKey: p.ticket) ?? []
                    s.failures[p.ticket] = error
                    s.resolvedThrough = max(s.resolvedThrough, p.ticket)
                    p.resolved = true
                }
                if undone.contains(p.key) { continue }
                if p.undo != nil || p.undoRemoves {
                    undone.insert(p.key)
                    if p.undoRemoves {
                        s.entries[p.key] = nil
                        s.perRegistry[p.key.registry, default: 1] -= 1
                    } else if let machine = p.undo, var entry = s.entries[p.key] {
                        entry.machine = machine
                        s.entries[p.key] = entry
                    }
                } else {
                    retry.append(p)
                }
            }
            // What was queued after an undone action for the same breaker was
            // decided from the undone state: it goes too.
            let dropped = s.queue.filter { undone.contains($0.key) }
            for p in dropped {
                resumed += s.waiters.removeValue(forKey: p.ticket) ?? []
                s.failures[p.ticket] = error
            }
            s.queue = retry + s.queue.filter { !undone.contains($0.key) }
            for key in undone {
                guard var entry = s.entries[key] else { continue }
                entry.pending = s.queue.filter { $0.key == key }.count
                s.entries[key] = entry
            }
            if s.failures.count > 10_000 {
                for ticket in s.failures.keys.sorted().prefix(5_000) { s.failures[ticket] = nil }
            }
            s.retryAt = now.adding(milliseconds: 1_000)
            for key in undone { schedule(&s, key) }
            return resumed
        }
        for w in waiters { w.resume(returning: .failure(error)) }
        if !state.withLockedValue({ $0.queue.isEmpty }) { commitBell.ring() }
    }
}

extension BreakerCoordinator {
    /// Runs only the committer (tests that move time by hand and want no timer).
    public func runCommitterForTests() async {
        await runCommitter()
    }
}
