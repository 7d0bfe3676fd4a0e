/// One problem with a policy: where, and what to do about it.
public struct PolicyViolation: Sendable, Hashable, CustomStringConvertible {
    /// Dotted path of the field, in the policy's camelCase names
    /// (`retry.backoff.maxMs`); empty for the policy as a whole.
    public var field: String
    /// What is wrong, with the value, and what would be accepted.
    public var message: String

    /// A violation.
    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }

    /// `field: message`.
    public var description: String { field.isEmpty ? message : "\(field): \(message)" }
}

/// A policy that failed validation, with every problem found.
public struct PolicyValidationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The policy's name.
    public var policy: String
    /// Every problem, in field order.
    public var violations: [PolicyViolation]

    /// An error for `policy` with `violations`.
    public init(policy: String, violations: [PolicyViolation]) {
        self.policy = policy
        self.violations = violations
    }

    /// `policy "x" is invalid: a; b`.
    public var description: String {
        "policy \"\(policy)\" is invalid: " + violations.map(\.description).joined(separator: "; ")
    }
}
