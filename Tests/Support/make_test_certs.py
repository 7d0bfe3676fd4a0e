#!/usr/bin/env python3
"""Certificates the TLS tests need besides scripts/gen-certs' development PKI:
expired and not-yet-valid ones, ones from a CA nobody trusts, and a second
valid server certificate for reload tests. ECDSA P-256, like gen-certs.

Usage: make_test_certs.py DIR   (DIR already holds gen-certs' ca.pem/ca.key)
"""
import datetime
import ipaddress
import pathlib
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

out = pathlib.Path(sys.argv[1])
now = datetime.datetime.now(datetime.timezone.utc)
day = datetime.timedelta(days=1)


def write_key(name, key):
    (out / f"{name}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def load_ca():
    cert = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((out / "ca.key").read_bytes(), password=None)
    return cert, key


def make_ca(name, cn):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - day).not_valid_after(now + 3650 * day)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (out / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_key(name, key)
    return cert, key


def issue(name, cn, ca, server, not_before, not_after, sans=None):
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage(
                   [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if sans is None:
        sans = ([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))] if server
                else [x509.UniformResourceIdentifier(f"spiffe://fusebox.local/test/{cn}")])
    builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    (out / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_key(name, key)


dev = load_ca()
other = make_ca("other-ca", "Untrusted Test CA")
valid = (now - day, now + 30 * day)
issue("expired-server", "expired-server", dev, True, now - 30 * day, now - day)
issue("future-server", "future-server", dev, True, now + 10 * day, now + 30 * day)
issue("expired-client", "expired-client", dev, False, now - 30 * day, now - day)
issue("future-client", "future-client", dev, False, now + 10 * day, now + 30 * day)
issue("other-server", "other-server", other, True, *valid)
issue("other-client", "other-client", other, False, *valid)
issue("rotated-server", "fuseboxd-rotated", dev, True, *valid)
issue("elsewhere-server", "elsewhere", dev, True, *valid, sans=[x509.DNSName("elsewhere.example")])
print(f"make_test_certs: wrote test certificates to {out}")
