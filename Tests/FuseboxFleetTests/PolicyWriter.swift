import Foundation
import FuseboxRPC
import NIOConcurrencyHelpers

/// Policy writes made during a storm, and those the server acknowledged.
final class PolicyWriter: Sendable {
    private let acknowledged = NIOLockedValueBox<[String]>([])
    private let refusals = NIOLockedValueBox<[RPCError]>([])
    private let stopped = NIOLockedValueBox(false)

    var acked: [String] { acknowledged.withLockedValue { $0 } }
    var refused: [RPCError] { refusals.withLockedValue { $0 } }
    func stop() { stopped.withLockedValue { $0 = true } }

    /// Writes `prefix-N` into `registry` one after another, about every
    /// `pauseMs`, until stopped or `limit` writes or `seconds` have passed.
    func run(
        _ fleet: ChaosFleet, registry: String, prefix: String, padding: Int = 0, pauseMs: Int = 20, limit: Int = 3_000,
        seconds: Double = 180
    ) async {
        let end = Date().addingTimeInterval(seconds)
        for i in 0..<limit {
            if stopped.withLockedValue({ $0 }) || Date() > end { return }
            let name = "\(prefix)-\(i)"
            do throws(RPCError) {
                try await fleet.putPolicy(name, registry: registry, padding: padding)
                acknowledged.withLockedValue { $0.append(name) }
            } catch {
                refusals.withLockedValue { $0.append(error) }
            }
            try? await Task.sleep(for: .milliseconds(pauseMs))
        }
    }
}
