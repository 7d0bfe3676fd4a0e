import CoreMetrics
public import Foundation
public import FuseboxCore
import Logging
import NIOConcurrencyHelpers

/// A result type a policy's static fallback response (`staticResponse`: a
/// content type and a body) can become. `String`, `[UInt8]`, `Data` and
/// `StaticFallbackResponse` adopt it; a service's own types can.
public protocol StaticFallbackRepresentable: Sendable {
    /// The value for a static response; nil if this type cannot represent it.
    init?(staticFallbackContentType contentType: String, body: [UInt8])
}

/// A policy's static fallback response as it is.
public struct StaticFallbackResponse: StaticFallbackRepresentable, Hashable {
    /// The response's content type, e.g. `application/json`.
    public var contentType: String
    /// The response's body.
    public var body: [UInt8]

    public init(staticFallbackContentType contentType: String, body: [UInt8]) {
        self.contentType = contentType
        self.body = body
    }
}

extension String: StaticFallbackRepresentable {
    /// The body as UTF-8 text.
    public init?(staticFallbackContentType contentType: String, body: [UInt8]) {
        self.init(decoding: body, as: UTF8.self)
    }
}

extension Array: StaticFallbackRepresentable where Element == UInt8 {
    /// The body's bytes.
    public init?(staticFallbackContentType contentType: String, body: [UInt8]) {
        self = body
    }
}

extension Data: StaticFallbackRepresentable {
    /// The body's bytes.
    public init?(staticFallbackContentType contentType: String, body: [UInt8]) {
        self.init(body)
    }
}

/// What a fallback handler is told about the failure it answers.
public struct FallbackContext: Sendable {
    /// The guard (and breaker) whose call failed.
    public var guardName: String
    /// The failure: a `GuardError` for a rejection or timeout, else what the operation threw.
    public var error: any Error
    /// Which of the policy's triggers it is.
    public var trigger: FallbackTrigger
}

/// A fallback handler, registered with `Fusebox.registerFallback(_:_:)` and
/// named by policies (`fallback.action: handler`). Its value must be of the
/// guarded call's result type; another type leaves the failure as it is.
public typealias FallbackHandler = @Sendable (FallbackContext) async throws -> any Sendable

/// The fallback handlers a process registered, by name.
final class FallbackHandlers: Sendable {
    private let handlers = NIOLockedValueBox<[String: FallbackHandler]>([:])

    func register(_ name: String, _ handler: @escaping FallbackHandler) {
        handlers.withLockedValue { $0[name] = handler }
    }

    subscript(name: String) -> FallbackHandler? {
        handlers.withLockedValue { $0[name] }
    }
}

extension Guard {
    /// The value the policy's fallback section gives for `error`: nil when it
    /// has none, does not answer this failure, or cannot give a `T` (no
    /// cached value for a stale-cache fallback, a static response `T` cannot
    /// represent, a handler not registered or returning another type).
    func policyFallback<T: Sendable>(_ rt: GuardRuntime, _ error: any Error, cacheKey: String?) async throws -> T? {
        guard let fallback = rt.policy.fallback, !(error is CancellationError) else { return nil }
        let trigger = (error as? GuardError)?.trigger ?? .failure
        guard fallback.answers(trigger) else { return nil }
        let value: T?
        switch fallback.action {
        case .staleCache:
            value = cacheKey.flatMap { rt.cache?.lastValue($0) as? T }
        case .staticResponse(let contentType, let body):
            value = (T.self as? any StaticFallbackRepresentable.Type)?.init(staticFallbackContentType: contentType, body: body) as? T
            if value == nil {
                session.logger.warning(
                    "the policy's static fallback cannot be a \(T.self); adopt StaticFallbackRepresentable",
                    metadata: ["guard": "\(name)", "policy": "\(policyName)"])
            }
        case .handler(let handlerName):
            guard let handler = session.fallbackHandlers[handlerName] else {
                session.logger.warning(
                    "the policy names a fallback handler this process did not register",
                    metadata: ["guard": "\(name)", "policy": "\(policyName)", "handler": "\(handlerName)"])
                return nil
            }
            let answer = try await handler(FallbackContext(guardName: name, error: error, trigger: trigger))
            value = answer as? T
            if value == nil {
                session.logger.warning(
                    "the fallback handler returned a \(type(of: answer)), not the call's \(T.self)",
                    metadata: ["guard": "\(name)", "handler": "\(handlerName)"])
            }
        }
        if value != nil {
            metrics.fallbacksServed.increment()
            CallTrace.current?.fellBack()
        }
        return value
    }
}
