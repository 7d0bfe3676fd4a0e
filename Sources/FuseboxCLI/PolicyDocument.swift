import FuseboxAPI
public import FuseboxCore
import Yams

/// A line and column in a file, 1-based.
public struct FilePosition: Sendable, Hashable {
    /// The line, from 1.
    public var line: Int
    /// The column, from 1.
    public var column: Int

    init(_ mark: Mark) {
        line = mark.line
        column = mark.column
    }
}

/// One policy of a policy file, with where each of its fields is written,
/// so that a problem found later (by the server) points at its line.
public struct PolicyDocument: Sendable {
    /// The policy.
    public var policy: Policy
    /// The file, as given on the command line.
    public var file: String
    /// Where each field's key is written, by field path in the file's names
    /// (`retry.backoff.maxMs`, `retry.retryOn[1]`, `labels.team`).
    var positions: [String: FilePosition]
    /// Where the document starts.
    var start: FilePosition?

    /// A problem with `field` (a path in the file's names), placed at the
    /// field or, when the file leaves it out, at the nearest section that is
    /// written, else at the document's start.
    func problem(field: String, message: String) -> PolicyFileProblem {
        let at = nearest(field, in: positions) ?? start
        return PolicyFileProblem(file: file, line: at?.line, column: at?.column, field: field, message: message)
    }

    /// The problems the server reported about this policy, in the file's
    /// names and at their lines, sorted by line. The server names fields by
    /// their proto paths (`FieldViolation.field` in common.proto), relative
    /// to the policy (ValidatePolicy) or under `policy.` (PutPolicy), e.g.
    /// `policy.circuit_breaker.failure_rate_threshold_percent`; that one
    /// becomes `circuitBreaker.failureRateThreshold`. A path that is not a
    /// policy field is shown as the server sent it, without a line.
    public func problems(fromServer violations: [PolicyViolation]) -> [PolicyFileProblem] {
        let found = violations.map { v -> PolicyFileProblem in
            var proto = v.field
            if proto == "policy" {
                proto = ""
            } else if proto.hasPrefix("policy.") {
                proto.removeFirst("policy.".count)
            }
            guard let field = PolicyFieldPath.domain(fromProto: proto) else {
                return PolicyFileProblem(file: file, field: v.field, message: v.message)
            }
            return problem(field: field, message: PolicyFieldPath.domainMessage(v.message, field: proto))
        }
        return found.enumerated().sorted { a, b in
            (a.element.line ?? 0, a.element.column ?? 0, a.offset) < (
                b.element.line ?? 0, b.element.column ?? 0, b.offset
            )
        }.map(\.element)
    }
}
