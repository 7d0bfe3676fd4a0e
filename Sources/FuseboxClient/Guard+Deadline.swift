import CoreMetrics
import FuseboxCore
import NIOCore
import Synchronization

extension Guard {
    /// Runs `body` in a child task that the session's deadline timer cancels at
    /// the deadline. The caller's own task is never cancelled, so retry can go
    /// on after an attempt timed out. The child starts immediately on the
    /// caller's thread and runs there until it first suspends: an operation
    /// that completes without suspending costs no thread hop.
    ///
    /// `body` does not escape: the child that runs it is awaited (and
    /// cancelled with the caller) before this returns.
    func withDeadline<T: Sendable>(
        milliseconds ms: Int64, rt: GuardRuntime, kind: GuardEvent.TimeoutKind, generation: UInt64? = nil,
        _ body: @Sendable () async throws -> T
    ) async throws -> T {
        var expired = false
        let result: Result<T, any Error> = await withoutActuallyEscaping(body) { body in
            let race = DeadlineRace()
            let timer = session.deadlines.arm(at: .now() + .milliseconds(ms), race)
            // The deadline timer cancels this handle; it starts on the caller's thread
            // and is awaited (and cancelled with the caller) before returning, so it
            // never outlives the call (nor does `body`). Kept per docs/BENCHMARKS.md
            // ("Why the attempt deadline keeps its one unstructured task": a
            // structured shape costs 4-6x).
            let child = Task.immediate { try await body() }
            race.started(child)
            let result = await withTaskCancellationHandler {
                await child.result
            } onCancel: {
                child.cancel()
            }
            expired = !session.deadlines.disarm(timer) && race.expired
            return result
        }
        if expired {
            (kind == .total ? metrics.totalTimeouts : metrics.attemptTimeouts).increment()
            emit(.timeout(kind))
            CallTrace.current?.timedOut(kind == .total ? "total" : "attempt")
            throw GuardError(.timeout, breaker: name, generation: generation ?? rt.breaker?.gate.snapshot.generation.value ?? 0)
        }
        return try result.get()
    }
}

/// The meeting point of a deadline and the task it limits: whichever comes
/// second, the task starting or the deadline passing, cancels the task.
/// Lock-free: one atomic word holds both events; the task is written once,
/// before the "started" bit that publishes it. Not generic: a generic class's
/// metadata is looked up on every call.
private final class DeadlineRace: DeadlineAction, @unchecked Sendable {
    private static var startedBit: Int { 1 }
    private static var expiredBit: Int { 2 }
    private let events = Atomic<Int>(0)
    private var task: (any CancellableTask)?

    func started(_ task: some CancellableTask) {
        self.task = task
        let before = events.bitwiseOr(Self.startedBit, ordering: .acquiringAndReleasing).oldValue
        if before & Self.expiredBit != 0 { task.cancel() }
    }

    func deadlinePassed() {
        let before = events.bitwiseOr(Self.expiredBit, ordering: .acquiringAndReleasing).oldValue
        if before & Self.startedBit != 0 { task?.cancel() }
    }

    var expired: Bool { events.load(ordering: .acquiring) & Self.expiredBit != 0 }
}

/// A task handle of any result type, to cancel.
private protocol CancellableTask: Sendable {
    func cancel()
}

extension Task: CancellableTask {}
