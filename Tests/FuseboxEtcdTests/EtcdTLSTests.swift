import FuseboxEtcd
import FuseboxTLS
import FuseboxTesting
import XCTest

/// The client over TLS (FuseboxTLS on OpenSSL) to etcd serving https with
/// the repository's test server certificate.
final class EtcdTLSTests: XCTestCase {
    func testKeysAndAWatchOverTLS() async throws {
        let tls = EtcdTestCluster.TLSFiles(
            certificate: try TestCertificates.path("server.pem"), key: try TestCertificates.path("server.key"),
            ca: try TestCertificates.path("ca.pem"))
        try await withCluster(size: 1, tls: tls) { _, client in
            let watch = client.watch(b("tls/"), rangeEnd: EtcdKeys.prefixEnd(b("tls/")))
            let events = Collected<EtcdWatchEvent>()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await watch.run() }
                group.addTask { for await event in watch { events.append(event) } }
                await waitUntil("the watch to be created", timeout: 5) { watch.resumeRevision > 0 }
                let put = try await client.put(b("tls/key"), b("secret"))
                let read = try await client.get(b("tls/key"))
                XCTAssertEqual(read?.valueString, "secret")
                await waitUntil("the watch event", timeout: 5) { events.all.contains { $0.revision == put.revision } }
                group.cancelAll()
            }
        }
    }

    /// etcd with `--client-cert-auth`: a client presenting a certificate of
    /// the CA is served; one presenting none is refused at the handshake.
    func testMutualTLSWithClientCertificates() async throws {
        let tls = EtcdTestCluster.TLSFiles(
            certificate: try TestCertificates.path("server.pem"), key: try TestCertificates.path("server.key"),
            ca: try TestCertificates.path("ca.pem"),
            clientIdentity: (try TestCertificates.path("replica.pem"), try TestCertificates.path("replica.key")))
        try await withCluster(size: 1, tls: tls) { cluster, client in
            let put = try await client.put(b("mtls/key"), b("with a certificate"))
            XCTAssertGreaterThan(put.revision, 1)
            let read = try await client.get(b("mtls/key"))
            XCTAssertEqual(read?.valueString, "with a certificate")

            var configuration = try EtcdConfiguration(endpoints: cluster.endpoints, tls: .client(trustRootsPath: try TestCertificates.path("ca.pem")))
            configuration.retryTimeout = .seconds(1)
            let anonymous = try EtcdClient(configuration: configuration)
            do {
                _ = try await anonymous.get(b("mtls/key"))
                XCTFail("a client without a certificate was served")
            } catch let error as EtcdError {
                // Refused at the handshake, attempt after attempt: UNAVAILABLE, or,
                // when the retry budget runs out during an attempt on a loaded
                // machine (fresh-clone run fresh24), DEADLINE_EXCEEDED.
                XCTAssertTrue([.unavailable, .deadlineExceeded].contains(error.code), "\(error)")
            }
            await anonymous.close()
        }
    }

    func testAClientThatDoesNotTrustTheCertificateFailsWithUnavailable() async throws {
        let tls = EtcdTestCluster.TLSFiles(
            certificate: try TestCertificates.path("server.pem"), key: try TestCertificates.path("server.key"),
            ca: try TestCertificates.path("ca.pem"))
        try await withCluster(size: 1, tls: tls) { cluster, _ in
            var configuration = try EtcdConfiguration(endpoints: cluster.endpoints, tls: .client(trustRootsPath: try TestCertificates.path("other-ca.pem")))
            configuration.retryTimeout = .seconds(1)
            let stranger = try EtcdClient(configuration: configuration)
            do {
                _ = try await stranger.get(b("anything"))
                XCTFail("a client with the wrong CA was served")
            } catch let error as EtcdError {
                XCTAssertEqual(error.code, .unavailable, "\(error)")
                XCTAssertTrue(error.message.contains("TLS"), "\(error)")
            }
            await stranger.close()
        }
    }
}
