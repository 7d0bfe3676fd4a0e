public import FuseboxRPC
public import FuseboxTLS
import FuseboxWire
import NIOConcurrencyHelpers

/// The roles of DESIGN §Security: each includes the ones before it.
public enum Role: String, Sendable, Hashable, Comparable, CaseIterable {
    /// Fetch and watch.
    case reader
    /// Reader, plus report outcomes and acquire permits.
    case reporter
    /// Everything: policy writes and overrides.
    case admin
    /// Another fuseboxd replica (docs/REPLICATION.md): admin, plus forwarding
    /// calls to the leader on behalf of other callers. Give it to replicas only.
    case replica

    public static func < (lhs: Role, rhs: Role) -> Bool {
        allCases.firstIndex(of: lhs) ?? 0 < allCases.firstIndex(of: rhs) ?? 0
    }
}

/// One rule of the identity-to-role mapping: a glob over a certificate
/// identity and the role it grants.
public struct RoleRule: Sendable, Hashable {
    /// Which identity the pattern is matched against.
    public enum Field: String, Sendable, Hashable {
        /// Subject common name.
        case commonName = "cn"
        /// Any DNS subject alternative name.
        case dns
        /// Any URI subject alternative name (SPIFFE IDs).
        case uri
    }

    /// The field matched.
    public var field: Field
    /// A glob: `*` matches any run of characters, `?` one character.
    public var pattern: String
    /// The role granted.
    public var role: Role

    /// A rule.
    public init(field: Field, pattern: String, role: Role) {
        self.field = field
        self.pattern = pattern
        self.role = role
    }

    func matches(_ peer: TLSPeerIdentity) -> Bool {
        switch field {
        case .commonName: return peer.commonName.map { Glob.matches(pattern, $0) } ?? false
        case .dns: return peer.dnsNames.contains { Glob.matches(pattern, $0) }
        case .uri: return peer.uris.contains { Glob.matches(pattern, $0) }
        }
    }
}

/// Maps callers to roles and refuses calls that lack one.
public struct Authorizer: Sendable {
    /// The rules, in order; a caller gets the highest role any rule grants.
    public var rules: [RoleRule] {
        didSet { roles = RoleCache() }
    }
    /// Development mode: callers without a certificate get this role (nil: refused).
    public var anonymousRole: Role?
    /// Roles already worked out, by certificate fingerprint: every call checks
    /// its caller, and matching each rule's pattern each time cost more than
    /// the rest of authorization.
    private var roles = RoleCache()

    /// The development certificates' mapping: `spiffe://fusebox.local/role/<role>` and CN `fusebox-<role>`.
    public static let developmentRules: [RoleRule] = Role.allCases.flatMap { role in
        [RoleRule(field: .uri, pattern: "spiffe://fusebox.local/role/\(role.rawValue)", role: role),
         RoleRule(field: .commonName, pattern: "fusebox-\(role.rawValue)", role: role)]
    }

    /// An authorizer.
    public init(rules: [RoleRule], anonymousRole: Role? = nil) {
        self.rules = rules
        self.anonymousRole = anonymousRole
    }

    /// The role of `peer`, if any.
    public func role(of peer: TLSPeerIdentity?) -> Role? {
        guard let peer else { return anonymousRole }
        return roles.role(of: peer) { rules.filter { $0.matches(peer) }.map(\.role).max() }
    }

    /// Throws PERMISSION_DENIED naming the missing role unless the caller has `needed`.
    public func require(_ needed: Role, _ context: RPCServerContext) throws(RPCError) {
        let caller = self.caller(context)
        let has = role(of: caller)
        guard let has, has >= needed else {
            var details = Fusebox_V1_ErrorDetails()
            details.missingRole = needed.rawValue
            var trailers = WireConversions.trailers(details)
            trailers.add("fusebox-missing-role", needed.rawValue)
            throw RPCError(
                .permissionDenied,
                "missing role \(needed.rawValue): \(Self.describe(caller)) has \(has.map { "role \($0.rawValue)" } ?? "no role")",
                metadata: trailers)
        }
    }

    /// A short name for a caller, for messages and the audit log.
    public static func describe(_ peer: TLSPeerIdentity?) -> String {
        guard let peer else { return "an anonymous caller" }
        return peer.commonName ?? peer.uris.first ?? peer.dnsNames.first ?? "certificate \(peer.fingerprintSHA256.prefix(16))"
    }
}

/// Roles by certificate fingerprint, bounded: emptied when it holds 10,000.
private final class RoleCache: Sendable {
    private let known = NIOLockedValueBox<[String: Role?]>([:])

    func role(of peer: TLSPeerIdentity, _ compute: () -> Role?) -> Role? {
        if let cached = known.withLockedValue({ $0[peer.fingerprintSHA256] }) { return cached }
        let role = compute()
        known.withLockedValue { known in
            if known.count >= 10_000 { known.removeAll() }
            known[peer.fingerprintSHA256] = role
        }
        return role
    }
}

/// Glob matching with `*` and `?`.
enum Glob {
    static func matches(_ pattern: String, _ text: String) -> Bool {
        let p = Array(pattern)
        let t = Array(text)
        var (pi, ti, star, mark) = (0, 0, -1, 0)
        while ti < t.count {
            if pi < p.count, p[pi] == "?" || p[pi] == t[ti] {
                pi += 1
                ti += 1
            } else if pi < p.count, p[pi] == "*" {
                star = pi
                mark = ti
                pi += 1
            } else if star >= 0 {
                pi = star + 1
                mark += 1
                ti = mark
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == "*" { pi += 1 }
        return pi == p.count
    }
}
