// What ThreadSanitizer cannot see: the ordering Swift's reference counting
// gives. Not part of any target; run it by hand:
//
//   swiftc -sanitize=thread -O Tests/Sanitizers/refcount-handoff.swift -o /tmp/handoff && /tmp/handoff
//
// One thread hands an object to another under a lock; the other reads it and
// releases it; the first waits until it holds the only reference
// (isKnownUniquelyReferenced, as every copy-on-write type does before writing
// in place) and writes. The program is correct: the release decrements the
// count with release ordering and the uniqueness check loads it with acquire
// (consume) ordering. But both happen inside the Swift runtime, which is not
// instrumented, so TSan sees no happens-before and reports the write as a race
// with the read (checked with Swift 6.3.1 on Linux, 2026-12-03: reported on
// every run). NIO's ByteBuffer and NIOHTTP2's HTTP2Frame.FramePayload.Data
// are copy-on-write this way; a report of this shape between an event loop and
// a task is this blind spot, not a missing lock. (Synchronization's Mutex has
// the same blind spot on its contended path, a futex inside the runtime; the
// code here uses NIO's pthread locks, which TSan follows.)
import Foundation

final class Storage: @unchecked Sendable {
    let p = UnsafeMutablePointer<UInt8>.allocate(capacity: 64)
    init() { p.initialize(repeating: 0, count: 64) }
    deinit { p.deallocate() }
}

final class Handoff: @unchecked Sendable {
    let lock = NSLock()
    var item: Storage?
}

@inline(never) func reader(_ h: Handoff) {
    var mine: Storage?
    while mine == nil {
        h.lock.lock(); mine = h.item; h.item = nil; h.lock.unlock()
    }
    if let mine { print("read", mine.p[0]) }  // read on the reader thread
    // `mine` is released here: the only edge back to the writer is the count.
}

var s = Storage()
s.p[0] = 1  // before the handoff: ordered by the lock
let h = Handoff()
let t = Thread { reader(h) }
t.start()
h.lock.lock(); h.item = s; h.lock.unlock()
while !isKnownUniquelyReferenced(&s) {}  // the reader has released it
s.p[0] = 2  // after: ordered only by the reference count
print("wrote", s.p[0])
Thread.sleep(forTimeInterval: 0.2)
