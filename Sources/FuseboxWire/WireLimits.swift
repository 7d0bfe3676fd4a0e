/// Bounds applied to every message before protobuf-c sees it.
public struct WireLimits: Sendable, Hashable {
    /// Largest encoded message accepted, in bytes. Default 4 MiB, as gRPC's.
    public var maxMessageBytes: Int

    /// Creates limits.
    public init(maxMessageBytes: Int = 4 * 1024 * 1024) {
        self.maxMessageBytes = maxMessageBytes
    }

    /// 4 MiB per message.
    public static let `default` = WireLimits()
}
