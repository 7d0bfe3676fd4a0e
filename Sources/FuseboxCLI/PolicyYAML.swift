import Foundation
public import FuseboxCore
import Yams

/// One problem in a policy file, with where it is.
public struct PolicyFileProblem: Sendable, Hashable, CustomStringConvertible {
    /// The file (as given on the command line).
    public var file: String
    /// 1-based line and column, when known.
    public var line: Int?
    public var column: Int?
    /// The field path in the policy model, e.g. "retry.backoff.maxMs".
    public var field: String
    /// What is wrong.
    public var message: String

    public var description: String {
        let place = [file, line.map(String.init), column.map(String.init)].compactMap { $0 }.joined(separator: ":")
        let policy = field.isEmpty ? "" : "\(field): "
        return "\(place): \(policy)\(message)"
    }
}

/// Every problem found in a policy file.
public struct PolicyFileProblems: Error, Sendable, Hashable {
    public var problems: [PolicyFileProblem]
    public init(_ problems: [PolicyFileProblem]) { self.problems = problems }
}

/// Policy files: YAML whose keys are the policy model's fields one to one
/// (the same names `fusebox policies get -o yaml` prints). A file holds one
/// policy, or several as YAML documents separated by `---`.
public enum PolicyYAML {
    /// The policies in `text`, each converted and validated; or every
    /// problem found, each with its line and column.
    public static func parse(_ text: String, file: String) -> Result<[Policy], PolicyFileProblems> {
        documents(text, file: file).map { $0.map(\.policy) }
    }

    /// Like `parse(_:file:)`, keeping where each policy's fields are written,
    /// so that problems the server reports can be placed on their lines.
    /// `validate: false` skips the policy model's checks (the file must
    /// still read as policies), leaving them to the server.
    public static func documents(_ text: String, file: String, validate: Bool = true) -> Result<[PolicyDocument], PolicyFileProblems> {
        let nodes: [Node]
        do {
            nodes = try Array(Yams.compose_all(yaml: text))
        } catch let error as YamlError {
            return .failure(PolicyFileProblems([syntaxProblem(error, file: file)]))
        } catch {
            return .failure(PolicyFileProblems([PolicyFileProblem(file: file, field: "", message: "cannot read YAML: \(error)")]))
        }
        guard !nodes.isEmpty else {
            return .failure(PolicyFileProblems([PolicyFileProblem(file: file, line: 1, column: 1, field: "", message: "the file holds no policy")]))
        }
        var documents: [PolicyDocument] = []
        var problems: [PolicyFileProblem] = []
        for node in nodes {
            var reader = PolicyDocumentReader(file: file)
            let policy = reader.policy(node)
            let document = PolicyDocument(
                policy: policy, file: file, positions: reader.marks.mapValues(FilePosition.init), start: node.mark.map(FilePosition.init))
            var found = reader.problems
            if validate {
                // The model's own checks run too (on what could be read), so one
                // pass reports every problem; a field already reported is not repeated.
                let reported = Set(found.map(\.field))
                for v in PolicyValidator.violations(of: policy) where !reported.contains(v.field) {
                    found.append(document.problem(field: v.field, message: v.message))
                }
            }
            found.sort { ($0.line ?? 0, $0.column ?? 0) < ($1.line ?? 0, $1.column ?? 0) }
            if found.isEmpty { documents.append(document) }
            problems += found
        }
        if !problems.isEmpty { return .failure(PolicyFileProblems(problems)) }
        let names = documents.map(\.policy.name)
        if let duplicate = names.first(where: { n in names.filter { $0 == n }.count > 1 }) {
            return .failure(PolicyFileProblems([PolicyFileProblem(file: file, field: "name", message: "policy \"\(duplicate)\" appears more than once")]))
        }
        return .success(documents)
    }

