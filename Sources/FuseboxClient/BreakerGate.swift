import NIOConcurrencyHelpers
public import FuseboxCore
import Synchronization

/// The breaker state one client enforces, as the server last pushed it (or
/// as the client's local breaker decided while the server is out of reach).
///
/// Every guarded call reads it: one atomic load, no lock, no allocation.
/// A pushed state is applied only if its generation is newer than the one
/// held, so a client never goes back to an older state.
///
/// A gate can also be *open locally* until a given time: fuseboxd saw this
/// client's failures trip a rule while too few clients failed for the
/// fleet's breaker to open (below quorum). The fleet's state and generation
/// stay as pushed; calls that state would let through (CLOSED, or HALF_OPEN
/// probes) are rejected until the time has come. An operator's
/// FORCED_CLOSED, DISABLED or SHADOW still lets calls through. The mark is a
/// bit of the same word, so a call on a gate that is not open locally still
/// costs one atomic load; only a marked gate reads the time and a second word.
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

    /// generation << 8 | local-open bit (0x80) | state index (0–6).
    private let word: Synchronization.Atomic<UInt64>
    /// While the local-open bit is set: when the local open ends, in
    /// milliseconds since 1970. Written before the bit is set.
    private let localOpenUntilMs = Atomic<Int64>(0)
    /// Serialises the rare writes of a local open (start, extension, end),
    /// so an extension cannot be lost to an end racing with it. Calls never take it.
    private let localOpenWrites = NIOLockedValueBox(())

    private static var localOpenBit: UInt64 { 0x80 }
    private static var stateMask: UInt64 { 0x7f }

    /// A gate starting CLOSED at `generation`.
    public init(state: BreakerState = .closed, generation: BreakerGeneration = BreakerGeneration(0)) {
        word = Atomic(Self.pack(state, generation))
    }

    /// The state and generation now, as the fleet (or the local breaker of
    /// local mode) decided them; a local open below quorum is `localOpenUntil`.
    public var snapshot: Snapshot { Self.unpack(word.load(ordering: .acquiring)) }

    /// Decides a call from the state held; no I/O. Reads the wall clock only
    /// while the gate is open locally.
    @inline(__always)
    public func admit() -> Admission {
        admit(now: wallNow())
    }

    /// Decides a call from the state held at `now`; no I/O. `now` is
    /// evaluated only while the gate is open locally.
    @inline(__always)
    public func admit(now: @autoclosure () -> Timestamp) -> Admission {
        let raw = word.load(ordering: .acquiring)
        let s = Self.unpack(raw)
        if raw & Self.localOpenBit != 0, let rejected = rejectedLocally(s, now: now()) { return rejected }
        switch s.state {
        case .closed, .forcedClosed, .disabled, .shadow: return .pass(generation: s.generation)
        case .halfOpen: return .needsPermit(generation: s.generation)
        case .open, .forcedOpen: return .reject(state: s.state, generation: s.generation)
        }
    }

    /// The slow path of a gate marked open locally: reject what the fleet's
    /// state would let through (CLOSED, HALF_OPEN) until the local open ends.
    @inline(never)
    private func rejectedLocally(_ s: Snapshot, now: Timestamp) -> Admission? {
        guard now.milliseconds < localOpenUntilMs.load(ordering: .acquiring) else { return nil }
        switch s.state {
        case .closed, .halfOpen: return .reject(state: .open, generation: s.generation)
        case .open, .forcedOpen, .forcedClosed, .disabled, .shadow: return nil
        }
    }

    /// Applies `state` if `generation` is newer than the one held. Returns
    /// whether it was applied. A local open stays.
    @discardableResult
    public func apply(_ state: BreakerState, generation: BreakerGeneration) -> Bool {
        var current = word.load(ordering: .relaxed)
        while true {
            guard generation > Self.unpack(current).generation else { return false }
            let desired = Self.pack(state, generation) | (current & Self.localOpenBit)
            let (exchanged, original) = word.compareExchange(
                expected: current, desired: desired, successOrdering: .acquiringAndReleasing, failureOrdering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    fileprivate func storeRaw(_ state: BreakerState, _ generation: BreakerGeneration) {
        var current = word.load(ordering: .relaxed)
        while true {
            let desired = Self.pack(state, generation) | (current & Self.localOpenBit)
            let (exchanged, original) = word.compareExchange(
                expected: current, desired: desired, successOrdering: .acquiringAndReleasing, failureOrdering: .relaxed)
            if exchanged { return }
            current = original
        }
    }

    private static func pack(_ state: BreakerState, _ generation: BreakerGeneration) -> UInt64 {
        (generation.value << 8) | UInt64(BreakerState.allCases.firstIndex(of: state) ?? 0)
    }

    private static func unpack(_ word: UInt64) -> Snapshot {
        let index = Int(word & stateMask)
        let states = BreakerState.allCases
        return Snapshot(state: index < states.count ? states[index] : .closed, generation: BreakerGeneration(word >> 8))
    }
}

extension BreakerGate {
    /// Sets state and generation whatever the generation held: the server's
    /// state winning over a local breaker's on resynchronisation, or a local
    /// breaker moving the gate. A local open stays.
    public func force(_ state: BreakerState, generation: BreakerGeneration) {
        storeRaw(state, generation)
    }

    // MARK: Local open below quorum

    /// Until when the gate is open locally; nil when it is not (its end may
    /// have passed but not yet been recorded by `endLocalOpen(ifDueAt:)`).
    public var localOpenUntil: Timestamp? {
        guard word.load(ordering: .acquiring) & Self.localOpenBit != 0 else { return nil }
        return Timestamp(milliseconds: localOpenUntilMs.load(ordering: .acquiring))
    }

    /// Opens this client's gate alone until `until`, or keeps an open one
    /// open until then if that is later. Returns true when the gate was not
    /// open locally before.
    @discardableResult
    public func openLocally(until: Timestamp) -> Bool {
        localOpenWrites.withLockedValue { _ in
            let marked = word.load(ordering: .acquiring) & Self.localOpenBit != 0
            let held = localOpenUntilMs.load(ordering: .relaxed)
            localOpenUntilMs.store(marked ? max(held, until.milliseconds) : until.milliseconds, ordering: .releasing)
            word.bitwiseOr(Self.localOpenBit, ordering: .acquiringAndReleasing)
            return !marked
        }
    }

    /// Ends the local open if its time has come by `now`. Returns true when
    /// it ended now: the gate follows the fleet's state again.
    @discardableResult
    public func endLocalOpen(ifDueAt now: Timestamp) -> Bool {
        localOpenWrites.withLockedValue { _ in
            guard word.load(ordering: .acquiring) & Self.localOpenBit != 0,
                localOpenUntilMs.load(ordering: .relaxed) <= now.milliseconds
            else { return false }
            word.bitwiseAnd(~Self.localOpenBit, ordering: .acquiringAndReleasing)
            return true
        }
    }
}
