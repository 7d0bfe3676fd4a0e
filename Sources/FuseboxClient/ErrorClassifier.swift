public import FuseboxCore
import Foundation
import FuseboxRPC
import NIOCore
import NIOPosix

/// How a guard sees an error its operation threw: the class retry policies
/// name (`retryOn`), a code policies can name (`retryableErrors`,
/// `nonRetryableErrors`, the breaker's `ignoredErrors`) and the server's
/// pushback.
public struct ErrorClassification: Sendable, Hashable {
    /// The failure's class; nil for a failure of no known class (retried
    /// only under `anyFailure`).
    public var condition: RetryCondition?
    /// A code such as `http.503`, `grpc.UNAVAILABLE` or `net.ECONNREFUSED`.
    public var code: String?
    /// How long the server asked the client to wait before retrying, in
    /// milliseconds (`Retry-After`, `grpc-retry-pushback-ms`); negative means
    /// "do not retry".
    public var pushbackMs: Int64?

    /// A classification.
    public init(condition: RetryCondition?, code: String? = nil, pushbackMs: Int64? = nil) {
        self.condition = condition
        self.code = code
        self.pushbackMs = pushbackMs
    }
}

/// An error that carries an HTTP status, and the response's `Retry-After`
/// if it had one. Any HTTP client's error (or response, thrown as an error)
/// can adopt it: 5xx is a server error, 429 rate limited, 408 a timeout.
public protocol HTTPStatusError: Error {
    /// The response's status code, e.g. 503.
    var httpStatusCode: Int { get }
    /// The response's `Retry-After` header: seconds, or an HTTP date.
    var retryAfter: String? { get }
}

extension HTTPStatusError {
    public var retryAfter: String? { nil }
}

/// An error that carries a gRPC status code (grpc/grpc doc/statuscodes.md),
/// and the server's `grpc-retry-pushback-ms` if it sent one. The SDK's own
/// RPC errors classify so without adopting it; another gRPC library's
/// status error can adopt it in one line.
public protocol GRPCStatusError: Error {
    /// The status code, e.g. 14 for UNAVAILABLE.
    var grpcStatusCode: Int { get }
    /// The `grpc-retry-pushback-ms` trailer: milliseconds, negative (or not
    /// a number) for "do not retry".
    var grpcRetryPushback: String? { get }
}

extension GRPCStatusError {
    public var grpcRetryPushback: String? { nil }
}

/// Classifies the errors a guard's operation throws. `standard` knows, out of
/// the box: errors adopting `GuardClassifiedError`, `HTTPStatusError` or
/// `GRPCStatusError`; the SDK's RPC errors; SwiftNIO's connection, I/O and
/// resolution errors; and POSIX errors (connection refused, reset,
/// unreachable, timed out). A guard can be given another one
/// (`Fusebox.guard(_:policy:registry:classifier:)`), usually one that
/// handles its own errors and leaves the rest to `standard` (`orElse`).
public struct ErrorClassifier: Sendable {
    private let body: @Sendable (any Error) -> ErrorClassification?

    /// A classifier; `body` returns nil for an error it does not know.
    public init(_ body: @escaping @Sendable (any Error) -> ErrorClassification?) {
        self.body = body
    }

    /// The classification of `error`, or nil for an error of no known class.
    public func classify(_ error: any Error) -> ErrorClassification? {
        body(error)
    }

    /// This classifier, then `other` for what this one does not know.
    public func orElse(_ other: ErrorClassifier) -> ErrorClassifier {
        ErrorClassifier { error in self.classify(error) ?? other.classify(error) }
    }

    /// The classifier guards use unless given another.
    public static let standard = ErrorClassifier(standardClassification)

    private static func standardClassification(_ error: any Error) -> ErrorClassification? {
        switch error {
        case let e as any GuardClassifiedError:
            return ErrorClassification(condition: e.retryCondition, code: e.errorCode, pushbackMs: e.pushbackMs)
        case let e as any HTTPStatusError:
            return http(e.httpStatusCode, retryAfter: e.retryAfter, now: Date())
        case let e as any GRPCStatusError:
            return grpc(e.grpcStatusCode, pushback: e.grpcRetryPushback)
        case let e as RPCError:
            return grpc(e.code.rawValue, pushback: e.metadata.first("grpc-retry-pushback-ms"))
        case let e as IOError:
            return errno(e.errnoCode)
        case let e as POSIXError:
            return errno(e.code.rawValue)
        case let e as NIOConnectionError:
            // No address to try: the name did not resolve. Otherwise every
            // address was tried and failed: classify by the first failure.
            guard let first = e.connectionErrors.first?.error else {
                return ErrorClassification(condition: .networkError, code: "net.dns")
            }
            return standardClassification(first) ?? ErrorClassification(condition: .networkError, code: "net.connect")
        case let e as ChannelError:
            switch e {
            case .connectTimeout: return ErrorClassification(condition: .timeout, code: "net.connect-timeout")
            case .ioOnClosedChannel, .alreadyClosed, .eof, .outputClosed, .inputClosed:
                return ErrorClassification(condition: .networkError, code: "net.closed")
            default: return nil
            }
        case is SocketAddressError, is SocketAddressError.UnknownHost:
            return ErrorClassification(condition: .networkError, code: "net.dns")
        default:
            return nil
        }
    }

