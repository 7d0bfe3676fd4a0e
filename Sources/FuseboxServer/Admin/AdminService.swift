import Foundation
import FuseboxCore
public import FuseboxAuthority
public import FuseboxRPC
import FuseboxWire

/// `fusebox.v1.AdminService`: overrides, the audit log and the cluster's
/// status. Every call, allowed, denied or invalid, is audited with the
/// caller's identity; an allowed action and its entry are stored in one
/// transaction, an allowed read's entry after the read.
public struct AdminService: Sendable {
    let authority: any BreakerAuthority
    let audit: AuditLog
    let cluster: any ClusterStatusSource

    /// Replicated mode: where breaker actions are decided (nil: here).
    public var routing: (any DecisionRouting)?

    /// The service over `authority`; `GetClusterStatus` answers from `clusterStatus`.
    public init(authority: any BreakerAuthority, audit: AuditLog, clusterStatus: any ClusterStatusSource = StandaloneClusterStatus()) {
        self.authority = authority
        self.audit = audit
        self.cluster = clusterStatus
    }

    /// Registers the service's methods on `router`.
    public func register(on router: inout RPCRouter) {
        let service = "fusebox.v1.AdminService"
        let overrides: [(String, BreakerOverride, AuditAction)] = [
            ("ForceOpen", .forcedOpen, .forceOpen), ("ForceClose", .forcedClosed, .forceClose),
            ("Disable", .disabled, .disable), ("Shadow", .shadow, .shadow),
        ]
        for (method, kind, action) in overrides {
            router.unary(service, method) { (request: Fusebox_V1_OverrideRequest, context) in
                let named = try? WireConversions.key(request.breaker, field: "breaker")
                try await audit.authorize(.admin, context, action: action, breaker: named, reason: request.reason, durationMs: request.durationMs)
                let key: BreakerKey
                do throws(RPCError) {
                    var problems = ViolationCollector()
                    let checked = try problems.check { () throws(RPCError) in try WireConversions.key(request.breaker, field: "breaker") }
                    try problems.check { () throws(RPCError) in try WireConversions.checkReason(request.reason) }
                    if kind == .forcedOpen, request.reason.trimmingCharacters(in: .whitespaces).isEmpty {
                        problems.add("reason", "required for ForceOpen; say why, for the audit log")
                    }
                    key = try problems.result(checked ?? BreakerKey(registry: "", name: ""))
                } catch {
                    await audit.refused(context, action: action, breaker: named, reason: request.reason, durationMs: request.durationMs, error)
                    throw error
                }
                if let leader = try routing?.leader() {
                    return try await Forwarding.unary(
                        leader, service, method, request, as: Fusebox_V1_AdminActionResponse.self, caller: audit.authorizer.caller(context))
                }
                let record = audit.allowed(context, action: action, breaker: key, reason: request.reason, durationMs: request.durationMs)
                do throws(CoordinatorError) {
                    let outcome = try await authority.setOverride(
                        key, kind, durationMs: request.durationMs, reason: request.reason,
                        policy: request.policy.isEmpty ? nil : request.policy, audit: record)
                    return Self.response(outcome)
                } catch {
                    let status = WireConversions.status(error, field: error.field == "policy" ? "" : "breaker")
                    if error.code != .unavailable {
                        await audit.refused(context, action: action, breaker: key, reason: request.reason, durationMs: request.durationMs, status)
                    }
                    throw status
                }
            }
        }
        router.unary(service, "Reset") { (request: Fusebox_V1_ResetRequest, context) in
            let named = try? WireConversions.key(request.breaker, field: "breaker")
            try await audit.authorize(.admin, context, action: .reset, breaker: named, reason: request.reason)
            let key: BreakerKey
            do throws(RPCError) {
                var problems = ViolationCollector()
                let checked = try problems.check { () throws(RPCError) in try WireConversions.key(request.breaker, field: "breaker") }
                try problems.check { () throws(RPCError) in try WireConversions.checkReason(request.reason) }
                key = try problems.result(checked ?? BreakerKey(registry: "", name: ""))
            } catch {
                await audit.refused(context, action: .reset, breaker: named, reason: request.reason, error)
                throw error
            }
            if let leader = try routing?.leader() {
                return try await Forwarding.unary(
                    leader, service, "Reset", request, as: Fusebox_V1_AdminActionResponse.self, caller: audit.authorizer.caller(context))
            }
            let record = audit.allowed(context, action: .reset, breaker: key, reason: request.reason)
            do throws(CoordinatorError) {
                let outcome = try await authority.reset(key, reason: request.reason.isEmpty ? "reset" : request.reason, audit: record)
                return Self.response(outcome)
            } catch {
                let status = WireConversions.status(error)
                if error.code != .unavailable { await audit.refused(context, action: .reset, breaker: key, reason: request.reason, status) }
                throw status
            }
        }
        router.unary(service, "ListAudit") { (request: Fusebox_V1_ListAuditRequest, context) in
            try await audit.authorize(.admin, context, action: .listAudit, reason: "")
            var query = AuditQuery()
            do throws(RPCError) {
                var problems = ViolationCollector()
                for (i, action) in request.actions.enumerated() {
                    if let a = WireConversions.action(action) {
                        query.actions.append(a)
                    } else {
                        problems.add("actions[\(i)]", "(\(action.rawValue)) is not an audit action")
                    }
                }
                let limit = try problems.check { () throws(RPCError) in try WireConversions.pageSize(request.limit, field: "limit") }
                query.limit = try problems.result(limit ?? 0)
            } catch {
                await audit.refused(context, action: .listAudit, reason: "", error)
                throw error
            }
            query.sinceMs = request.sinceMs
            query.untilMs = request.untilMs
            query.registry = request.registry
            query.breakerPrefix = request.breakerPrefix
            query.deniedOnly = request.deniedOnly
            query.beforeID = request.beforeId
            let entries: [AuditRecord]
            do throws(StoreError) {
                entries = try await audit.store.listAudit(query)
            } catch {
                throw WireConversions.status(error)
            }
            // After the read: the answer is the log as it was when asked.
            await audit.allowedRead(context, action: .listAudit)
            var response = Fusebox_V1_ListAuditResponse()
            response.entries = entries.prefix(query.limit).map(WireConversions.audit)
            response.truncated = entries.count > query.limit
            return response
        }
        router.unary(service, "GetClusterStatus") { (_: Fusebox_V1_GetClusterStatusRequest, context) in
            try await audit.authorize(.reader, context, action: .getClusterStatus, reason: "")
            let status = WireConversions.clusterStatus(await cluster.clusterStatus())
            await audit.allowedRead(context, action: .getClusterStatus)
            return status
        }
    }

    static func response(_ outcome: AdminOutcome) -> Fusebox_V1_AdminActionResponse {
        var response = Fusebox_V1_AdminActionResponse()
        response.before = outcome.before.map(WireConversions.status)
        response.after = WireConversions.status(outcome.after)
        response.auditId = outcome.auditID
        return response
    }
}
