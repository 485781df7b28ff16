"""A local certificate authority and the server certificate Nginx presents.

The CA is created once per stack (``<state>/tls/ca.crt``); clients trust it with
``--cacert``/``verify=``. The server certificate covers ``server_name``, ``localhost`` and the
bind address, and is re-issued when those change or it nears expiry.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from infra.local.secrets import write_secret_file


def _key_pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _names(server_name: str, host: str) -> list[x509.GeneralName]:
    dns = sorted({server_name, "localhost"})
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    return names


def ensure_certificates(tls_dir: Path, server_name: str, host: str) -> bool:
    """Create the CA and server certificate when missing or stale; True when anything changed."""
    tls_dir.mkdir(parents=True, exist_ok=True)
    ca_key_path, ca_crt_path = tls_dir / "ca.key", tls_dir / "ca.crt"
    key_path, crt_path = tls_dir / "server.key", tls_dir / "server.crt"
    now = dt.datetime.now(dt.timezone.utc)
    changed = False

    if ca_key_path.exists() and ca_crt_path.exists():
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
        ca_crt = x509.load_pem_x509_certificate(ca_crt_path.read_bytes())
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "recon local CA"),
                             x509.NameAttribute(NameOID.ORGANIZATION_NAME, "recon-stack")])
        ca_crt = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                  .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
                  .not_valid_before(now - dt.timedelta(minutes=5))
                  .not_valid_after(now + dt.timedelta(days=3650))
                  .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                  .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                               content_commitment=False, key_encipherment=False,
                                               data_encipherment=False, key_agreement=False,
                                               encipher_only=False, decipher_only=False), critical=True)
                  .sign(ca_key, hashes.SHA256()))
        write_secret_file(ca_key_path, _key_pem(ca_key))
        ca_crt_path.write_bytes(ca_crt.public_bytes(serialization.Encoding.PEM))
        changed = True

    wanted = _names(server_name, host)
    if crt_path.exists() and key_path.exists() and not changed:
        crt = x509.load_pem_x509_certificate(crt_path.read_bytes())
        san = crt.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        fresh = crt.not_valid_after_utc - now > dt.timedelta(days=30)
        if fresh and set(san) == set(wanted):
            return False
    key = ec.generate_private_key(ec.SECP256R1())
    crt = (x509.CertificateBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_name)]))
           .issuer_name(ca_crt.subject).public_key(key.public_key())
           .serial_number(x509.random_serial_number())
           .not_valid_before(now - dt.timedelta(minutes=5))
           .not_valid_after(now + dt.timedelta(days=397))
           .add_extension(x509.SubjectAlternativeName(wanted), critical=False)
           .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
           .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
           .sign(ca_key, hashes.SHA256()))
    write_secret_file(key_path, _key_pem(key))
    crt_path.write_bytes(crt.public_bytes(serialization.Encoding.PEM)
                         + ca_crt.public_bytes(serialization.Encoding.PEM))
    return True
