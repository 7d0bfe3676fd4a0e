import FuseboxAPI
import FuseboxCore
import FuseboxAuthority
import FuseboxRPC
import FuseboxTLS
import FuseboxWire

/// The one place where the authority's domain values and errors meet the
/// API's messages and gRPC statuses: every service adapter converts here.
enum WireConversions {
    // MARK: Names

    /// The breaker a request names: an empty registry means "default".
    /// Validates both names as breaker.proto documents them.
    static func key(_ ref: Fusebox_V1_BreakerRef?, field: String) throws(RPCError) -> BreakerKey {
        guard let ref else { throw invalid(field + ".name", "required: 1-253 characters of A-Z a-z 0-9 . _ : / -") }
        // Both names are checked, so that one answer lists both problems (in field order).
        var problems = ViolationCollector()
        if !ref.registry.isEmpty { try problems.check { () throws(RPCError) in try checkRegistry(ref.registry, field: field + ".registry") } }
        if ref.name.isEmpty {
            problems.add(field + ".name", "required: 1-253 characters of A-Z a-z 0-9 . _ : / -")
        } else if ref.name.utf8.count > 253 || !ref.name.utf8.allSatisfy(isBreakerNameByte) {
            problems.add(field + ".name", "(\"\(ref.name.prefix(300))\") must be 1-253 characters of A-Z a-z 0-9 . _ : / -")
        }
        return try problems.result(BreakerKey(registry: ref.registry.isEmpty ? "default" : ref.registry, name: ref.name))
    }

