public import FuseboxCore
public import FuseboxWire

/// Breaker states, outcomes and counts between API messages and domain
/// values. The server and the SDK both convert through here.
public enum BreakerMapping {
    /// The API enum for a domain state.
    public static func wire(_ s: BreakerState) -> Fusebox_V1_BreakerState {
        switch s {
        case .closed: return .closed
        case .open: return .open
        case .halfOpen: return .halfOpen
        case .forcedOpen: return .forcedOpen
        case .forcedClosed: return .forcedClosed
        case .disabled: return .disabled
        case .shadow: return .shadow
        }
    }

    /// The domain state for an API enum; nil for UNSPECIFIED or a number
    /// this version does not know.
    public static func state(_ w: Fusebox_V1_BreakerState) -> BreakerState? {
        switch w {
        case .closed: return .closed
        case .open: return .open
        case .halfOpen: return .halfOpen
        case .forcedOpen: return .forcedOpen
        case .forcedClosed: return .forcedClosed
        case .disabled: return .disabled
        case .shadow: return .shadow
        default: return nil
        }
    }

    /// The domain status of an API status (unknown states read as CLOSED).
    public static func status(_ w: Fusebox_V1_BreakerStatus) -> BreakerStatus {
        BreakerStatus(
            state: state(w.state) ?? .closed, evaluatedState: state(w.evaluatedState) ?? .closed,
            generation: BreakerGeneration(w.generation), since: Timestamp(milliseconds: w.sinceMs),
            until: w.untilMs == 0 ? nil : Timestamp(milliseconds: w.untilMs), reason: w.reason)
    }

    /// The API counts for domain counts.
    public static func wire(_ c: OutcomeCounts) -> Fusebox_V1_OutcomeCounts {
        var w = Fusebox_V1_OutcomeCounts()
        w.success = c.success
        w.failure = c.failure
        w.slowSuccess = c.slowSuccess
        w.slowFailure = c.slowFailure
        w.ignored = c.ignored
        return w
    }

    /// The domain counts for API counts (none when absent).
    public static func counts(_ w: Fusebox_V1_OutcomeCounts?) -> OutcomeCounts {
        guard let w else { return OutcomeCounts() }
        return OutcomeCounts(success: w.success, failure: w.failure, slowSuccess: w.slowSuccess, slowFailure: w.slowFailure, ignored: w.ignored)
    }

    /// The API enum for a domain outcome.
    public static func wire(_ o: Outcome) -> Fusebox_V1_Outcome {
        switch o {
        case .success: return .success
        case .failure: return .failure
        case .slowSuccess: return .slowSuccess
        case .slowFailure: return .slowFailure
        case .ignored: return .ignored
        }
    }

    /// The domain outcome for an API enum (unknown numbers count as ignored).
    public static func outcome(_ o: Fusebox_V1_Outcome) -> Outcome {
        switch o {
        case .success: return .success
        case .failure: return .failure
        case .slowSuccess: return .slowSuccess
        case .slowFailure: return .slowFailure
        default: return .ignored
        }
    }

    /// A breaker reference.
    public static func ref(_ registry: String, _ name: String) -> Fusebox_V1_BreakerRef {
        var r = Fusebox_V1_BreakerRef()
        r.registry = registry
        r.name = name
        return r
    }
}
