import Foundation
import FuseboxCore
public import FuseboxRPC
import FuseboxWire

/// `fusebox.v1.AdminService`: overrides and the audit log. Every call,
/// allowed or denied, is audited with the caller's identity.
public struct AdminService: Sendable {
    let coordinator: BreakerCoordinator
    let authorizer: Authorizer
    let audit: AuditLog

    /// Registers the service's methods on `router`.
    public func register(on router: inout RPCRouter) {
        let service = "fusebox.v1.AdminService"
        let overrides: [(String, BreakerOverride, Fusebox_V1_AuditAction)] = [
            ("ForceOpen", .forcedOpen, .forceOpen), ("ForceClose", .forcedClosed, .forceClose),
            ("Disable", .disabled, .disable), ("Shadow", .shadow, .shadow),
        ]
        for (method, kind, action) in overrides {
            router.unary(service, method) { (request: Fusebox_V1_OverrideRequest, context) in
                let ref = try Self.ref(request.breaker)
                try await requireAdmin(context, action, ref, request.reason)
                if kind == .forcedOpen, request.reason.trimmingCharacters(in: .whitespaces).isEmpty {
                    throw RPCError(.invalidArgument, "reason: required for ForceOpen; say why, for the audit log")
                }
                let (before, after) = try await coordinator.setOverride(
                    ref, kind, durationMs: request.durationMs, reason: request.reason, policy: request.policy.isEmpty ? nil : request.policy)
                return try await respond(action, context, ref, request.reason, before, after, request.durationMs)
            }
        }
        router.unary(service, "Reset") { (request: Fusebox_V1_ResetRequest, context) in
            let ref = try Self.ref(request.breaker)
            try await requireAdmin(context, .reset, ref, request.reason)
            let (before, after) = try await coordinator.reset(ref, reason: request.reason.isEmpty ? "reset" : request.reason)
            return try await respond(.reset, context, ref, request.reason, before, after, 0)
        }
        router.unary(service, "ListAudit") { (request: Fusebox_V1_ListAuditRequest, context) in
            try authorizer.require(.admin, context)
            let limit = request.limit == 0 ? 100 : min(Int(request.limit), 1_000)
            let entries: [Fusebox_V1_AuditEntry]
            do throws(StoreError) {
                entries = try await audit.store.listAudit(request)
            } catch {
                throw WireConversions.status(error)
            }
            var response = Fusebox_V1_ListAuditResponse()
            response.entries = Array(entries.prefix(limit))
            response.truncated = entries.count > limit
            return response
        }
    }

    private func respond(
        _ action: Fusebox_V1_AuditAction, _ context: RPCServerContext, _ ref: (registry: String, name: String), _ reason: String,
        _ before: BreakerStatus?, _ after: BreakerStatus, _ durationMs: UInt32
    ) async throws(RPCError) -> Fusebox_V1_AdminActionResponse {
        let id: UInt64
        do throws(StoreError) {
            id = try await audit.record(
                action, peer: context.peer, breaker: ref, reason: reason, allowed: true, before: before?.state, after: after.state, durationMs: durationMs)
        } catch {
            throw WireConversions.status(error)
        }
        var response = Fusebox_V1_AdminActionResponse()
        let key = BreakerCoordinator.Key(registry: ref.registry, name: ref.name)
        response.before = before.map { BreakerCoordinator.wire($0, key: key, policy: "") }
        response.after = BreakerCoordinator.wire(after, key: key, policy: "")
        response.auditId = id
        return response
    }

    private func requireAdmin(
        _ context: RPCServerContext, _ action: Fusebox_V1_AuditAction, _ ref: (registry: String, name: String), _ reason: String
    ) async throws(RPCError) {
        do {
            try authorizer.require(.admin, context)
        } catch {
            _ = try? await audit.record(action, peer: context.peer, breaker: ref, reason: reason, allowed: false, deniedReason: error.message)
            throw error
        }
    }

    static func ref(_ ref: Fusebox_V1_BreakerRef?) throws(RPCError) -> (registry: String, name: String) {
        guard let ref, !ref.name.isEmpty else { throw RPCError(.invalidArgument, "breaker.name: required") }
        let key = BreakerCoordinator.Key(ref)
        return (key.registry, key.name)
    }
}
