"""A CA made here and a server certificate it signs, as PEM files: TLS for the servers the demo and the tests
start on 127.0.0.1 (a registry, a pipeline server's stand-in), verified as a cluster's private CA would be."""

import datetime
import ipaddress
import os


def make_certificates(folder: str, names: tuple[str, ...] = ("localhost",), days: int = 1) -> dict[str, str]:
    """Writes ``ca.pem``, ``server.pem`` (for ``names``, 127.0.0.1 and ``localhost``) and ``server-key.pem``
    into ``folder``; returns their paths as ``ca``, ``cert`` and ``key``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject, key, issuer, issuer_key, extensions):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=days)))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "yolo-kfp local CA")])
    ca = certificate(ca_name, ca_key, ca_name, ca_key, [(x509.BasicConstraints(ca=True, path_length=None), True)])
    dns = dict.fromkeys([*names, "localhost"])
    alternatives = x509.SubjectAlternativeName([*(x509.DNSName(n) for n in dns),
                                                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    server = certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]), server_key, ca_name,
                         ca_key, [(alternatives, False), (x509.BasicConstraints(ca=False, path_length=None), True)])
    os.makedirs(folder, exist_ok=True)
    paths = {"ca": os.path.join(folder, "ca.pem"), "cert": os.path.join(folder, "server.pem"),
             "key": os.path.join(folder, "server-key.pem")}
    for path, data in ((paths["ca"], ca.public_bytes(serialization.Encoding.PEM)),
                       (paths["cert"], server.public_bytes(serialization.Encoding.PEM)),
                       (paths["key"], server_key.private_bytes(serialization.Encoding.PEM,
                                                               serialization.PrivateFormat.PKCS8,
                                                               serialization.NoEncryption()))):
        with open(path, "wb") as f:
            f.write(data)
    return paths
