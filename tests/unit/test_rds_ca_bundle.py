"""The pinned Amazon RDS root certificates for eu-central-2 are the expected ones.

Source of the expected values: the three regional root CAs as they appear in
global-bundle.pem (https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem,
described at https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.SSL.html).
The certificates were compared byte for byte across three independently published copies of
that bundle; the fingerprints below have not yet been compared with a value AWS documents.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

BUNDLE = (
    Path(__file__).resolve().parents[2] / "govdr" / "lambda_support" / "rds-ca-eu-central-2.pem"
)

EXPECTED = {
    "Amazon RDS eu-central-2 Root CA RSA2048 G1": (
        "97477e83609fc31e6312009830b36faeec32ad317f91531a21ace6448b6416c6",
        datetime(2062, 6, 6, 22, 17, 5, tzinfo=UTC),
    ),
    "Amazon RDS eu-central-2 Root CA RSA4096 G1": (
        "969ed937f0f63f9fa703bea5089d2b3ea0164f32d843d26b2edd74f07b44df28",
        datetime(2122, 6, 6, 22, 25, 23, tzinfo=UTC),
    ),
    "Amazon RDS eu-central-2 Root CA ECC384 G1": (
        "896ef0d9c66ac5ac46e12bcd8f44dc2065b9006983b8b3c3203a4ab951f63368",
        datetime(2122, 6, 6, 22, 29, 17, tzinfo=UTC),
    ),
}


def _common_name(name: x509.Name) -> str:
    return str(name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


def test_pinned_bundle_holds_exactly_the_three_regional_roots() -> None:
    certs = x509.load_pem_x509_certificates(BUNDLE.read_bytes())
    found = {_common_name(c.subject): c for c in certs}
    assert sorted(found) == sorted(EXPECTED)
    for name, cert in found.items():
        fingerprint, not_after = EXPECTED[name]
        assert cert.fingerprint(hashes.SHA256()).hex() == fingerprint
        assert cert.subject == cert.issuer  # self-signed root
        cert.verify_directly_issued_by(cert)
        assert cert.not_valid_after_utc == not_after
        assert cert.not_valid_before_utc < datetime.now(UTC) < cert.not_valid_after_utc


def test_a_changed_certificate_fails_the_fingerprint_check() -> None:
    cert = x509.load_pem_x509_certificates(BUNDLE.read_bytes())[0]
    tampered = bytearray(cert.public_bytes(serialization.Encoding.DER))
    tampered[-1] ^= 1
    changed = x509.load_der_x509_certificate(bytes(tampered))
    assert changed.fingerprint(hashes.SHA256()).hex() not in {v[0] for v in EXPECTED.values()}
