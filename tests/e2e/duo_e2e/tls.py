"""Test certificates, made at test time with `cryptography` (no private key is committed): a test
CA, server certificates it issues for a DNS name, and self-signed ones. The e2e's TLS stacks keep
each shipped cluster's `transport_socket` (SNI, SAN matcher) and swap only the trusted CA bundle
for this CA's file, so the shipped verification settings are what is tested."""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@dataclass
class ServerCert:
    """A certificate chain and key on disk, loadable into an `ssl.SSLContext` for a fake."""

    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx


class TestPKI:
    """A throwaway CA in `directory` (created on first use, valid for a day)."""

    def __init__(self, directory: Path, name: str = "duo e2e test CA"):
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        now = datetime.datetime.now(datetime.timezone.utc)
        self._not_before, self._not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1)
        self._ca_key = _key()
        self.ca_cert = (x509.CertificateBuilder()
                        .subject_name(_name(name)).issuer_name(_name(name))
                        .public_key(self._ca_key.public_key()).serial_number(x509.random_serial_number())
                        .not_valid_before(self._not_before).not_valid_after(self._not_after)
                        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                     content_commitment=False, key_encipherment=False,
                                                     data_encipherment=False, key_agreement=False,
                                                     encipher_only=False, decipher_only=False), critical=True)
                        .sign(self._ca_key, hashes.SHA256()))
        self.ca_path = directory / "ca.pem"
        self.ca_path.write_bytes(self.ca_cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, dns_name: str, label: str | None = None) -> ServerCert:
        """A server certificate for `dns_name` (SAN and CN) signed by this CA."""
        return self._leaf(dns_name, label or dns_name, issuer_key=self._ca_key, issuer=self.ca_cert.subject)

    def self_signed(self, dns_name: str, label: str | None = None) -> ServerCert:
        """A certificate naming `dns_name` correctly but signed by nobody the config trusts."""
        return self._leaf(dns_name, (label or dns_name) + ".self-signed", issuer_key=None, issuer=None)

    def _leaf(self, dns_name: str, label: str, issuer_key: ec.EllipticCurvePrivateKey | None,
              issuer: x509.Name | None) -> ServerCert:
        key = _key()
        builder = (x509.CertificateBuilder()
                   .subject_name(_name(dns_name)).issuer_name(issuer or _name(dns_name))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(self._not_before).not_valid_after(self._not_after)
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
        cert = builder.sign(issuer_key or key, hashes.SHA256())
        cert_path, key_path = self.dir / f"{label}.pem", self.dir / f"{label}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_pem_key(key))
        key_path.chmod(0o600)
        return ServerCert(cert_path, key_path)

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting only this CA (for scenarios that speak TLS to Envoy)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        return ctx
