/// Where alerts go: a generic webhook, a Slack incoming webhook, or e-mail.
/// Holds secrets (webhook URLs, the HMAC key, the SMTP password), read from
/// files or environment variables by the configuration; its description
/// shows only the name and kind, so logging a sink never shows them.
public struct AlertSink: Sendable, Hashable, CustomStringConvertible {
    /// E-mail over SMTP.
    public struct Email: Sendable, Hashable {
        /// smtp://host:port (STARTTLS) or smtps://host:port (TLS from the start).
        public var url: String
        public var from: String
        public var to: [String]
        public var username: String?
        public var password: String?
        /// Refuse to send over an smtp:// connection that did not upgrade with STARTTLS. Default true.
        public var requireTLS: Bool

        public init(url: String, from: String, to: [String], username: String? = nil, password: String? = nil, requireTLS: Bool = true) {
            self.url = url
            self.from = from
            self.to = to
            self.username = username
            self.password = password
            self.requireTLS = requireTLS
        }
    }

    public enum Kind: Sendable, Hashable {
        /// JSON POSTed to `url`, signed with HMAC-SHA256 under `secret` when one is set.
        case webhook(url: String, secret: String?)
        /// A Slack incoming webhook's payload POSTed to `url`.
        case slack(url: String)
        case email(Email)

        public var name: String {
            switch self {
            case .webhook: return "webhook"
            case .slack: return "slack"
            case .email: return "email"
            }
        }
    }

    /// Unique among the sinks; names it in rules, metrics and the alert history.
    public var name: String
    public var kind: Kind
    /// CA bundle (PEM) the receiver's certificate is verified against; nil: the system's.
    public var caFile: String?
    /// One attempt gives up after this long. Default 5 s.
    public var timeoutMs: Int
    /// Attempts per notification, the first included. Default 4.
    public var maxAttempts: Int
    /// Notifications waiting for this sink at most; more are dropped and counted. Default 1,000.
    public var queueCapacity: Int

    public init(name: String, kind: Kind, caFile: String? = nil, timeoutMs: Int = 5_000, maxAttempts: Int = 4, queueCapacity: Int = 1_000) {
        self.name = name
        self.kind = kind
        self.caFile = caFile
        self.timeoutMs = timeoutMs
        self.maxAttempts = maxAttempts
        self.queueCapacity = queueCapacity
    }

    public var description: String { "\(kind.name) sink \(name)" }
}
