public import FuseboxCore
import Synchronization

/// The breaker state one client enforces, as the server last pushed it (or
/// as the client's local breaker decided while the server is out of reach).
///
/// Every guarded call reads it: one atomic load, no lock, no allocation.
/// A pushed state is applied only if its generation is newer than the one
/// held, so a client never goes back to an older state.
public final class BreakerGate: Sendable {
    /// State and generation, read together.
    public struct Snapshot: Sendable, Hashable {
        /// The state to enforce.
        public var state: BreakerState
        /// Its generation.
        public var generation: BreakerGeneration
    }

    /// What a call may do.
    public enum Admission: Sendable, Hashable {
        /// Run, and record the outcome under `generation`.
        case pass(generation: BreakerGeneration)
        /// Ask the server for a half-open probe permit first.
        case needsPermit(generation: BreakerGeneration)
        /// Rejected: the breaker is open.
        case reject(state: BreakerState, generation: BreakerGeneration)
    }

    /// generation << 8 | state index.
    private let word: Atomic<UInt64>

    /// A gate starting CLOSED at `generation`.
    public init(state: BreakerState = .closed, generation: BreakerGeneration = BreakerGeneration(0)) {
        word = Atomic(Self.pack(state, generation))
    }

    /// The state and generation now.
    public var snapshot: Snapshot { Self.unpack(word.load(ordering: .acquiring)) }

    /// Decides a call from the state held; no I/O.
    @inline(__always)
    public func admit() -> Admission {
        let s = Self.unpack(word.load(ordering: .acquiring))
        switch s.state {
        case .closed, .forcedClosed, .disabled, .shadow: return .pass(generation: s.generation)
        case .halfOpen: return .needsPermit(generation: s.generation)
        case .open, .forcedOpen: return .reject(state: s.state, generation: s.generation)
        }
    }

    /// Applies `state` if `generation` is newer than the one held. Returns
    /// whether it was applied.
    @discardableResult
    public func apply(_ state: BreakerState, generation: BreakerGeneration) -> Bool {
        var current = word.load(ordering: .relaxed)
        while true {
            guard generation > Self.unpack(current).generation else { return false }
            let (exchanged, original) = word.compareExchange(
                expected: current, desired: Self.pack(state, generation), successOrdering: .acquiringAndReleasing, failureOrdering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    fileprivate func storeRaw(_ state: BreakerState, _ generation: BreakerGeneration) {
        word.store(Self.pack(state, generation), ordering: .releasing)
    }

    private static func pack(_ state: BreakerState, _ generation: BreakerGeneration) -> UInt64 {
        (generation.value << 8) | UInt64(BreakerState.allCases.firstIndex(of: state) ?? 0)
    }

    private static func unpack(_ word: UInt64) -> Snapshot {
        let index = Int(word & 0xff)
        let states = BreakerState.allCases
        return Snapshot(state: index < states.count ? states[index] : .closed, generation: BreakerGeneration(word >> 8))
    }
}

extension BreakerGate {
    /// Sets state and generation whatever the generation held: the server's
    /// state winning over a local breaker's on resynchronisation, or a local
    /// breaker moving the gate.
    public func force(_ state: BreakerState, generation: BreakerGeneration) {
        storeRaw(state, generation)
    }
}
