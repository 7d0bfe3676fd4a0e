/// One condition of a transaction: a property of a key compared with a value.
public struct EtcdCompare: Sendable, Hashable {
    /// The property compared, with the value to compare it with.
    public enum Target: Sendable, Hashable {
        /// The key's version (0: the key does not exist).
        case version(Int64)
        /// The key's create revision (0: the key does not exist).
        case createRevision(Int64)
        /// The key's mod revision (0: the key does not exist).
        case modRevision(Int64)
        /// The key's value.
        case value([UInt8])
        /// The key's lease ID (0: none).
        case lease(Int64)
    }

    /// How the key's property must relate to the value.
    public enum Relation: Sendable, Hashable {
        /// Equal.
        case equal
        /// Not equal.
        case notEqual
        /// The key's property is greater than the value.
        case greater
        /// The key's property is less than the value.
        case less
    }

    /// The key.
    public var key: [UInt8]
    /// When set, the condition must hold for every key in [key, rangeEnd).
    public var rangeEnd: [UInt8]?
    /// The relation.
    public var relation: Relation
    /// The property and value.
    public var target: Target

    /// A condition: `key`'s property `relation` `target`'s value.
    public init(key: [UInt8], rangeEnd: [UInt8]? = nil, _ relation: Relation, _ target: Target) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.relation = relation
        self.target = target
    }

    /// The key does not exist (its create revision is 0).
    public static func absent(_ key: [UInt8]) -> EtcdCompare { EtcdCompare(key: key, .equal, .createRevision(0)) }
    /// The key was last written at `revision` (compare-and-swap).
    public static func modRevision(_ key: [UInt8], is revision: Int64) -> EtcdCompare {
        EtcdCompare(key: key, .equal, .modRevision(revision))
    }
    /// The key holds `value`.
    public static func value(_ key: [UInt8], is value: [UInt8]) -> EtcdCompare { EtcdCompare(key: key, .equal, .value(value)) }
}

/// One operation of a transaction branch.
public enum EtcdOperation: Sendable, Hashable {
    /// Reads `key` or [key, rangeEnd), at most `limit` keys (0: all).
    case range(key: [UInt8], rangeEnd: [UInt8]? = nil, limit: Int64 = 0)
    /// Writes `key`, attached to `lease` (0: none); `previous` asks for the old key.
    case put(key: [UInt8], value: [UInt8], lease: Int64 = 0, previous: Bool = false)
    /// Deletes `key` or [key, rangeEnd); `previous` asks for the deleted keys.
    case delete(key: [UInt8], rangeEnd: [UInt8]? = nil, previous: Bool = false)
}

/// The result of one operation of the branch that ran.
public enum EtcdOperationResult: Sendable, Hashable {
    /// A read's result.
    case range(EtcdRangeResult)
    /// A put's result.
    case put(EtcdPutResult)
    /// A delete's result.
    case delete(EtcdDeleteResult)
}

/// The result of a transaction.
public struct EtcdTxnResult: Sendable, Hashable {
    /// The store's revision after the transaction (unchanged if it only read).
    public var revision: Int64
    /// Whether every condition held, so the success branch ran.
    public var succeeded: Bool
    /// The results of the branch that ran, in order.
    public var results: [EtcdOperationResult]
}
