import FuseboxCore
import Logging
import NIOConcurrencyHelpers

extension BreakerCoordinator {
    /// Sleeps until the earliest breaker deadline (or until an earlier one is
    /// scheduled), then applies what time changed to the breakers that are due.
    func runTimers() async {
        while !Task.isCancelled {
            let earliest = state.withLockedValue { $0.timers.earliest }
            if let earliest {
                let clock = self.clock
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { try? await clock.sleep(until: earliest) }
                    group.addTask { _ = await self.timerBell.wait() }
                    await group.next()
                    group.cancelAll()
                }
            } else if !(await timerBell.wait()) {
                return
            }
            advanceDueBreakers()
        }
    }

    /// Applies `advance(to:)` to every breaker whose deadline has come.
    /// Public for tests that drive time by hand and want it done now.
    public func advanceDueBreakers() {
        let now = clock.now()
        state.withLockedValue { s in
            while let (deadline, key) = s.timers.popDue(at: now) {
                guard let entry = s.entries[key], entry.scheduled == deadline else { continue }  // superseded
                s.entries[key]?.scheduled = nil
                guard let next = entry.machine.nextDeadline, next <= now else {
                    schedule(&s, key)
                    continue
                }
                _ = apply(&s, key, createWith: nil, at: now) { machine in (machine.advance(to: now), ()) }
            }
        }
    }

    /// Sends fresh snapshots to watchers that fell behind, once they can take them.
    func runResync() async {
        await hub.runResync()
    }
}

extension BreakerCoordinator {
    /// Evicts idle breakers every tenth of the idle period (at least every
    /// second), until cancelled.
    func runEviction() async {
        guard limits.idleEvictionMs > 0 else { return }  // nothing to do; the others keep running
        let period = max(limits.idleEvictionMs / 10, 1_000)
        while !Task.isCancelled {
            do { try await clock.sleep(until: clock.now().adding(milliseconds: period)) } catch { return }
            evictIdleBreakers()
        }
    }

    /// Forgets breakers nobody has reported on, asked a permit for or acted
    /// on for `limits.idleEvictionMs`, if they are plainly CLOSED: no
    /// override, no permit, nothing waiting to be stored. They are deleted
    /// from the store in order with everything else; the generation floor
    /// rises to theirs, so a breaker created again under the same name starts
    /// above it. Returns how many were evicted.
    @discardableResult
    public func evictIdleBreakers() -> Int {
        guard limits.idleEvictionMs > 0 else { return 0 }
        let now = clock.now()
        let evicted = state.withLockedValue { s -> Int in
            let idle = s.entries.filter { key, e in
                e.exists && e.pending == 0 && e.machine.status.state == .closed && e.machine.status.evaluatedState == .closed
                    && e.machine.activeOverride == nil && e.machine.permits.outstanding.isEmpty
                    && now.milliseconds(since: e.lastActivity) >= limits.idleEvictionMs
            }
            for (key, entry) in idle.sorted(by: { $0.key < $1.key }) {
                s.entries[key] = nil
                s.perRegistry[key.registry, default: 1] -= 1
                s.floor = max(s.floor, entry.machine.status.generation.value)
                s.nextTicket += 1
                let stored = StoredBreaker(
                    registry: key.registry, name: key.name, policy: entry.policy, status: entry.machine.status,
                    override: nil, overrideUntilMs: nil, rule: entry.machine.policy)
                s.queue.append(Pending(
                    ticket: s.nextTicket, key: key, policy: entry.policy, stored: stored, transitions: [], audits: [],
                    evicted: true))
                s.evictions += 1
            }
            return idle.count
        }
        if evicted > 0 {
            AuthorityMetrics.evicted(evicted)
            logger.info("idle breakers evicted", metadata: ["count": "\(evicted)", "idleMs": "\(limits.idleEvictionMs)"])
            commitBell.ring()
        }
        return evicted
    }
}
