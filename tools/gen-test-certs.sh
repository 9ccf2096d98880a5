#!/bin/sh
# Generates the TLS fixtures of the corpus (corpus/files/tls/) with the openssl CLI
# (OpenSSL 3: `openssl pkey -traditional`); run it from the workspace root.
#
#   tools/gen-test-certs.sh [OUTDIR]      (default: corpus/files/tls)
#
# File names and validity dates are fixed, so the corpus can pin `--now
# 2026-11-26T00:00:00Z` and get the same findings on every run; the keys themselves are
# new on every run (the snapshots never show key bytes). Run it once and commit the
# output; rerun it only to replace the fixtures (and the copies under
# corpus/valid/files/, see the end of this script).
#
#   ca.crt, ca.key                 root CA (EC P-256), 2026-01-01 .. 2040-01-01
#   ca-pkcs8.key                   ca.key, encrypted PKCS#8 (AES-256-CBC), password "secret"
#   ca-legacy.key                  ca.key, traditional PEM encryption (DEK-Info AES-256-CBC), "secret"
#   ca-pbes1.key                   ca.key, encrypted PKCS#8 with PKCS#12 PBE-SHA1-3DES, "secret"
#   intermediate.crt, .key         intermediate CA (EC P-256) signed by the root
#   www.crt, www.key               leaf www.example.com (RSA 2048) signed by the
#                                  intermediate, 2026-01-01 .. 2036-01-01
#   www-chain.crt                  www.crt followed by intermediate.crt (the right order)
#   www-chain-reversed.crt         intermediate.crt followed by www.crt (leaf not first)
#   www-chain-unordered.crt        www.crt, ca.crt, intermediate.crt (an issuer out of place)
#   other.key                      an RSA 2048 key that matches no certificate
#   expiring.crt, expiring.key     leaf valid 2026-01-01 .. 2026-12-10 (14 days after the pinned now)
#   expired.crt, expired.key       leaf valid 2024-01-01 .. 2025-01-01
#   future.crt, future.key         leaf valid 2027-06-01 .. 2030-01-01 (not yet valid)
#   garbage.crt, garbage.key       PEM armour around bytes that are not DER
#   empty.pem                      text without any PEM section
set -eu

out=${1:-corpus/files/tls}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

cat >"$work/ca.cnf" <<'EOF'
[ ca ]
default_ca = testca
[ testca ]
dir = .
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
[ anything ]
commonName = supplied
organizationName = optional
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ v3_ca ]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ v3_leaf ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = DNS:www.example.com
EOF

cd "$work"
mkdir newcerts
: >index.txt
echo 1000 >serial

ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
rsa_key() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; }

# sign NAME SUBJECT_CN ISSUER(ca|intermediate|self) EXTENSIONS START END
sign() {
	openssl req -new -config ca.cnf -key "$1.key" -subj "/O=relaydc test/CN=$2" -out "$1.csr"
	if [ "$3" = self ]; then
		openssl ca -batch -config ca.cnf -selfsign -keyfile "$1.key" \
		    -extensions "$4" -startdate "$5" -enddate "$6" -notext \
		    -in "$1.csr" -out "$1.crt" 2>/dev/null
	else
		openssl ca -batch -config ca.cnf -cert "$3.crt" -keyfile "$3.key" \
		    -extensions "$4" -startdate "$5" -enddate "$6" -notext \
		    -in "$1.csr" -out "$1.crt" 2>/dev/null
	fi
}

ec_key ca.key
sign ca "relaydc test root CA" self v3_ca 20260101000000Z 20400101000000Z
ec_key intermediate.key
sign intermediate "relaydc test intermediate CA" ca v3_ca 20260101000000Z 20380101000000Z
rsa_key www.key
sign www www.example.com intermediate v3_leaf 20260101000000Z 20360101000000Z
rsa_key expiring.key
sign expiring expiring.example.com intermediate v3_leaf 20260101000000Z 20261210000000Z
rsa_key expired.key
sign expired expired.example.com intermediate v3_leaf 20240101000000Z 20250101000000Z
rsa_key future.key
sign future future.example.com intermediate v3_leaf 20270601000000Z 20300101000000Z
rsa_key other.key

openssl pkcs8 -topk8 -v2 aes-256-cbc -passout pass:secret -in ca.key -out ca-pkcs8.key
openssl pkey -traditional -aes256 -passout pass:secret -in ca.key -out ca-legacy.key
openssl pkcs8 -topk8 -v1 PBE-SHA1-3DES -passout pass:secret -in ca.key -out ca-pbes1.key

cat www.crt intermediate.crt >www-chain.crt
cat intermediate.crt www.crt >www-chain-reversed.crt
cat www.crt ca.crt intermediate.crt >www-chain-unordered.crt
printf -- '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGUsIGp1c3QgdGV4dAo=\n-----END CERTIFICATE-----\n' >garbage.crt
printf -- '-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5LCBqdXN0IHRleHQK\n-----END PRIVATE KEY-----\n' >garbage.key
printf 'dummy certificate for the corpus\n' >empty.pem

cd - >/dev/null
for f in ca.crt ca.key ca-pkcs8.key ca-legacy.key ca-pbes1.key intermediate.crt intermediate.key \
    www.crt www.key www-chain.crt www-chain-reversed.crt www-chain-unordered.crt other.key \
    expiring.crt expiring.key expired.crt expired.key future.crt future.key \
    garbage.crt garbage.key empty.pem; do
	cp "$work/$f" "$out/$f"
done

# The corpus' older fixtures stand for a deploy host's /etc/ssl: give them real
# material (the www leaf and key, the root CA) so the files parse and match.
if [ "$out" = corpus/files/tls ]; then
	root=corpus/valid/files/root/etc/ssl
	for name in 127.0.0.1 127.0.0.1:8443 www.example.com; do
		cp "$out/www-chain.crt" "$root/$name.crt"
		cp "$out/www.key" "$root/private/$name.key"
	done
	cp "$out/ca.crt" "$root/cert.pem"
	cp "$out/ca.crt" corpus/valid/files/ca.pem
	cp "$out/ca-pkcs8.key" corpus/valid/files/ca.key
	for dir in corpus/valid/files corpus/invalid/files; do
		cp "$out/www-chain.crt" "$dir/www.crt"
		cp "$out/www.key" "$dir/www.key"
	done
fi
echo "wrote $out"
