import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import FuseboxClient

/// Records which deadlines passed, and when.
private final class Recorder: Sendable {
    let fired = Mutex<[(Int, NIODeadline)]>([])
    func target(_ id: Int) -> Target { Target(id: id, recorder: self) }

    final class Target: DeadlineAction {
        let id: Int
        let recorder: Recorder
        init(id: Int, recorder: Recorder) {
            self.id = id
            self.recorder = recorder
        }
        func deadlinePassed() { recorder.fired.withLock { $0.append((id, .now())) } }
    }

    var ids: [Int] { fired.withLock { $0.map(\.0) } }
}

@Suite struct DeadlineTimerTests {
    let loop = MultiThreadedEventLoopGroup.singleton.next()

    private func settle(_ ms: Int64) async throws {
        try await Task.sleep(for: .milliseconds(ms))
    }

    @Test func firesEachArmedDeadlineOnceInOrderAndNeverADisarmedOne() async throws {
        let timer = DeadlineTimer(eventLoop: loop)
        let recorder = Recorder()
        let start = NIODeadline.now()
        // Armed out of order; 3 is disarmed before its time.
        let offsets: [(Int, Int64)] = [(1, 60), (2, 20), (3, 40), (4, 80)]
        var tokens: [Int: UInt64] = [:]
        for (id, ms) in offsets { tokens[id] = timer.arm(at: start + .milliseconds(ms), recorder.target(id)) }
        #expect(timer.disarm(tokens[3] ?? 0))
        try await settle(200)
        #expect(recorder.ids == [2, 1, 4])
        for (id, at) in recorder.fired.withLock({ $0 }) {
            let due = start + .milliseconds(offsets.first { $0.0 == id }?.1 ?? 0)
            #expect(at >= due, "deadline \(id) fired early")
        }
        #expect(!timer.disarm(tokens[2] ?? 0), "a fired deadline cannot be disarmed")
        #expect(timer.armedCount == 0)
    }

    @Test func anEarlierDeadlineArmedLaterStillFiresOnTime() async throws {
        let timer = DeadlineTimer(eventLoop: loop)
        let recorder = Recorder()
        _ = timer.arm(at: .now() + .seconds(30), recorder.target(1))
        let early = NIODeadline.now() + .milliseconds(20)
        _ = timer.arm(at: early, recorder.target(2))
        try await settle(300)
        #expect(recorder.ids == [2], "the 20 ms deadline fired; the 30 s one waits")
        #expect(timer.armedCount == 1)
    }

    @Test func manyDisarmedDeadlinesAreDroppedAndLiveOnesStillFire() async throws {
        let timer = DeadlineTimer(eventLoop: loop)
        let recorder = Recorder()
        let far = NIODeadline.now() + .seconds(30)
        // Bounded: 10,000 arm/disarm pairs, as calls that finish in time make.
        for i in 0..<10_000 { timer.disarm(timer.arm(at: far + .milliseconds(Int64(i)), recorder.target(i))) }
        _ = timer.arm(at: .now() + .milliseconds(20), recorder.target(-1))
        #expect(timer.armedCount == 1)
        try await settle(300)
        #expect(recorder.ids == [-1])
        #expect(timer.armedCount == 0)
    }
}
