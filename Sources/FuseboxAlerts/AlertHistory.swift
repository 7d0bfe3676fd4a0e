import NIOConcurrencyHelpers

/// What happened to one notification at one sink.
public enum AlertDelivery: Sendable, Hashable {
    /// Waiting in the sink's queue, or being tried.
    case pending
    /// The receiver took it (HTTP 2xx, SMTP accepted), after this many attempts.
    case delivered(attempts: Int)
    /// Every attempt failed; the last error.
    case failed(attempts: Int, error: String)
    /// The sink's queue was full.
    case dropped

    public var name: String {
        switch self {
        case .pending: return "pending"
        case .delivered: return "delivered"
        case .failed: return "failed"
        case .dropped: return "dropped"
        }
    }
}

/// One entry of the alert history.
public struct AlertRecord: Sendable, Hashable {
    public var notification: AlertNotification
    /// Per sink name.
    public var deliveries: [String: AlertDelivery]
}

/// The last notifications this server made, newest last, with what each sink
/// did with them. Bounded: the oldest go first. In memory: a restarted
/// server starts an empty history (docs/ALERTS.md).
public final class AlertHistory: Sendable {
    public let capacity: Int
    private let state: NIOLockedValueBox<(records: [AlertRecord], start: Int)>

    public init(capacity: Int = 1_000) {
        self.capacity = max(capacity, 1)
        self.state = NIOLockedValueBox(([], 0))
    }

    func append(_ n: AlertNotification, sinks: [String]) {
        let record = AlertRecord(notification: n, deliveries: Dictionary(uniqueKeysWithValues: sinks.map { ($0, AlertDelivery.pending) }))
        state.withLockedValue { s in
            if s.records.count < capacity {
                s.records.append(record)
            } else {
                s.records[s.start] = record
                s.start = (s.start + 1) % capacity
            }
        }
    }

    func update(_ id: UInt64, sink: String, _ delivery: AlertDelivery) {
        state.withLockedValue { s in
            guard let i = s.records.lastIndex(where: { $0.notification.id == id }) else { return }
            s.records[i].deliveries[sink] = delivery
        }
    }

    /// The records, newest first.
    public func records() -> [AlertRecord] {
        state.withLockedValue { s in Array((s.records[s.start...] + s.records[..<s.start]).reversed()) }
    }
}
