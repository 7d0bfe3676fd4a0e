public import FuseboxAuthority
public import FuseboxCore
import NIOConcurrencyHelpers

/// A clock that moves only when the test says so: sleepers wake when
/// `advance` passes their deadline. Nothing in a test that uses it sleeps
/// for the time under test.
public final class ManualFleetClock: FleetClock {
    private struct Sleeper {
        var deadline: Timestamp
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now: Timestamp
        var sleepers: [UInt64: Sleeper] = [:]
        var next: UInt64 = 0
    }

    private let state: NIOLockedValueBox<State>

    /// A clock at `start` (Unix ms).
    public init(start: Int64 = 1_800_000_000_000) {
        state = NIOLockedValueBox(State(now: Timestamp(milliseconds: start)))
    }

    public func now() -> Timestamp { state.withLockedValue { $0.now } }

    /// Moves time forward and wakes every sleeper whose deadline has come.
    public func advance(by milliseconds: Int64) {
        let due = state.withLockedValue { s -> [CheckedContinuation<Void, any Error>] in
            s.now = s.now.adding(milliseconds: milliseconds)
            let now = s.now
            let ids = s.sleepers.filter { $0.value.deadline <= now }.map(\.key)
            return ids.compactMap { s.sleepers.removeValue(forKey: $0)?.continuation }
        }
        for c in due { c.resume() }
    }

    /// Tasks sleeping on this clock now.
    public var sleepers: Int { state.withLockedValue { $0.sleepers.count } }

    public func sleep(until deadline: Timestamp) async throws {
        let id = state.withLockedValue { s -> UInt64 in
            s.next += 1
            return s.next
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let resumeNow: (any Error)?? = state.withLockedValue { s in
                    if Task.isCancelled { return .some(CancellationError()) }
                    if deadline <= s.now { return .some(nil) }
                    s.sleepers[id] = Sleeper(deadline: deadline, continuation: continuation)
                    return .none
                }
                switch resumeNow {
                case .some(.some(let error)): continuation.resume(throwing: error)
                case .some(.none): continuation.resume()
                case .none: break
                }
            }
        } onCancel: {
            let sleeper = state.withLockedValue { $0.sleepers.removeValue(forKey: id) }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }
}
