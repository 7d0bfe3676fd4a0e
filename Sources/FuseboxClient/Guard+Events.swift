import FuseboxCore

// What a guard announces (`FuseboxConfiguration.onEvent`), and the bulkhead
// priority its calls carry.
extension Guard {
    /// An attempt without a breaker: only its `call` event to report.
    @inline(__always) nonisolated(nonsending) func unbroken<T: Sendable>(_ rt: GuardRuntime, _ operation: @Sendable () async throws -> T) async throws -> T {
        guard onEvent != nil else { return try await limited(rt, generation: 0, operation) }
        let start = ContinuousClock.now
        do {
            let value = try await limited(rt, generation: 0, operation)
            emit(.call(outcome: .success, latency: ContinuousClock.now - start))
            return value
        } catch {
            if let e = error as? GuardError, e.kind != .timeout { throw error }  // refused: it did not run
            let cancelled = ClassifiedFailure(error, classifier: classifier).cancelled
            emit(.call(outcome: cancelled ? .ignored : .failure, latency: ContinuousClock.now - start))
            throw error
        }
    }

    /// Announces `kind` to `FuseboxConfiguration.onEvent`, if set.
    @inline(__always)
    func emit(_ kind: @autoclosure () -> GuardEvent.Kind) {
        guard let onEvent else { return }
        onEvent(GuardEvent(registry: registry, guardName: name, kind: kind()))
    }

    /// A rejection, announced.
    func rejected(_ error: GuardError) -> GuardError {
        healthRecorder.recordRejected()
        emit(.rejected(error.kind))
        return error
    }
}

/// The bulkhead priority of the calls `Guard.run(priority:)` makes, carried
/// to the bulkhead through the retries and timeouts between.
enum BulkheadPriority {
    @TaskLocal static var value = 0
}
