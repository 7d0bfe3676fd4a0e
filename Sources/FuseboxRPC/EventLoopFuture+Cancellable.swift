import NIOConcurrencyHelpers
import NIOCore

extension EventLoopFuture where Value: Sendable {
    /// The future's value, like `get()`, except that the waiting task stops
    /// waiting as soon as it is cancelled (throwing `CancellationError`); the
    /// future itself goes on. `get()` ignores cancellation, so a call whose
    /// deadline passed while a connection was being set up used to wait for
    /// the whole set-up (a TLS handshake with a frozen server: indefinitely).
    func valueUnlessCancelled() async throws -> Value {
        let waiter = NIOLockedValueBox<CheckedContinuation<Value, any Error>?>(nil)
        @Sendable func resume(_ result: Result<Value, any Error>) {
            let continuation = waiter.withLockedValue { c -> CheckedContinuation<Value, any Error>? in
                defer { c = nil }
                return c
            }
            continuation?.resume(with: result)
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                waiter.withLockedValue { $0 = continuation }
                whenComplete { resume($0) }
                // Cancelled before the continuation was stored: the handler found nothing to resume.
                if Task.isCancelled { resume(.failure(CancellationError())) }
            }
        } onCancel: {
            resume(.failure(CancellationError()))
        }
    }
}
