public import FuseboxCore
import Foundation

/// Where the fleet's authority reads the time and waits for it.
///
/// The coordinator and the registry take their clock as a value: fuseboxd
/// runs on `SystemFleetClock` (Unix milliseconds, because deadlines are
/// stored and must mean the same after a restart), tests on a manual clock
/// that only moves when the test says so.
public protocol FleetClock: Sendable {
    /// The current time.
    func now() -> Timestamp
    /// Returns once the time is at or past `deadline`; throws
    /// `CancellationError` if the task is cancelled first.
    func sleep(until deadline: Timestamp) async throws
}

/// The wall clock: Unix milliseconds.
public struct SystemFleetClock: FleetClock {
    /// The wall clock.
    public init() {}

    public func now() -> Timestamp {
        Timestamp(milliseconds: Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)))
    }

    public func sleep(until deadline: Timestamp) async throws {
        // The wall clock may be stepped while sleeping: sleep the difference,
        // then look again.
        while true {
            let left = deadline.milliseconds(since: now())
            if left <= 0 { return }
            try await Task.sleep(for: .milliseconds(left))
        }
    }
}
