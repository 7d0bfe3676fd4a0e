import FuseboxRPC
import FuseboxWire
import NIOConcurrencyHelpers

/// Keeps a lease alive on a long-lived `LeaseKeepAlive` stream while `run()` runs.
///
/// ```swift
/// let keepAlive = client.keepAlive(lease)
/// try await withThrowingTaskGroup(of: Void.self) { group in
///     group.addTask { try await keepAlive.run() }
///     for await event in keepAlive.events { if case .lost = event { … } }
/// }
/// ```
///
/// It sends a renewal every third of the TTL etcd last granted. When the
/// stream breaks it reopens it on the next endpoint, with jittered backoff,
/// for as long as the lease can still be alive (until its last renewal plus
/// its TTL). The lease is lost when etcd answers that it no longer exists or
/// when that time passes without a renewal: then `events` reports `.lost`
/// and `run()` throws `.leaseLost`. Cancelling the task stops the renewals
/// (it does not revoke the lease).
public final class EtcdLeaseKeepAlive: Sendable {
    /// What the keepalive reports.
    public enum Event: Sendable, Hashable {
        /// etcd renewed the lease for `ttl` seconds.
        case renewed(ttl: Int64)
        /// The lease is gone or could not be renewed in time; renewals stopped.
        case lost(EtcdError)
    }

    /// The lease kept alive.
    public let lease: EtcdLease
    /// Renewals and loss, in order; ends when `run()` ends. Holds the newest
    /// 64 while nobody reads, so a caller that only awaits `run()` keeps no
    /// growing backlog (`.lost` is always the last one).
    public let events: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation
    private let client: EtcdClient
    /// When the lease expires unless renewed, and the TTL last granted.
    private let state: NIOLockedValueBox<(expiry: ContinuousClock.Instant, ttl: Int64)>

    init(client: EtcdClient, lease: EtcdLease) {
        self.client = client
        self.lease = lease
        // Counted from now, not from the grant: a conservative guess would be
        // earlier, but the grant happened just before in every sensible use.
        self.state = NIOLockedValueBox((.now + .seconds(lease.ttl), lease.ttl))
        (events, continuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingNewest(64))
    }

    private enum StreamEnd: Sendable {
        case gone
        case expired
    }

    /// Renews the lease until the task is cancelled (returns) or the lease is lost (throws).
    ///
    /// - Throws: `EtcdError` with code `.leaseLost`.
    public func run() async throws(EtcdError) {
        defer { continuation.finish() }
        var failures = 0
        while !Task.isCancelled {
            let member = client.currentMember()
            let renewed = NIOLockedValueBox(false)
            var end: StreamEnd
            var lastFailure: EtcdError?
            do {
                end = try await stream(on: member, renewed: renewed)
            } catch {
                if Task.isCancelled { return }
                // A transport failure, not etcd's word: try the next endpoint while the lease may live.
                let failure = (error as? RPCError).map { EtcdError($0, endpoint: member.endpoint.description) }
                    ?? EtcdError(.other, "\(error)", endpoint: member.endpoint.description)
                if renewed.withLockedValue({ $0 }) { failures = 0 }
                failures += 1
                client.abandon(member)
                let delay = client.backoff(attempt: failures)
                if ContinuousClock.now + delay < state.withLockedValue({ $0.expiry }) {
                    do { try await Task.sleep(for: delay) } catch { return }
                    continue
                }
                lastFailure = failure
                end = .expired
            }
            let error: EtcdError
            switch end {
            case .gone:
                error = EtcdError(.leaseLost, "etcd reports lease \(lease.id) no longer exists (expired or revoked)", endpoint: member.endpoint.description)
            case .expired:
                error = EtcdError(
                    .leaseLost, "lease \(lease.id) could not be renewed before it expired"
                        + (lastFailure.map { "; last failure: \($0.message)" } ?? ""), endpoint: lastFailure?.endpoint)
            }
            continuation.yield(.lost(error))
            throw error
        }
    }

    /// One keepalive stream on `member`: a sender, a reader, and a timer for the expiry.
    private func stream(on member: EtcdClient.Member, renewed: NIOLockedValueBox<Bool>) async throws -> StreamEnd {
        var request = Etcdserverpb_LeaseKeepAliveRequest()
        request.id = lease.id
        let bytes = try request.encode()
        let limits = WireLimits(maxMessageBytes: member.rpc.configuration.maximumReceiveMessageBytes)
        let state = self.state
        let continuation = self.continuation
        return try await member.rpc.call(path: EtcdMethod.leaseKeepAlive.path, options: RPCCallOptions(metadata: EtcdClient.requireLeader)) { call in
            try await withThrowingTaskGroup(of: StreamEnd.self) { group in
                group.addTask {
                    while true {
                        try await call.send(bytes, end: false)
                        let ttl = state.withLockedValue { $0.ttl }
                        try await Task.sleep(for: .milliseconds(max(500, ttl * 1000 / 3)))
                    }
                }
                group.addTask {
                    while let message = try await call.next() {
                        let response = try Etcdserverpb_LeaseKeepAliveResponse(decoding: message, limits: limits)
                        guard response.ttl > 0 else { return .gone }
                        state.withLockedValue { $0 = (.now + .seconds(response.ttl), response.ttl) }
                        renewed.withLockedValue { $0 = true }
                        continuation.yield(.renewed(ttl: response.ttl))
                    }
                    throw RPCError(.unavailable, "etcd ended the keepalive stream")
                }
                group.addTask {
                    while true {
                        let expiry = state.withLockedValue { $0.expiry }
                        if ContinuousClock.now >= expiry { return .expired }
                        try await Task.sleep(until: expiry, clock: .continuous)
                    }
                }
                defer { group.cancelAll() }
                guard let end = try await group.next() else { throw RPCError(.internal, "keepalive stream without tasks") }
                return end
            }
        }
    }
}
