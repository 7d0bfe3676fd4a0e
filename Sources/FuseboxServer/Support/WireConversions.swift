import FuseboxAPI
import FuseboxCore
import FuseboxRPC
import FuseboxTLS
import FuseboxWire

/// Conversions between server values and API messages that the services share.
enum WireConversions {
    static func ref(_ registry: String, _ name: String) -> Fusebox_V1_BreakerRef { BreakerMapping.ref(registry, name) }

    static func peer(_ p: TLSPeerIdentity) -> Fusebox_V1_PeerIdentity {
        var w = Fusebox_V1_PeerIdentity()
        w.commonName = p.commonName ?? ""
        w.dnsNames = p.dnsNames
        w.uris = p.uris
        w.fingerprintSha256 = p.fingerprintSHA256
        return w
    }

    static func state(_ s: BreakerState) -> Fusebox_V1_BreakerState { BreakerMapping.wire(s) }

    static func record(_ p: StoredPolicy) -> Fusebox_V1_PolicyRecord {
        var r = Fusebox_V1_PolicyRecord()
        r.policy = PolicyMapping.wire(p.policy)
        r.version = p.version
        r.updatedAtMs = p.updatedAtMs
        r.updatedBy = p.updatedBy
        return r
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

    /// INVALID_ARGUMENT listing every violation, with `ErrorDetails` in the
    /// `fusebox-error-details-bin` trailer.
    static func invalidArgument(_ error: PolicyValidationError, prefix: String = "policy") -> RPCError {
        var details = Fusebox_V1_ErrorDetails()
        details.violations = error.violations.map { v in
            var w = Fusebox_V1_FieldViolation()
            w.field = v.field.isEmpty ? prefix : "\(prefix).\(v.field)"
            w.description = v.message
            return w
        }
        var trailers = RPCMetadata()
        if let bytes = try? details.encode() { trailers.add("fusebox-error-details-bin", binary: bytes) }
        return RPCError(.invalidArgument, error.description, metadata: trailers)
    }

    /// A store failure as a status.
    static func status(_ error: StoreError) -> RPCError {
        switch error.code {
        case .versionConflict:
            var details = Fusebox_V1_ErrorDetails()
            details.currentVersion = error.currentVersion ?? 0
            var trailers = RPCMetadata()
            if let bytes = try? details.encode() { trailers.add("fusebox-error-details-bin", binary: bytes) }
            return RPCError(.failedPrecondition, error.message, metadata: trailers)
        case .notFound: return RPCError(.notFound, error.message)
        default: return RPCError(.unavailable, "the store failed: \(error.message)")
        }
    }
}
