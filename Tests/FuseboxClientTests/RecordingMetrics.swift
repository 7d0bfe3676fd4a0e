import CoreMetrics
import NIOConcurrencyHelpers

/// A swift-metrics backend that remembers every counter and gauge value, for
/// tests that check what the SDK exports. Bootstrapped once per test process.
final class RecordingMetrics: MetricsFactory, Sendable {
    static let shared: RecordingMetrics = {
        let m = RecordingMetrics()
        MetricsSystem.bootstrap(m)
        return m
    }()

    // A pthread lock, which ThreadSanitizer follows: Synchronization's Mutex
    // takes its contended path inside the uninstrumented runtime, so TSan missed
    // the ordering when the in-process server and the SDK updated metrics at once.
    private let values = NIOLockedValueBox<[String: Double]>([:])

    static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
        ([label] + dimensions.sorted { $0.0 < $1.0 }.map { "\($0.0)=\($0.1)" }).joined(separator: ",")
    }

    /// The value of a counter (its total) or gauge (its last value).
    func value(_ label: String, _ dimensions: [(String, String)] = []) -> Double {
        values.withLockedValue { $0[Self.key(label, dimensions)] ?? 0 }
    }

    /// How many durations a timer recorded, and their sum in seconds.
    func timer(_ label: String, _ dimensions: [(String, String)] = []) -> (count: Double, seconds: Double) {
        let key = Self.key(label, dimensions)
        return values.withLockedValue { ($0[key + "#count"] ?? 0, $0[key + "#seconds"] ?? 0) }
    }

    private final class Handler: CounterHandler, RecorderHandler, TimerHandler, Sendable {
        let key: String
        let owner: RecordingMetrics
        init(key: String, owner: RecordingMetrics) {
            self.key = key
            self.owner = owner
        }
        func increment(by amount: Int64) { owner.values.withLockedValue { $0[key, default: 0] += Double(amount) } }
        func reset() { owner.values.withLockedValue { $0[key] = 0 } }
        func record(_ value: Int64) { record(Double(value)) }
        func record(_ value: Double) { owner.values.withLockedValue { $0[key] = value } }
        func recordNanoseconds(_ duration: Int64) {
            owner.values.withLockedValue { v in
                v[key + "#count", default: 0] += 1
                v[key + "#seconds", default: 0] += Double(duration) / 1e9
            }
        }
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        Handler(key: Self.key(label, dimensions), owner: self)
    }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        Handler(key: Self.key(label, dimensions), owner: self)
    }
    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        Handler(key: Self.key(label, dimensions), owner: self)
    }
    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}
}