    // Checked byte by byte over UTF-8 (every report names its breakers; Unicode
    // scalar properties cost 5 % of fuseboxd's CPU there). A byte of a
    // multi-byte character is ≥ 0x80 and matches none of these.
    private static func isAlphanumericByte(_ b: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(b)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b)
    }

    private static func isBreakerNameByte(_ b: UInt8) -> Bool {
        isAlphanumericByte(b) || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: ":") || b == UInt8(ascii: "/")
            || b == UInt8(ascii: "-")
    }

    private static func isRegistryNameByte(_ b: UInt8) -> Bool {
        isAlphanumericByte(b) || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: "-")
    }

    /// A registry name: 1-128 characters of [A-Za-z0-9._-].
    static func checkRegistry(_ name: String, field: String) throws(RPCError) {
        guard (1...128).contains(name.utf8.count),
            name.utf8.allSatisfy(isRegistryNameByte)
        else {
            throw invalid(field, "(\"\(name.prefix(200))\") must be 1-128 characters of A-Z a-z 0-9 . _ -")
        }
    }

    /// A page size or limit: 0 means the default of 100; at most 1,000.
    static func pageSize(_ value: UInt32, field: String) throws(RPCError) -> Int {
        guard value <= 1_000 else { throw invalid(field, "(\(value)) must be 0 (the default of 100) to 1000") }
        return value == 0 ? 100 : Int(value)
    }

    /// A reason: at most 1,024 bytes.
    static func checkReason(_ reason: String, field: String = "reason") throws(RPCError) {
        guard reason.utf8.count <= 1_024 else { throw invalid(field, "is \(reason.utf8.count) bytes; at most 1024 are allowed") }
    }

    static func ref(_ key: BreakerKey) -> Fusebox_V1_BreakerRef { BreakerMapping.ref(key.registry, key.name) }

    static func state(_ s: BreakerState) -> Fusebox_V1_BreakerState { BreakerMapping.wire(s) }

    // MARK: Breakers

    static func status(_ view: BreakerView) -> Fusebox_V1_BreakerStatus {
        var w = Fusebox_V1_BreakerStatus()
        w.breaker = ref(view.key)
        w.policy = view.policy
        w.state = state(view.status.state)
        w.evaluatedState = state(view.status.evaluatedState)
        w.generation = view.status.generation.value
        w.sinceMs = view.status.since.milliseconds
        w.untilMs = view.status.until?.milliseconds ?? 0
        w.reason = view.status.reason
        return w
    }

    static func transition(_ e: BreakerTransitionEvent) -> Fusebox_V1_BreakerTransition {
        var w = Fusebox_V1_BreakerTransition()
        w.status = status(BreakerView(key: e.key, policy: e.policy, status: e.transition.status))
        w.fromState = state(e.transition.from)
        w.reason = e.transition.status.reason
        w.contributingClients = e.transition.contributingClients
        w.atMs = e.transition.status.since.milliseconds
        return w
    }

    static func detail(_ d: BreakerDetailView) -> Fusebox_V1_BreakerDetail {
        var detail = Fusebox_V1_BreakerDetail()
        detail.status = status(d.view)
        var window = Fusebox_V1_WindowStats()
        window.counts = BreakerMapping.wire(d.window.counts)
        window.calls = d.window.counts.calls
        window.failureRatePercent = d.window.failureRate
        window.slowCallRatePercent = d.window.slowCallRate
        window.consecutiveFailures = UInt32(clamping: d.consecutiveFailures)
        window.failingClients = UInt32(clamping: d.window.failingClients)
        detail.window = window
        detail.contributions = d.contributions.map { c in
            var w = Fusebox_V1_ClientContribution()
            w.clientId = c.client
            w.counts = BreakerMapping.wire(c.counts)
            w.lastReportAtMs = c.lastReportAt?.milliseconds ?? 0
            return w
        }
        detail.outstandingPermits = UInt32(clamping: d.outstandingPermits)
        detail.trips = UInt32(clamping: d.trips)
        return detail
    }

    // MARK: Policies

    static func record(_ p: StoredPolicy) -> Fusebox_V1_PolicyRecord {
        var r = Fusebox_V1_PolicyRecord()
        r.policy = PolicyMapping.wire(p.policy)
        r.version = p.version
        r.updatedAtMs = p.updatedAtMs
        r.updatedBy = p.updatedBy
        return r
    }

    static func snapshot(_ r: StoredRegistry) -> Fusebox_V1_RegistrySnapshot {
        var snapshot = Fusebox_V1_RegistrySnapshot()
        snapshot.name = r.name
        snapshot.version = r.version
        snapshot.policies = r.policies.values.sorted { $0.policy.name < $1.policy.name }.map(record)
        return snapshot
    }

    static func change(_ c: PolicyChangeRecord) -> Fusebox_V1_PolicyChange {
        var w = Fusebox_V1_PolicyChange()
        w.registry = c.registry
        w.version = c.version
        w.policyName = c.name
        w.kind = switch c.kind {
        case .created: .created
        case .updated: .updated
        case .deleted: .deleted
        }
        w.before = c.before.map(PolicyMapping.wire)
        w.after = c.after.map(PolicyMapping.wire)
        w.actor = c.actor
        w.atMs = c.atMs
        w.reason = c.reason
        return w
    }

    // MARK: Cluster status

    static func clusterStatus(_ r: ClusterStatusReport) -> Fusebox_V1_ClusterStatus {
        var w = Fusebox_V1_ClusterStatus()
        w.mode = r.mode
        w.store = r.store
        w.leaderId = r.leaderId
        w.replicas = r.replicas.map { replica in
            var s = Fusebox_V1_ReplicaStatus()
            s.id = replica.id
            s.address = replica.address
            s.version = replica.version
            s.leader = replica.leader
            s.startedAtMs = replica.startedAtMs
            s.appliedRevision = replica.appliedRevision
            s.lagRevisions = replica.lagRevisions
            s.lastHeartbeatMs = replica.lastHeartbeatMs
            s.serving = replica.serving
            return s
        }
        w.etcdMembers = r.etcdMembers.map { member in
            var m = Fusebox_V1_EtcdMemberStatus()
            m.endpoint = member.endpoint
            m.reachable = member.reachable
            m.leader = member.leader
            m.revision = member.revision
            m.dbSizeBytes = member.dbSizeBytes
            m.error = member.error
            return m
        }
        w.answeredBy = r.answeredBy
        w.atMs = r.atMs
        return w
    }

    // MARK: Audit

    static func actor(_ peer: TLSPeerIdentity?, role: Role?) -> AuditActor? {
        let roles = role.map { r in Role.allCases.filter { $0 <= r }.map(\.rawValue) } ?? []
        guard let peer else { return AuditActor(commonName: "", roles: roles) }
        return AuditActor(
            commonName: peer.commonName ?? "", dnsNames: peer.dnsNames, uris: peer.uris, fingerprintSHA256: peer.fingerprintSHA256,
            roles: roles)
    }

    private static let actions: [(AuditAction, Fusebox_V1_AuditAction)] = [
        (.forceOpen, .forceOpen), (.forceClose, .forceClose), (.disable, .disable), (.shadow, .shadow), (.reset, .reset),
        (.overrideExpired, .overrideExpired), (.putPolicy, .putPolicy), (.deletePolicy, .deletePolicy),
        (.connectionRefused, .connectionRefused), (.listAudit, .listAudit), (.getClusterStatus, .getClusterStatus),
    ]

    static func action(_ a: AuditAction) -> Fusebox_V1_AuditAction { actions.first { $0.0 == a }?.1 ?? .unspecified }
    static func action(_ w: Fusebox_V1_AuditAction) -> AuditAction? { actions.first { $0.1 == w }?.0 }

    static func audit(_ a: AuditRecord) -> Fusebox_V1_AuditEntry {
        var e = Fusebox_V1_AuditEntry()
        e.id = a.id
        e.atMs = a.atMs
        if let actor = a.actor {
            var p = Fusebox_V1_PeerIdentity()
            p.commonName = actor.commonName
            p.dnsNames = actor.dnsNames
            p.uris = actor.uris
            p.fingerprintSha256 = actor.fingerprintSHA256
            p.roles = actor.roles
            e.actor = p
        }
        e.action = action(a.action)
        if let key = a.breaker { e.breaker = ref(key) }
        e.policy = a.policy
        e.reason = a.reason
        e.allowed = a.allowed
        e.deniedReason = a.deniedReason
        e.stateBefore = a.stateBefore.map(state) ?? .unspecified
        e.stateAfter = a.stateAfter.map(state) ?? .unspecified
        e.durationMs = a.durationMs
        return e
    }

    static func audit(_ e: Fusebox_V1_AuditEntry) -> AuditRecord {
        var a = AuditRecord(
            atMs: e.atMs,
            actor: e.actor.map { p in
                AuditActor(commonName: p.commonName, dnsNames: p.dnsNames, uris: p.uris, fingerprintSHA256: p.fingerprintSha256, roles: p.roles)
            },
            action: action(e.action) ?? .reset, breaker: e.breaker.map { BreakerKey(registry: $0.registry, name: $0.name) },
            policy: e.policy, reason: e.reason, allowed: e.allowed, deniedReason: e.deniedReason,
            stateBefore: BreakerMapping.state(e.stateBefore), stateAfter: BreakerMapping.state(e.stateAfter), durationMs: e.durationMs)
        a.id = e.id
        return a
    }

    // MARK: Errors

    /// The `fusebox-error-details-bin` trailer for `details`.
    static func trailers(_ details: Fusebox_V1_ErrorDetails) -> RPCMetadata {
        var trailers = RPCMetadata()
        if let bytes = try? details.encode() { trailers.add("fusebox-error-details-bin", binary: bytes) }
        return trailers
    }

    /// The violations an INVALID_ARGUMENT carries (one with an empty field
    /// for an error without `ErrorDetails`).
    static func violations(of error: RPCError) -> [Fusebox_V1_FieldViolation] {
        guard let bytes = error.metadata.firstBinary("fusebox-error-details-bin"), let details = try? Fusebox_V1_ErrorDetails(decoding: bytes) else {
            return [violation("", error.message)]
        }
        return details.violations
    }

    /// INVALID_ARGUMENT for one field, with `ErrorDetails` naming it.
    static func invalid(_ field: String, _ message: String) -> RPCError {
        var v = Fusebox_V1_FieldViolation()
        v.field = field
        v.description = message
        return invalid([v])
    }

    /// INVALID_ARGUMENT listing `violations`, with `ErrorDetails`.
    static func invalid(_ violations: [Fusebox_V1_FieldViolation]) -> RPCError {
        var details = Fusebox_V1_ErrorDetails()
        details.violations = violations
        let text = violations.map { $0.field.isEmpty ? $0.description : "\($0.field): \($0.description)" }.joined(separator: "; ")
        return RPCError(.invalidArgument, text, metadata: trailers(details))
    }

    /// INVALID_ARGUMENT listing every problem of a policy, paths (proto
    /// names) under `prefix`.
    static func invalidArgument(_ error: PolicyValidationError, prefix: String = "policy") -> RPCError {
        var details = Fusebox_V1_ErrorDetails()
        details.violations = PolicyMapping.fieldViolations(error, under: prefix)
        return RPCError(.invalidArgument, error.description, metadata: trailers(details))
    }

    /// `error`, with error details if it is an INVALID_ARGUMENT without them
    /// (one the RPC runtime made, e.g. for a request that does not decode):
    /// one violation about the message as a whole, as common.proto allows.
    @Sendable static func withDetails(_ error: RPCError) -> RPCError {
        guard error.code == .invalidArgument, error.metadata.firstBinary("fusebox-error-details-bin") == nil else { return error }
        var details = Fusebox_V1_ErrorDetails()
        details.violations = [violation("", error.message)]
        var metadata = error.metadata
        if let bytes = try? details.encode() { metadata.add("fusebox-error-details-bin", binary: bytes) }
        return RPCError(.invalidArgument, error.message, metadata: metadata)
    }

    /// A store failure as a status.
    static func status(_ error: StoreError) -> RPCError {
        switch error.code {
        case .versionConflict:
            var details = Fusebox_V1_ErrorDetails()
            details.currentVersion = error.currentVersion ?? 0
            return RPCError(.failedPrecondition, error.message, metadata: trailers(details))
        case .notFound: return RPCError(.notFound, error.message)
        case .resourceExhausted: return RPCError(.resourceExhausted, error.message)
        default: return RPCError(.unavailable, "the store failed: \(error.message)")
        }
    }

    /// A coordinator error as a status; `field` prefixes its field path.
    static func status(_ error: CoordinatorError, field: String = "") -> RPCError {
        switch error.code {
        case .notFound: return RPCError(.notFound, error.message)
        case .failedPrecondition: return RPCError(.failedPrecondition, error.message)
        case .unavailable: return RPCError(.unavailable, error.message)
        case .resourceExhausted: return RPCError(.resourceExhausted, error.message)
        case .invalidArgument:
            let path = [field, error.field].filter { !$0.isEmpty }.joined(separator: ".")
            return invalid(path, error.message)
        }
    }

    /// A violation for one entry of a request.
    static func violation(_ field: String, _ message: String) -> Fusebox_V1_FieldViolation {
        var v = Fusebox_V1_FieldViolation()
        v.field = field
        v.description = message
        return v
    }
}

