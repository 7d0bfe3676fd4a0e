import COpenSSL
import Foundation
import FuseboxServer
import NIOConcurrencyHelpers

/// Who may sign in, the sessions that are signed in, and the slow-down of
/// failed sign-ins (docs/DASHBOARD.md).
final class DashboardAuth: Sendable {
    /// A signed-in browser.
    struct Session: Sendable {
        var id: String
        var name: String
        var role: Role
        var csrf: String
        var expiresAtMs: Int64
    }

    /// What a sign-in attempt got.
    enum LoginResult: Sendable {
        case signedIn(Session)
        /// The token matched no entry (after `waited`).
        case refused
        /// The address must wait this many seconds before trying again.
        case tooSoon(seconds: Int)
    }

    private struct Failures {
        var count: Int
        var lastAtMs: Int64
        var busyUntilMs: Int64
    }

    private struct State {
        var sessions: [String: Session] = [:]
        var failures: [String: Failures] = [:]
        /// Addresses with a sign-in being checked now: a second one at once is refused.
        var checking: Set<String> = []
    }

    static let maxSessions = 10_000
    /// Sessions one token may hold; signing in again beyond it ends its oldest.
    static let maxSessionsPerName = 100
    static let maxTrackedAddresses = 10_000
    static let failureMemoryMs: Int64 = 15 * 60_000
    static let maxDelaySeconds = 30

    private let tokens: [DashboardSettings.Token]
    private let sessionMs: Int64
    private let state = NIOLockedValueBox(State())
    private let now: @Sendable () -> Int64

    init(settings: DashboardSettings, now: @escaping @Sendable () -> Int64) {
        tokens = settings.tokens
        sessionMs = Int64(settings.sessionMinutes) * 60_000
        self.now = now
    }

    /// Checks `token` for a sign-in from `address`. After a failure from an
    /// address, each further attempt within 15 minutes waits 1, 2, 4 … (at most
    /// 30) seconds before it is answered; attempts while one waits are refused.
    func login(token: String, from remote: String, replacing previous: String? = nil) async -> LoginResult {
        let address = Self.throttleKey(remote)
        let t = now()
        // nil: refused now, with the seconds to wait.
        let delay: Result<Int, LoginFailure> = state.withLockedValue { s in
            if s.checking.contains(address) { return .failure(LoginFailure(seconds: 1)) }
            var seconds = 0
            if var f = s.failures[address], t - f.lastAtMs < Self.failureMemoryMs {
                if t < f.busyUntilMs { return .failure(LoginFailure(seconds: max(1, Int((f.busyUntilMs - t + 999) / 1_000)))) }
                seconds = min(Self.maxDelaySeconds, 1 << min(f.count - 1, 5))
                f.busyUntilMs = t + Int64(seconds) * 1_000
                s.failures[address] = f
            } else {
                s.failures[address] = nil
            }
            s.checking.insert(address)
            return .success(seconds)
        }
        let seconds: Int
        switch delay {
        case .failure(let wait): return .tooSoon(seconds: wait.seconds)
        case .success(let s): seconds = s
        }
        defer { _ = state.withLockedValue { $0.checking.remove(address) } }
        if seconds > 0 { try? await Task.sleep(for: .seconds(seconds)) }
        let digest = Self.sha256(Array(token.utf8))
        // Every entry is compared, in constant time, whatever matches.
        var match: DashboardSettings.Token?
        for entry in tokens where Self.constantTimeEqual(entry.sha256, digest) && match == nil { match = entry }
        let at = now()
        guard let match, !token.isEmpty else {
            state.withLockedValue { s in
                if s.failures[address] == nil, s.failures.count >= Self.maxTrackedAddresses {
                    // Forget what has expired; if that is not enough, the address
                    // that failed longest ago (never everyone at once).
                    s.failures = s.failures.filter { at - $0.value.lastAtMs < Self.failureMemoryMs }
                    if s.failures.count >= Self.maxTrackedAddresses, let oldest = s.failures.min(by: { $0.value.lastAtMs < $1.value.lastAtMs }) {
                        s.failures[oldest.key] = nil
                    }
                }
                var f = s.failures[address] ?? Failures(count: 0, lastAtMs: at, busyUntilMs: 0)
                f.count += 1
                f.lastAtMs = at
                s.failures[address] = f
            }
            return .refused
        }
        let session = Session(id: Self.randomHex(32), name: match.name, role: match.role, csrf: Self.randomHex(32), expiresAtMs: at + sessionMs)
        state.withLockedValue { s in
            s.failures[address] = nil
            // Signing in again from a browser ends the session it had.
            if let previous { s.sessions[previous] = nil }
            let own = s.sessions.values.filter { $0.name == session.name }
            if own.count >= Self.maxSessionsPerName, let oldest = own.min(by: { $0.expiresAtMs < $1.expiresAtMs }) {
                s.sessions[oldest.id] = nil
            }
            if s.sessions.count >= Self.maxSessions {
                s.sessions = s.sessions.filter { $0.value.expiresAtMs > at }
                if s.sessions.count >= Self.maxSessions, let oldest = s.sessions.min(by: { $0.value.expiresAtMs < $1.value.expiresAtMs }) {
                    s.sessions[oldest.key] = nil
                }
            }
            s.sessions[session.id] = session
        }
        return .signedIn(session)
    }

    private struct LoginFailure: Error {
        var seconds: Int
    }

    /// What failed sign-ins are counted by: the address, or for IPv6 its /64
    /// (one host usually holds a whole /64).
    static func throttleKey(_ address: String) -> String {
        guard address.contains(":") else { return address }
        var groups = address.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        if let gap = groups.firstIndex(of: ""), address.contains("::") {
            let present = groups.filter { !$0.isEmpty }.count
            groups.replaceSubrange(gap...gap, with: Array(repeating: "0", count: max(0, 8 - present)))
            groups.removeAll { $0.isEmpty }
        }
        return groups.prefix(4).joined(separator: ":") + "::/64"
    }

    /// The live session `id` names, if any.
    func session(_ id: String?) -> Session? {
        guard let id else { return nil }
        let t = now()
        return state.withLockedValue { s in
            guard let session = s.sessions[id] else { return nil }
            guard session.expiresAtMs > t else {
                s.sessions[id] = nil
                return nil
            }
            return session
        }
    }

    /// Ends session `id`.
    func logout(_ id: String) {
        _ = state.withLockedValue { $0.sessions.removeValue(forKey: id) }
    }

    /// Sessions held now.
    var sessionCount: Int { state.withLockedValue { $0.sessions.count } }

    var sessionSeconds: Int64 { sessionMs / 1_000 }

    // MARK: Cryptography

    static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        _ = bytes.withUnsafeBytes { input in
            digest.withUnsafeMutableBytes { out in
                EVP_Digest(input.baseAddress, input.count, out.baseAddress?.assumingMemoryBound(to: UInt8.self), &length, EVP_sha256(), nil)
            }
        }
        return digest
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool { constantTimeEqual(Array(a.utf8), Array(b.utf8)) }

    /// `count` random bytes from OpenSSL's generator, as lowercase hex.
    static func randomHex(_ count: Int) -> String {
        var bytes = [UInt8](repeating: 0, count: count)
        let ok = bytes.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32($0.count)) } == 1
        if !ok {
            // OpenSSL's generator failed (it practically cannot): the system's.
            for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255) }
        }
        return hex(bytes)
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
