public import FuseboxCore

/// A call a guard refused or cut short. Every rejection names the breaker
/// (the guard) and the breaker generation it was decided under, so a log
/// line or a metric can be matched with the fleet's transitions.
public struct GuardError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What refused the call.
    public enum Kind: Sendable, Hashable {
        /// The circuit breaker is OPEN (or HALF_OPEN without a probe permit
        /// for this call). `retryAfter`: when it may let calls through again, if known.
        case circuitOpen(retryAfter: Duration?)
        /// The bulkhead was full, or the call waited in its queue too long.
        case bulkheadFull
        /// The rate limiter had no token. `retryAfter`: when one will be there.
        case rateLimited(retryAfter: Duration?)
        /// The attempt or the whole call ran out of time.
        case timeout
    }

    /// What refused the call.
    public var kind: Kind
    /// The guard's breaker, e.g. "stripe-api".
    public var breaker: String
    /// The breaker generation the decision was made under.
    public var generation: UInt64

    /// A guard error.
    public init(_ kind: Kind, breaker: String, generation: UInt64) {
        self.kind = kind
        self.breaker = breaker
        self.generation = generation
    }

    /// The pattern that refused, as fallback triggers name it.
    public var trigger: FallbackTrigger {
        switch kind {
        case .circuitOpen: return .circuitOpen
        case .bulkheadFull: return .bulkheadFull
        case .rateLimited: return .rateLimited
        case .timeout: return .timeout
        }
    }

    public var description: String {
        switch kind {
        case .circuitOpen(let after):
            return "circuit breaker \"\(breaker)\" is open (generation \(generation))" + (after.map { "; retry after \($0)" } ?? "")
        case .bulkheadFull:
            return "bulkhead of \"\(breaker)\" is full (generation \(generation))"
        case .rateLimited(let after):
            return "rate limit of \"\(breaker)\" reached (generation \(generation))" + (after.map { "; retry after \($0)" } ?? "")
        case .timeout:
            return "call through \"\(breaker)\" timed out (generation \(generation))"
        }
    }
}

/// Errors an operation throws can say how retry and the breaker should treat
/// them. Errors that do not conform are failures of no known class: the
/// breaker counts them, and retry retries them only under `anyFailure`.
public protocol GuardClassifiedError: Error {
    /// The failure's class, e.g. `.serverError` for an HTTP 503.
    var retryCondition: RetryCondition? { get }
    /// A code policies can name in `retryableErrors`, `nonRetryableErrors` or
    /// the breaker's `ignoredErrors`, e.g. "http.503".
    var errorCode: String? { get }
    /// The server's pushback (Retry-After) in milliseconds; negative means
    /// "do not retry".
    var pushbackMs: Int64? { get }
}

extension GuardClassifiedError {
    public var errorCode: String? { nil }
    public var pushbackMs: Int64? { nil }
}

/// How a guard sees one failed attempt: its own rejections and timeouts and
/// cancellation first, then the guard's classifier.
struct ClassifiedFailure {
    var attempt: AttemptFailure
    var code: String?
    var cancelled: Bool

    init(_ error: any Error, classifier: ErrorClassifier) {
        switch error {
        case let e as GuardError:
            switch e.kind {
            case .timeout: attempt = .failed(condition: .timeout, code: "timeout", pushbackMs: nil)
            case .circuitOpen: attempt = .rejected(.circuitOpen)
            case .bulkheadFull: attempt = .rejected(.bulkheadFull)
            case .rateLimited: attempt = .rejected(.rateLimited)
            }
            code = e.kind == .timeout ? "timeout" : nil
            cancelled = false
        case is CancellationError:
            attempt = .failed(condition: nil, code: "cancelled", pushbackMs: -1)
            code = "cancelled"
            cancelled = true
        default:
            let c = classifier.classify(error)
            attempt = .failed(condition: c?.condition, code: c?.code, pushbackMs: c?.pushbackMs)
            code = c?.code
            cancelled = false
        }
    }
}