    /// 5xx: server error; 429: rate limited; 408: timeout; other statuses:
    /// no known class (a 404 is not retried, but is a failure to the breaker
    /// unless the policy ignores `http.404`).
    static func http(_ status: Int, retryAfter: String?, now: Date) -> ErrorClassification {
        let condition: RetryCondition? = switch status {
        case 429: .rateLimited
        case 408: .timeout
        case 500...599: .serverError
        default: nil
        }
        return ErrorClassification(
            condition: condition, code: "http.\(status)", pushbackMs: retryAfter.flatMap { retryAfterMilliseconds($0, now: now) })
    }

    /// DEADLINE_EXCEEDED: timeout; RESOURCE_EXHAUSTED: rate limited;
    /// UNAVAILABLE, INTERNAL, UNKNOWN, ABORTED: server error; the rest no
    /// known class. The code is `grpc.` and the status's name.
    static func grpc(_ code: Int, pushback: String?) -> ErrorClassification {
        let status = RPCStatusCode(rawValue: code)
        let condition: RetryCondition? = switch status {
        case .deadlineExceeded: .timeout
        case .resourceExhausted: .rateLimited
        case .unavailable, .internal, .unknown, .aborted: .serverError
        default: nil
        }
        // gRPC's retry design (A6): a negative or malformed pushback means "do not retry".
        let pushbackMs = pushback.map { Int64($0.trimmingCharacters(in: .whitespaces)) ?? -1 }
        return ErrorClassification(condition: condition, code: "grpc.\(status.map { "\($0)" } ?? "\(code)")", pushbackMs: pushbackMs)
    }

    /// Connection refused, reset, aborted or unreachable, a broken pipe:
    /// network error; timed out: timeout. The code is `net.` and the errno's name.
    static func errno(_ value: Int32) -> ErrorClassification? {
        let networkErrors: [Int32: String] = [
            ECONNREFUSED: "ECONNREFUSED", ECONNRESET: "ECONNRESET", ECONNABORTED: "ECONNABORTED", EPIPE: "EPIPE",
            ENETUNREACH: "ENETUNREACH", EHOSTUNREACH: "EHOSTUNREACH", ENETDOWN: "ENETDOWN", EHOSTDOWN: "EHOSTDOWN",
            ENOTCONN: "ENOTCONN",
        ]
        if let name = networkErrors[value] { return ErrorClassification(condition: .networkError, code: "net.\(name)") }
        if value == ETIMEDOUT { return ErrorClassification(condition: .timeout, code: "net.ETIMEDOUT") }
        return nil
    }

    /// `Retry-After` (RFC 9110 §10.2.3): a number of seconds, or an HTTP date
    /// (`Sun, 06 Nov 1994 08:49:37 GMT`), as milliseconds from `now` (0 for
    /// a date already past); nil when it is neither.
    static func retryAfterMilliseconds(_ value: String, now: Date) -> Int64? {
        let text = value.trimmingCharacters(in: .whitespaces)
        if let seconds = Int64(text), seconds >= 0 { return seconds.multipliedReportingOverflow(by: 1000).overflow ? .max : seconds * 1000 }
        guard let date = httpDate(text) else { return nil }
        return max(0, Int64((date.timeIntervalSince(now) * 1000).rounded()))
    }

    /// An IMF-fixdate, the HTTP date format senders must use.
    private static func httpDate(_ text: String) -> Date? {
        let parts = text.split(separator: " ")
        guard parts.count == 6, parts[0].hasSuffix(","), parts[5] == "GMT",
            let day = Int(parts[1]), let year = Int(parts[3]),
            let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"].firstIndex(of: String(parts[2]))
        else { return nil }
        let clock = parts[4].split(separator: ":").compactMap { Int($0) }
        guard clock.count == 3 else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        guard let utc = TimeZone(identifier: "UTC") else { return nil }
        calendar.timeZone = utc
        let components = DateComponents(year: year, month: month + 1, day: day, hour: clock[0], minute: clock[1], second: clock[2])
        guard components.isValidDate(in: calendar) else { return nil }
        return calendar.date(from: components)
    }
}
