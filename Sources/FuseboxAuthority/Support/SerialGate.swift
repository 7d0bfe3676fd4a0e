/// Lets one async operation at a time through, in arrival order: writes that
/// must reach the store and the watchers in the same order pass through it.
/// (Policy writes only: breakers are ordered per breaker, not globally.)
public actor SerialGate {
    /// An open gate.
    public init() {}
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    public func run<T: Sendable>(_ body: @Sendable () async throws -> T) async rethrows -> T {
        await acquire()
        do {
            let result = try await body()
            release()
            return result
        } catch {
            release()
            throw error
        }
    }

    private func acquire() async {
        guard busy else {
            busy = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    private func release() {
        if waiters.isEmpty { busy = false } else { waiters.removeFirst().resume() }
    }
}
