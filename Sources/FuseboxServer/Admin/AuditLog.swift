import CoreMetrics
import FuseboxCore
public import FuseboxAuthority
import FuseboxRPC
import FuseboxTLS
import Logging
import NIOConcurrencyHelpers

/// Writes the audit log: every admin action (allowed, denied or invalid),
/// with the caller's identity and roles. An allowed action's entry is
/// written by the store in the action's own transaction; denied and invalid
/// attempts are appended on their own, and a failure to append them is
/// logged and counted (`fusebox_audit_write_failures_total`), never ignored.
public struct AuditLog: Sendable {
    let store: any AuditStore
    let authorizer: Authorizer
    let clock: any FleetClock
    let queue: AuditQueue
    /// True while the store cannot take an entry (replicated: etcd does not
    /// answer this replica).
    let storeUnreachable: @Sendable () -> Bool
    private let logger = Logger(label: "fusebox.audit")

    /// An audit log over `store`; `queue` takes the entries written off the
    /// request path (`enqueue`), for whoever runs it to `write` them.
    public init(
        store: any AuditStore, authorizer: Authorizer, clock: any FleetClock, queue: AuditQueue,
        storeUnreachable: @escaping @Sendable () -> Bool = { false }
    ) {
        self.store = store
        self.authorizer = authorizer
        self.clock = clock
        self.queue = queue
        self.storeUnreachable = storeUnreachable
    }

    /// Queues `record` to be written off the request path.
    func enqueue(_ record: AuditRecord) {
        queue.enqueue(record)
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
        _ role: Role, _ context: RPCServerContext, action: AuditAction, breaker: BreakerKey? = nil, policy: String = "", reason: String,
        durationMs: UInt32 = 0
    ) async throws(RPCError) {
        do {
            try authorizer.require(role, context)
        } catch {
            await append(AuditRecord(
                atMs: clock.now().milliseconds, actor: actor(context), action: action, breaker: breaker, policy: policy,
                reason: String(reason.utf8.prefix(1_024)) ?? "", allowed: false, deniedReason: error.message, durationMs: durationMs))
            throw error
        }
    }

    /// Audits an allowed read (ListAudit, GetClusterStatus): appended on its own.
    func allowedRead(_ context: RPCServerContext, action: AuditAction, reason: String = "") async {
        await append(AuditRecord(atMs: clock.now().milliseconds, actor: actor(context), action: action, reason: reason, allowed: true))
    }

    /// Audits an authorized request refused as invalid.
    func refused(
        _ context: RPCServerContext, action: AuditAction, breaker: BreakerKey? = nil, policy: String = "", reason: String,
        durationMs: UInt32 = 0, _ error: RPCError
    ) async {
        await append(AuditRecord(
            atMs: clock.now().milliseconds, actor: actor(context), action: action, breaker: breaker, policy: policy,
            reason: String(reason.utf8.prefix(1_024)) ?? "", allowed: false, deniedReason: "invalid: \(error.message)", durationMs: durationMs))
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

/// The audit entries written off the request path: certificate refusals at
/// the handshake, and on a replica without etcd every entry written on its
/// own. At most `capacity` wait; under a flood the newest are kept. At
/// shutdown, `finish(within:)` lets the writer write what waits before the
/// store closes. Every entry that is dropped, refused after `finish`, or
/// given up on when `finish`'s limit passes is counted as an audit write
/// that failed (`fusebox_audit_write_failures_total`) and logged (drops at
/// most once per 10 s, with their total): none is lost silently.
public final class AuditQueue: Sendable {
    private struct State {
        /// Entries queued and not yet written or given up on.
        var waiting = 0
        /// The writer is in `write` with an entry (counted in `waiting`).
        var writing = false
        var writerEnded = false
        /// `finish` gave up: the writer writes nothing more.
        var abandoned = false
        var dropped = 0
        var lastDropLog: ContinuousClock.Instant?
    }

    private let entries: AsyncStream<AuditRecord>
    private let continuation: AsyncStream<AuditRecord>.Continuation
    private let state = NIOLockedValueBox(State())
    private let logger = Logger(label: "fusebox.audit")

    public init(capacity: Int = 1_000) {
        (entries, continuation) = AsyncStream<AuditRecord>.makeStream(bufferingPolicy: .bufferingNewest(capacity))
    }

    /// Entries queued and not yet written or given up on.
    public var waiting: Int { state.withLockedValue { $0.waiting } }

    /// Queues `record` for the writer.
    public func enqueue(_ record: AuditRecord) {
        // Counted before the writer can see it, so `waiting` never goes below 0.
        state.withLockedValue { $0.waiting += 1 }
        switch continuation.yield(record) {
        case .enqueued:
            break
        case .dropped:
            // The oldest waiting entry gave way to this one.
            ServerMetrics.auditWriteFailed()
            let (report, total) = state.withLockedValue { state -> (Bool, Int) in
                state.waiting -= 1
                state.dropped += 1
                let now = ContinuousClock.now
                guard state.lastDropLog.map({ now - $0 >= .seconds(10) }) ?? true else { return (false, state.dropped) }
                state.lastDropLog = now
                return (true, state.dropped)
            }
            if report {
                logger.error("the queue of audit entries written off the request path is full; the oldest are dropped", metadata: [
                    "dropped_since_start": "\(total)",
                ])
            }
        case .terminated:
            state.withLockedValue { $0.waiting -= 1 }
            lost(1, "an audit entry came after the queue was finished (shutdown)")
        @unknown default:
            state.withLockedValue { $0.waiting -= 1 }
            lost(1, "the queue refused an audit entry")
        }
    }

    /// Writes the queued entries with `write`, in order, until `finish` (or
    /// cancellation). `write` counts its own failures.
    public func run(_ write: @Sendable (AuditRecord) async -> Void) async {
        for await record in entries {
            // Given up on (and counted) by `finish`: not written late.
            let abandoned = state.withLockedValue { state -> Bool in
                if state.abandoned { state.waiting -= 1 } else { state.writing = true }
                return state.abandoned
            }
            if abandoned { continue }
            await write(record)
            state.withLockedValue {
                $0.writing = false
                $0.waiting -= 1
            }
        }
        state.withLockedValue { $0.writerEnded = true }
    }

    /// Takes no more entries and waits up to `limit` for the writer to write
    /// those waiting. Returns how many it gave up on then (the writer writes
    /// none of them); they are counted as audit writes that failed. The one
    /// the writer may be writing at that moment is not among them: `write`
    /// counts it if it fails.
    @discardableResult
    public func finish(within limit: Duration) async -> Int {
        continuation.finish()
        let deadline = ContinuousClock.now + limit
        while !state.withLockedValue({ $0.writerEnded }), ContinuousClock.now < deadline, !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(10))
        }
        let left = state.withLockedValue { state -> Int in
            guard !state.writerEnded else { return 0 }
            state.abandoned = true
            return state.waiting - (state.writing ? 1 : 0)
        }
        if left > 0 { lost(left, "audit entries still waiting to be written when the shutdown's limit (\(limit)) passed") }
        return left
    }

    private func lost(_ count: Int, _ what: String) {
        ServerMetrics.auditWriteFailed(count)
        logger.error("audit entries not written", metadata: ["count": "\(count)", "why": "\(what)"])
    }
}
