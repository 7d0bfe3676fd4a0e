import CoreMetrics
import FuseboxCore
public import FuseboxAuthority
import FuseboxRPC
import FuseboxTLS
import Logging

/// Writes the audit log: every admin action (allowed, denied or invalid),
/// with the caller's identity and roles. An allowed action's entry is
/// written by the store in the action's own transaction; denied and invalid
/// attempts are appended on their own, and a failure to append them is
/// logged and counted (`fusebox_audit_write_failures_total`), never ignored.
public struct AuditLog: Sendable {
    let store: any AuditStore
    let authorizer: Authorizer
    let clock: any FleetClock
    let queue: AsyncStream<AuditRecord>.Continuation
    /// True while the store cannot take an entry (replicated: etcd does not
    /// answer this replica).
    let storeUnreachable: @Sendable () -> Bool
    private let logger = Logger(label: "fusebox.audit")

    /// An audit log over `store`; `queue` takes the entries written off the
    /// request path (`enqueue`), by whoever reads its stream and `write`s them.
    public init(
        store: any AuditStore, authorizer: Authorizer, clock: any FleetClock, queue: AsyncStream<AuditRecord>.Continuation,
        storeUnreachable: @escaping @Sendable () -> Bool = { false }
    ) {
        self.store = store
        self.authorizer = authorizer
        self.clock = clock
        self.queue = queue
        self.storeUnreachable = storeUnreachable
    }

    /// Queues `record` to be written off the request path; one the queue
    /// drops (it is full) is counted as an audit write that failed.
    func enqueue(_ record: AuditRecord) {
        if case .dropped = queue.yield(record) { ServerMetrics.auditWriteFailed() }
    }

    /// The caller as the audit log names it.
    func actor(_ context: RPCServerContext) -> AuditActor? {
        let caller = authorizer.caller(context)
        return WireConversions.actor(caller, role: authorizer.role(of: caller))
    }

    /// The entry of an allowed action, to be stored with it.
    func allowed(
        _ context: RPCServerContext, action: AuditAction, breaker: BreakerKey? = nil, policy: String = "", reason: String,
        durationMs: UInt32 = 0
    ) -> AuditRecord {
        AuditRecord(
            atMs: clock.now().milliseconds, actor: actor(context), action: action, breaker: breaker, policy: policy,
            reason: reason, allowed: true, durationMs: durationMs)
    }

    /// Throws PERMISSION_DENIED unless the caller has `role`, auditing the denial.
    func authorize(
        _ role: Role, _ context: RPCServerContext, action: AuditAction, breaker: BreakerKey? = nil, policy: String = "", reason: String
    ) async throws(RPCError) {
        do {
            try authorizer.require(role, context)
        } catch {
            await append(AuditRecord(
                atMs: clock.now().milliseconds, actor: actor(context), action: action, breaker: breaker, policy: policy,
                reason: String(reason.utf8.prefix(1_024)) ?? "", allowed: false, deniedReason: error.message))
            throw error
        }
    }

    /// Audits an allowed read (ListAudit, GetClusterStatus): appended on its own.
    func allowedRead(_ context: RPCServerContext, action: AuditAction, reason: String = "") async {
        await append(AuditRecord(atMs: clock.now().milliseconds, actor: actor(context), action: action, reason: reason, allowed: true))
    }

    /// Audits an authorized request refused as invalid.
    func refused(
        _ context: RPCServerContext, action: AuditAction, breaker: BreakerKey? = nil, policy: String = "", reason: String, _ error: RPCError
    ) async {
        await append(AuditRecord(
            atMs: clock.now().milliseconds, actor: actor(context), action: action, breaker: breaker, policy: policy,
            reason: String(reason.utf8.prefix(1_024)) ?? "", allowed: false, deniedReason: "invalid: \(error.message)"))
    }

    /// Appends an entry on its own, before the answer. While the store cannot
    /// take it, it is queued instead: the answer would otherwise wait out the
    /// etcd client's retries (retryTimeout, 15 s by default) for nothing.
    func append(_ record: AuditRecord) async {
        if storeUnreachable() { enqueue(record) } else { await write(record) }
    }

    /// Writes an entry now; a failure is logged and counted.
    func write(_ record: AuditRecord) async {
        do throws(StoreError) {
            _ = try await store.appendAudit(record)
        } catch {
            ServerMetrics.auditWriteFailed()
            logger.error("could not write an audit entry", metadata: [
                "action": "\(record.action)", "allowed": "\(record.allowed)", "error": "\(error)",
            ])
        }
    }
}
