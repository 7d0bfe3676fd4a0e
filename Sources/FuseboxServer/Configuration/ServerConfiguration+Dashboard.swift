import Foundation
import Yams

/// The `dashboard` section (docs/DASHBOARD.md): where the web dashboard
/// listens, who may sign in, and for how long. Off unless it names tokens.
public struct DashboardSettings: Sendable, Hashable {
    /// One access token, as the configuration keeps it: hashed.
    public struct Token: Sendable, Hashable {
        /// Who signs in with it; the audit log names their actions `dashboard:NAME`.
        public var name: String
        /// What they may do: `.reader` or `.admin`.
        public var role: Role
        /// SHA-256 of the token (the token itself is never stored).
        public var sha256: [UInt8]

        /// A token entry.
        public init(name: String, role: Role, sha256: [UInt8]) {
            self.name = name
            self.role = role
            self.sha256 = sha256
        }
    }

    /// Listen address. Default 127.0.0.1.
    public var host = "127.0.0.1"
    /// Port; 0 picks a free one. Default 7445.
    public var port = 7445
    /// How long a sign-in lasts. Default 8 hours.
    public var sessionMinutes = 480
    /// Who may sign in. None: the dashboard is off.
    public var tokens: [Token] = []

    /// The defaults (off).
    public init() {}

    /// Whether the dashboard is served.
    public var enabled: Bool { !tokens.isEmpty }
}

extension ServerConfiguration {
    /// Parses `dashboard.tokens`: a list of {name, role, sha256}.
    static func parseDashboardTokens(_ node: Node, source: String) throws(ConfigurationError) -> [DashboardSettings.Token] {
        guard let list = node.sequence else {
            throw ConfigurationError(key: "dashboard.tokens", source: source, line: node.mark?.line, "must be a list of {name, role, sha256}")
        }
        var tokens: [DashboardSettings.Token] = []
        var names = Set<String>()
        for (i, item) in list.enumerated() {
            let f = try Fields(item, key: "dashboard.tokens[\(i)]", source: source, allowed: ["name", "role", "sha256", "token"])
            if f.string("token") != nil {
                throw f.error("token", "would keep a token in the clear: give its sha256 (fuseboxd dashboard-token makes both)")
            }
            let name = try f.required("name")
            guard name.range(of: #"^[A-Za-z0-9][A-Za-z0-9._@-]{0,62}$"#, options: .regularExpression) != nil else {
                throw f.error("name", "(\"\(name)\") must be 1-63 letters, digits, \".\", \"_\", \"@\" or \"-\"")
            }
            guard names.insert(name).inserted else { throw f.error("name", "(\"\(name)\") names a second token; names must be unique") }
            let roleName = try f.required("role")
            guard let role = Role(rawValue: roleName), role == .reader || role == .admin else {
                throw f.error("role", "(\"\(roleName)\") must be reader or admin")
            }
            let hex = try f.required("sha256").lowercased()
            guard let digest = Self.hexBytes(hex), digest.count == 32 else {
                throw f.error("sha256", "must be 64 hexadecimal digits: the SHA-256 of the token")
            }
            tokens.append(DashboardSettings.Token(name: name, role: role, sha256: digest))
        }
        guard !tokens.isEmpty else {
            throw ConfigurationError(key: "dashboard.tokens", source: source, line: node.mark?.line, "is empty; leave the dashboard section out to keep it off")
        }
        return tokens
    }

    /// Bytes of a hexadecimal string (nil if it is not one).
    static func hexBytes(_ hex: String) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var i = 0
        while i < digits.count {
            guard let hi = Self.nibble(digits[i]), let lo = Self.nibble(digits[i + 1]) else { return nil }
            bytes.append(hi << 4 | lo)
            i += 2
        }
        return bytes
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
