import FuseboxCore
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
        while !Task.isCancelled {
            do { try await Task.sleep(for: .milliseconds(100)) } catch { return }
            hub.resync()
        }
    }
}
