import FuseboxAuthority
public import FuseboxRPC
public import FuseboxWire
import NIOConcurrencyHelpers

/// A follower's reports on their way to the leader: batches that arrive
/// while a forward call is in flight wait and go together in the next
/// `ReplicaService.ForwardReports` call, so the leader gets a few large calls
/// instead of one per client batch. Each batch is still counted on its own
/// (its client, incarnation and sequence), and each caller gets its own answer.
public final class ReportForwarder: Sendable {
    /// Most batches per forward call.
    public static let maximumBatches = 1_000
    /// Forward calls in flight at once.
    static let senders = 2

    private struct Waiting {
        var batch: Fusebox_V1_OutcomeBatch
        var leader: RPCClient
        var continuation: CheckedContinuation<Result<Fusebox_V1_ReportOutcomesResponse, RPCError>, Never>
    }

    private let queue = NIOLockedValueBox<[Waiting]>([])
    /// One per sender (a doorbell wakes one waiter).
    private let bells = (0..<ReportForwarder.senders).map { _ in Doorbell() }
    /// Forward calls made, and batches they carried, since start.
    private let counts = NIOLockedValueBox((calls: 0, batches: 0))

    /// An idle forwarder; `run()` sends.
    public init() {}

    /// Forwards `batch` to `leader` with the batches waiting alongside it;
    /// returns its own answer.
    public func forward(_ batch: Fusebox_V1_OutcomeBatch, to leader: RPCClient) async throws(RPCError) -> Fusebox_V1_ReportOutcomesResponse {
        let result = await withCheckedContinuation { continuation in
            queue.withLockedValue { $0.append(Waiting(batch: batch, leader: leader, continuation: continuation)) }
            for bell in bells { bell.ring() }
        }
        return try result.get()
    }

    /// (calls, batches) forwarded so far.
    public var forwarded: (calls: Int, batches: Int) { counts.withLockedValue { $0 } }

    /// Sends until cancelled; then answers what waits with UNAVAILABLE.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            for bell in bells {
                group.addTask {
                    while await bell.wait() { await self.sendWaiting() }
                }
            }
        }
        let left = queue.withLockedValue { q in
            defer { q = [] }
            return q
        }
        for w in left { w.continuation.resume(returning: .failure(RPCError(.unavailable, "this replica is shutting down; retry on another"))) }
    }

    /// Sends everything waiting, call by call, grouped by leader.
    private func sendWaiting() async {
        while true {
            let group = queue.withLockedValue { q -> [Waiting] in
                guard let first = q.first else { return [] }
                var taken: [Waiting] = []
                var rest: [Waiting] = []
                for w in q {
                    if w.leader === first.leader, taken.count < Self.maximumBatches { taken.append(w) } else { rest.append(w) }
                }
                q = rest
                return taken
            }
            guard let leader = group.first?.leader else { return }
            // Another sender may be idle: let it take what is left meanwhile.
            if !queue.withLockedValue({ $0.isEmpty }) { for bell in bells { bell.ring() } }
            var request = Fusebox_V1_ForwardedReports()
            request.batches = group.map(\.batch)
            counts.withLockedValue { c in
                c.calls += 1
                c.batches += group.count
            }
            do {
                let answer = try await leader.unary(
                    "fusebox.v1.ReplicaService", "ForwardReports", request, as: Fusebox_V1_ForwardedReportsResult.self,
                    options: RPCCallOptions(timeout: Forwarding.timeout))
                for (i, w) in group.enumerated() {
                    guard i < answer.results.count else {
                        w.continuation.resume(returning: .failure(RPCError(.unavailable, "the leader answered \(answer.results.count) of \(group.count) forwarded batches; retry")))
                        continue
                    }
                    let r = answer.results[i]
                    if r.code == 0, let response = r.response {
                        w.continuation.resume(returning: .success(response))
                    } else {
                        w.continuation.resume(returning: .failure(RPCError(RPCStatusCode(rawValue: Int(r.code)) ?? .unknown, r.message)))
                    }
                }
            } catch {
                for w in group { w.continuation.resume(returning: .failure(error)) }
            }
        }
    }
}
