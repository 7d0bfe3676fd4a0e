import NIOConcurrencyHelpers
import Tracing

/// What one guarded operation did, gathered while it runs and put on its
/// span when it ends. Only made when a tracer records spans.
final class CallTrace: Sendable {
    /// The trace of the operation the current task runs, if traced.
    @TaskLocal static var current: CallTrace?

    private struct State {
        var attempts = 0
        var retries = 0
        var breakerState: String?
        var timeout: String?
        var queuePosition = 0
        var fallback = false
    }

    private let state = NIOLockedValueBox(State())

    func attempt(breakerState: String?) {
        state.withLockedValue { s in
            s.attempts += 1
            if s.breakerState == nil { s.breakerState = breakerState }
        }
    }

    func retried() { state.withLockedValue { $0.retries += 1 } }
    func timedOut(_ kind: String) { state.withLockedValue { $0.timeout = kind } }
    func queued(at position: Int) { state.withLockedValue { $0.queuePosition = position } }
    func fellBack() { state.withLockedValue { $0.fallback = true } }

    /// The attributes, under the names docs/CLIENT.md lists.
    func annotate(_ span: any Span) {
        let s = state.withLockedValue { $0 }
        span.attributes["fusebox.attempts"] = s.attempts
        span.attributes["fusebox.retries"] = s.retries
        if let state = s.breakerState { span.attributes["fusebox.breaker.state"] = state }
        if let timeout = s.timeout { span.attributes["fusebox.timeout"] = timeout }
        span.attributes["fusebox.bulkhead.queue_position"] = s.queuePosition
        span.attributes["fusebox.fallback"] = s.fallback
    }
}

extension Guard {
    /// Runs `body` in a span named `fusebox.guard` (kind client) when the
    /// session's tracer records spans; errors are recorded on it. Without a
    /// tracer this costs one nil check.
    @inline(__always) nonisolated(nonsending) func traced<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        guard let tracer = session.tracer else { return try await body() }
        return try await tracer.withSpan("fusebox.guard", ofKind: .client) { span in
            span.attributes["fusebox.guard"] = name
            span.attributes["fusebox.registry"] = registry
            span.attributes["fusebox.policy"] = policyName
            let trace = CallTrace()
            defer { trace.annotate(span) }
            return try await CallTrace.$current.withValue(trace) { try await body() }
        }
    }
}
