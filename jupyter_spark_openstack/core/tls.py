"""A per-cluster certificate authority and the head's server certificate (``cryptography``).

Every start of a cluster whose head runs on her own machine (placement ``cluster``) makes a new
CA and one server certificate signed by it; nothing is reused between starts, so "rotation" is
a cluster restart. The CA's private key is never written anywhere: it signs the one server
certificate in memory and is dropped. What is kept:

* the CA certificate (public): the Connect kernel and the hub's probes trust it, and only it,
  for this cluster (``grpc.ssl_channel_credentials(root_certificates=...)``);
* the server certificate and key: they go to the head in its user-data, for the TLS terminator
  (HAProxy) in front of the Connect server.

The certificate names the head by a DNS name (``server_name``), not by its address, which the
cloud only gives once the server exists: clients connect to the address and verify the name
(gRPC's ``grpc.ssl_target_name_override``), verification stays on.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from dataclasses import dataclass

from .errors import ValidationError

#: certificates live this long; a cluster runs far shorter (a restart makes new ones)
DEFAULT_VALID_DAYS = 30
_NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*")


@dataclass(frozen=True)
class ClusterTLS:
    """One cluster's TLS material, PEM text. ``server_key_pem`` is secret."""

    server_name: str
    ca_pem: str
    server_cert_pem: str
    server_key_pem: str

    def __repr__(self) -> str:  # keep the key out of logs
        return f"ClusterTLS(server_name={self.server_name!r})"

    @property
    def server_bundle_pem(self) -> str:
        """Certificate then key, the one file HAProxy's ``crt`` reads."""
        return self.server_cert_pem + self.server_key_pem


def parse_server_name(field: str, value: object) -> str:
    """A DNS name for the certificate: lowercase letters, digits, '-' and dots, not an IP."""
    text = value.strip().lower() if isinstance(value, str) else ""
    try:
        ipaddress.ip_address(text)
        is_ip = True
    except ValueError:
        is_ip = False
    if is_ip or len(text) > 253 or not _NAME_RE.fullmatch(text):
        raise ValidationError(field, value, "a DNS name: lowercase letters, digits and '-', "
                                            "labels separated by dots, at most 253 characters")
    return text


def make_cluster_tls(server_name: str, *, valid_days: int = DEFAULT_VALID_DAYS) -> ClusterTLS:
    """A new CA (EC P-256, ``CA:TRUE, pathlen 0``, key usage cert/CRL signing) and a server
    certificate for ``server_name`` (SAN DNS, extended key usage serverAuth) signed by it."""
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    name = parse_server_name("server_name", server_name)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=valid_days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "jupyter-spark-openstack"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"cluster CA for {name}")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=True, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return ClusterTLS(
        server_name=name,
        ca_pem=ca_cert.public_bytes(pem).decode(),
        server_cert_pem=cert.public_bytes(pem).decode(),
        server_key_pem=key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()).decode())


_PEM_CERT_RE = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----")


def read_ca_file(path: str) -> bytes:
    """The PEM bytes of a CA file; :class:`ValidationError` when it holds no PEM certificate.
    Only the armor and base64 body are checked here, not the DER inside: this is on every
    Connect kernel's start, where importing ``cryptography`` costs more than the rest of the
    check, and the TLS handshake verifies the certificate anyway (a CA that is not the
    head's is :class:`...spark.connect.ConnectTLSError` there)."""
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except OSError as e:
        raise ValidationError("connect CA file", path, f"a readable PEM file ({e.strerror or e})") from None
    if not _PEM_CERT_RE.search(data):
        raise ValidationError("connect CA file", path, "a PEM file of X.509 certificates")
    return data
