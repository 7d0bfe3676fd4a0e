import Foundation
import FuseboxAPI
public import FuseboxCore
import FuseboxRPC
import FuseboxWire
import Logging

/// Where a client's policies came from at startup (DESIGN: fail-static).
public enum PolicySource: String, Sendable, Hashable {
    /// Fetched from fuseboxd just now.
    case server
    /// The server was unreachable: read from the on-disk cache of the last fetch.
    case cache
    /// Neither server nor cache: the built-in presets (registry `default` only).
    case presets
}

/// The policies a client runs with: registry → policy name → policy, with
/// each registry's version, and where they came from.
public struct PolicySnapshot: Sendable, Equatable {
    /// Policies by registry and name.
    public var registries: [String: [String: Policy]]
    /// Each registry's version (0 for presets).
    public var versions: [String: UInt64]
    /// Where they came from.
    public var source: PolicySource

    /// The policy `name` of `registry`, if any.
    public func policy(_ name: String, registry: String = "default") -> Policy? {
        registries[registry]?[name]
    }

    /// Fetches `registries` from the server within `timeout`; on success
    /// writes each to `cacheDirectory` atomically. If the server cannot be
    /// reached, reads the cache; without a cache, uses the presets. Logs which
    /// source was used.
    static func load(
        registries names: [String], client: RPCFailoverClient, cacheDirectory: String, timeout: Duration = .seconds(5),
        logger: Logger = Logger(label: "fusebox.client")
    ) async -> PolicySnapshot {
        do {
            let snapshot = try await fetch(names, client: client, cacheDirectory: cacheDirectory, timeout: timeout)
            logger.info("policies loaded", metadata: ["source": "server", "registries": "\(names.joined(separator: ","))"])
            return snapshot
        } catch {
            logger.warning("fuseboxd unreachable at startup; falling back", metadata: ["error": "\(error)"])
        }
        if let cached = readCache(names, cacheDirectory: cacheDirectory) {
            logger.info("policies loaded", metadata: ["source": "cache", "directory": "\(cacheDirectory)"])
            return cached
        }
        logger.warning("no cached policies; using the built-in presets", metadata: ["source": "presets"])
        return PolicySnapshot(
            registries: ["default": Dictionary(uniqueKeysWithValues: Presets.all.map { ($0.name, $0) })],
            versions: ["default": 0], source: .presets)
    }

    private static func fetch(_ names: [String], client: RPCFailoverClient, cacheDirectory: String, timeout: Duration) async throws -> PolicySnapshot {
        var result = PolicySnapshot(registries: [:], versions: [:], source: .server)
        var wire: [(String, Fusebox_V1_RegistrySnapshot)] = []
        for name in names {
            var request = Fusebox_V1_GetRegistryRequest()
            request.registry = name
            var snapshot = Fusebox_V1_RegistrySnapshot()
            do throws(RPCError) {
                snapshot = try await client.unary(
                    "fusebox.v1.RegistryService", "GetRegistry", request, as: Fusebox_V1_RegistrySnapshot.self,
                    options: RPCCallOptions(timeout: timeout))
            } catch {
                // A registry not created yet is an empty one; anything else means the server is out of reach.
                guard error.code == .notFound else { throw error }
            }
            result.registries[name] = try policies(snapshot)
            result.versions[name] = snapshot.version
            wire.append((name, snapshot))
        }
        for (name, snapshot) in wire { try? writeCache(snapshot, registry: name, cacheDirectory: cacheDirectory) }
        return result
    }

    private static func policies(_ snapshot: Fusebox_V1_RegistrySnapshot) throws -> [String: Policy] {
        var out: [String: Policy] = [:]
        for record in snapshot.policies {
            guard let wire = record.policy else { continue }
            out[wire.name] = try PolicyMapping.policy(from: wire).get()
        }
        return out
    }

    static func cacheFile(_ registry: String, _ directory: String) -> URL {
        URL(fileURLWithPath: directory).appendingPathComponent("\(registry).registry.pb")
    }

    /// Writes atomically: a temporary file, fsynced, renamed over the old one.
    static func writeCache(_ snapshot: Fusebox_V1_RegistrySnapshot, registry: String, cacheDirectory: String) throws {
        try FileManager.default.createDirectory(atPath: cacheDirectory, withIntermediateDirectories: true)
        let target = cacheFile(registry, cacheDirectory)
        let temporary = target.appendingPathExtension("tmp-\(UUID().uuidString)")
        let bytes = try snapshot.encode()
        guard FileManager.default.createFile(atPath: temporary.path, contents: Data(bytes)) else {
            throw CocoaError(.fileWriteUnknown)
        }
        let handle = try FileHandle(forWritingTo: temporary)
        try handle.synchronize()
        try handle.close()
        if rename(temporary.path, target.path) != 0 {
            try? FileManager.default.removeItem(at: temporary)
            throw CocoaError(.fileWriteUnknown)
        }
    }

    static func readCache(_ names: [String], cacheDirectory: String) -> PolicySnapshot? {
        var result = PolicySnapshot(registries: [:], versions: [:], source: .cache)
        for name in names {
            guard let data = FileManager.default.contents(atPath: cacheFile(name, cacheDirectory).path),
                let snapshot = try? Fusebox_V1_RegistrySnapshot(decoding: [UInt8](data)),
                let policies = try? policies(snapshot)
            else { return nil }
            result.registries[name] = policies
            result.versions[name] = snapshot.version
        }
        return result
    }
}