    private static func syntaxProblem(_ error: YamlError, file: String) -> PolicyFileProblem {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _):
            return PolicyFileProblem(file: file, line: mark.line, column: mark.column, field: "", message: "YAML syntax: \(problem)")
        default:
            return PolicyFileProblem(file: file, field: "", message: "YAML: \(error)")
        }
    }

    // MARK: Policy → value

    /// The policy as the file format writes it, every field explicit.
    public static func value(_ p: Policy) -> OutputValue {
        var pairs: [(String, OutputValue)] = [("name", .string(p.name))]
        if !p.description.isEmpty { pairs.append(("description", .string(p.description))) }
        if !p.labels.isEmpty { pairs.append(("labels", .map(p.labels.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) }))) }
        if let cb = p.circuitBreaker {
            pairs.append(("circuitBreaker", .map([
                ("window", .map([
                    ("kind", .string(cb.window.kind == .count ? "count" : "time")), ("size", .int(Int64(cb.window.size))),
                    ("buckets", .int(Int64(cb.window.buckets))),
                ])),
                ("failureRateThreshold", .double(cb.failureRateThreshold)),
                ("slowCallRateThreshold", .double(cb.slowCallRateThreshold)),
                ("slowCallDurationThresholdMs", .int(cb.slowCallDurationThresholdMs)),
                ("minimumCalls", .int(Int64(cb.minimumCalls))),
                ("consecutiveFailuresThreshold", .int(Int64(cb.consecutiveFailuresThreshold))),
                ("minimumClients", .int(Int64(cb.minimumClients))),
                ("openDuration", .map([
                    ("baseMs", .int(cb.openDuration.baseMs)), ("multiplier", .double(cb.openDuration.multiplier)),
                    ("maxMs", .int(cb.openDuration.maxMs)), ("jitterPercent", .int(Int64(cb.openDuration.jitterPercent))),
                ])),
                ("halfOpen", .map([
                    ("permittedCalls", .int(Int64(cb.halfOpen.permittedCalls))), ("maxWaitMs", .int(cb.halfOpen.maxWaitMs)),
                    ("successThreshold", .int(Int64(cb.halfOpen.successThreshold))),
                ])),
                ("ignoredErrors", .list(cb.ignoredErrors.sorted().map { .string($0) })),
            ])))
        }
        if let r = p.retry {
            var retry: [(String, OutputValue)] = [
                ("maxAttempts", .int(Int64(r.maxAttempts))),
                ("backoff", .map([
                    ("kind", .string(r.backoff.kind.rawValue)), ("initialMs", .int(r.backoff.initialMs)),
                    ("maxMs", .int(r.backoff.maxMs)), ("multiplier", .double(r.backoff.multiplier)),
                ])),
                ("jitter", .string(r.jitter.rawValue)),
                ("jitterPercent", .int(Int64(r.jitterPercent))),
                ("retryOn", .list(RetryCondition.allCases.filter(r.retryOn.contains).map { .string($0.rawValue) })),
                ("retryableErrors", .list(r.retryableErrors.sorted().map { .string($0) })),
                ("nonRetryableErrors", .list(r.nonRetryableErrors.sorted().map { .string($0) })),
                ("honorPushback", .bool(r.honorPushback)),
            ]
            if let b = r.budget { retry.append(("budget", .map([("maxTokens", .int(Int64(b.maxTokens))), ("tokenRatio", .double(b.tokenRatio))]))) }
            pairs.append(("retry", .map(retry)))
        }
        if let t = p.timeout {
            var timeout: [(String, OutputValue)] = []
            if let a = t.attemptMs { timeout.append(("attemptMs", .int(a))) }
            if let total = t.totalMs { timeout.append(("totalMs", .int(total))) }
            pairs.append(("timeout", .map(timeout)))
        }
        if let b = p.bulkhead {
            pairs.append(("bulkhead", .map([
                ("maxConcurrent", .int(Int64(b.maxConcurrent))), ("maxQueued", .int(Int64(b.maxQueued))), ("maxWaitMs", .int(b.maxWaitMs)),
            ])))
        }
        if let r = p.rateLimit {
            pairs.append(("rateLimit", .map([
                ("limitPerPeriod", .int(Int64(r.limitPerPeriod))), ("periodMs", .int(r.periodMs)),
                ("burst", .int(Int64(r.burst))), ("maxWaitMs", .int(r.maxWaitMs)),
            ])))
        }
        if let f = p.fallback {
            let action: OutputValue = switch f.action {
            case .staticResponse(let contentType, let body):
                .map([("staticResponse", .map([("contentType", .string(contentType)), ("body", .string(String(decoding: body, as: UTF8.self)))]))])
            case .staleCache: .string("staleCache")
            case .handler(let name): .map([("handler", .string(name))])
            }
            pairs.append(("fallback", .map([
                ("triggers", .list(FallbackTrigger.allCases.filter(f.triggers.contains).map { .string($0.rawValue) })), ("action", action),
            ])))
        }
        if let c = p.cache {
            pairs.append(("cache", .map([
                ("ttlMs", .int(c.ttlMs)), ("maxEntries", .int(Int64(c.maxEntries))), ("staleWhileRevalidateMs", .int(c.staleWhileRevalidateMs)),
            ])))
        }
        return .map(pairs)
    }
}
