import Glibc

/// A value behind a pthread mutex of glibc's adaptive kind: a thread that
/// finds it held spins for a short while before sleeping in the kernel.
///
/// For a lock held for microseconds and taken from every core (the breaker
/// coordinator's: every report, permit and transition), most waits then end
/// while spinning, without the futex sleep and wake-up (two syscalls and two
/// context switches) a plain mutex costs its waiter. Same use as
/// `NIOLockedValueBox`; ThreadSanitizer follows it as a pthread mutex.
final class AdaptiveLockedValueBox<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_ADAPTIVE_NP))
        pthread_mutex_init(mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the value, holding the lock.
    @inline(__always)
    func withLockedValue<T, E: Error>(_ body: (inout Value) throws(E) -> T) throws(E) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