/// Gathers every problem of a request, so that one INVALID_ARGUMENT lists
/// them all (common.proto, `ErrorDetails.violations`). Checks are made in the
/// order the fields appear in the request, so the list is in that order.
struct ViolationCollector {
    private var found: [RPCError] = []

    /// Runs `body`; an INVALID_ARGUMENT it throws is kept, and nil returned.
    /// Any other error is thrown at once.
    @discardableResult
    mutating func check<T>(_ body: () throws(RPCError) -> T) throws(RPCError) -> T? {
        do {
            return try body()
        } catch {
            guard error.code == .invalidArgument else { throw error }
            found.append(error)
            return nil
        }
    }

    /// Records a problem with `field`.
    mutating func add(_ field: String, _ description: String) {
        found.append(WireConversions.invalid(field, description))
    }

    /// Throws INVALID_ARGUMENT listing every problem, if any: one problem's
    /// error as it was raised (its message and details), several in one.
    func throwIfAny() throws(RPCError) {
        guard let first = found.first else { return }
        if found.count == 1 { throw first }
        throw WireConversions.invalid(found.flatMap { WireConversions.violations(of: $0) })
    }

    /// `value` when no problem was found; otherwise INVALID_ARGUMENT listing them.
    func result<T>(_ value: T) throws(RPCError) -> T {
        try throwIfAny()
        return value
    }
}
