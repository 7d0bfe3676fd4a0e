/// A key as etcd stores it, with the revisions that date it.
public struct EtcdKeyValue: Sendable, Hashable {
    /// The key's bytes.
    public var key: [UInt8]
    /// The value's bytes (empty in a delete event).
    public var value: [UInt8]
    /// Revision of the write that created the key.
    public var createRevision: Int64
    /// Revision of the latest write to the key (in a delete event: the delete's).
    public var modRevision: Int64
    /// Writes since the key was created (1 after the first put).
    public var version: Int64
    /// The lease the key is attached to; 0 for none.
    public var lease: Int64

    /// A key-value.
    public init(key: [UInt8], value: [UInt8], createRevision: Int64 = 0, modRevision: Int64 = 0, version: Int64 = 0, lease: Int64 = 0) {
        self.key = key
        self.value = value
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.lease = lease
    }

    /// The key as UTF-8 text (invalid bytes replaced).
    public var keyString: String { String(decoding: key, as: UTF8.self) }
    /// The value as UTF-8 text (invalid bytes replaced).
    public var valueString: String { String(decoding: value, as: UTF8.self) }
}

/// Helpers for key ranges.
public enum EtcdKeys {
    /// The range end that makes [prefix, end) cover every key starting with
    /// `prefix`: the prefix with its last byte below 0xff incremented (and
    /// what follows it dropped); "\0" (every key) for an empty or all-0xff prefix.
    public static func prefixEnd(_ prefix: [UInt8]) -> [UInt8] {
        var end = prefix
        while let last = end.last {
            if last < 0xff {
                end[end.count - 1] = last + 1
                return end
            }
            end.removeLast()
        }
        return [0]
    }
}

/// The keys a range read found, at one revision.
public struct EtcdRangeResult: Sendable, Hashable {
    /// The store's revision the read saw.
    public var revision: Int64
    /// The keys, in key order.
    public var kvs: [EtcdKeyValue]
    /// More keys matched than the limit allowed.
    public var more: Bool
    /// How many keys matched in all.
    public var count: Int64
}

/// The result of a put.
public struct EtcdPutResult: Sendable, Hashable {
    /// The store's revision after the put (the key's new mod revision).
    public var revision: Int64
    /// The key before the put, when asked for and it existed.
    public var previous: EtcdKeyValue?
}

/// The result of a delete.
public struct EtcdDeleteResult: Sendable, Hashable {
    /// The store's revision after the delete.
    public var revision: Int64
    /// How many keys were deleted.
    public var deleted: Int64
    /// The deleted keys, when asked for.
    public var previous: [EtcdKeyValue]
}
