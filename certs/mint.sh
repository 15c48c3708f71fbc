#!/usr/bin/env bash
# Mints a CA and certificates for Cairn with the system `openssl` command:
# members, gateways, per-tenant clients, and a CRL. See certs/README.md.
#
#   mint.sh [-d DIR] [--days N] ca [COMMON_NAME]
#   mint.sh [-d DIR] [--days N | --expired] member  NAME [--no-loopback] [--san SAN]...
#   mint.sh [-d DIR] [--days N | --expired] gateway NAME [--no-loopback] [--san SAN]...
#   mint.sh [-d DIR] [--days N | --expired] client  NAME [--uri URI]...
#   mint.sh [-d DIR] revoke NAME
#   mint.sh [-d DIR] crl
#
# SAN is `IP:1.2.3.4` or `DNS:host.example` (a bare address or name is
# accepted too). Members and gateways get DNS:localhost and IP:127.0.0.1
# besides the --san ones, unless --no-loopback. A client's CN is NAME (the
# etcd user name with --client-cert-auth, or the tenant's name at a gateway).
# --expired mints a leaf whose validity ended yesterday (for refusal tests).
set -euo pipefail

dir="${CAIRN_CERTS_DIR:-$(dirname "$0")/generated}"
days=365
expired=""

die() {
    echo "mint.sh: $*" >&2
    exit 2
}

usage() {
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# Names become file names and subject CNs: keep them plain.
check_name() {
    [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$ ]] ||
        die "name '$1' must be 1-64 of A-Z a-z 0-9 . _ @ - (starting with a letter or digit)"
}

# A SAN entry in openssl's form: IP:x, DNS:x, URI:x.
san_entry() {
    case "$1" in
    IP:* | DNS:* | URI:*) echo "$1" ;;
    *:*:* | [0-9]*.[0-9]*.[0-9]*.[0-9]*) echo "IP:$1" ;;
    *) echo "DNS:$1" ;;
    esac
}

need_ca() {
    [[ -f "$dir/ca.pem" && -f "$dir/ca.key" ]] || die "no CA in $dir: run '$0 -d $dir ca' first"
}

mint_ca() {
    local common_name="${1:-Cairn CA}"
    [[ -e "$dir/ca.key" ]] && die "$dir/ca.key exists; refusing to replace a CA"
    cat >"$dir/ca.cnf" <<EOF
[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
CN = $common_name
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    (umask 077 && openssl req -x509 -config "$dir/ca.cnf" -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -nodes -keyout "$dir/ca.key" -out "$dir/ca.pem" -days "$days" 2>/dev/null)
    chmod 644 "$dir/ca.pem"
    : >"$dir/ca-index.txt"
    echo 01 >"$dir/ca-crlnumber"
    cat >"$dir/ca-db.cnf" <<EOF
[ca]
default_ca = cairn_ca
[cairn_ca]
database = $dir/ca-index.txt
crlnumber = $dir/ca-crlnumber
default_md = sha256
default_crl_days = $days
EOF
    write_crl
    echo "$dir/ca.pem"
}

# mint_leaf NAME USAGE SAN-LIST: a P-256 key and a certificate signed by the CA.
mint_leaf() {
    local name="$1" usage="$2" sans="$3"
    need_ca
    check_name "$name"
    printf '[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = %s\n' "$name" >"$dir/$name.cnf"
    {
        echo "basicConstraints = critical, CA:FALSE"
        echo "keyUsage = critical, digitalSignature, keyEncipherment"
        echo "extendedKeyUsage = $usage"
        echo "authorityKeyIdentifier = keyid"
        echo "subjectKeyIdentifier = hash"
        [[ -n "$sans" ]] && echo "subjectAltName = $sans"
    } >"$dir/$name.ext"
    (umask 077 && openssl req -new -config "$dir/$name.cnf" -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -nodes -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null)
    if [[ -n "$expired" ]]; then
        sign_expired "$name"
    else
        openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
            -days "$days" -out "$dir/$name.pem" -extfile "$dir/$name.ext" 2>/dev/null
    fi
    rm -f "$dir/$name.csr"
    echo "$dir/$name.pem"
}

# sign_expired NAME: signs NAME.csr valid from two days ago until yesterday.
# `openssl x509 -days` cannot go negative and OpenSSL 3.0 has no
# -not_before/-not_after, so this signs with `openssl ca`, which takes dates.
sign_expired() {
    local name="$1"
    mkdir -p "$dir/issued"
    # A random serial (as `openssl x509 -CAcreateserial` starts with).
    openssl rand -hex 16 >"$dir/ca-sign-serial"
    cat >"$dir/ca-sign.cnf" <<EOF
[ca]
default_ca = cairn_sign
[cairn_sign]
database = $dir/ca-index.txt
new_certs_dir = $dir/issued
serial = $dir/ca-sign-serial
default_md = sha256
unique_subject = no
policy = cairn_policy
[cairn_policy]
commonName = supplied
EOF
    openssl ca -batch -notext -config "$dir/ca-sign.cnf" -keyfile "$dir/ca.key" -cert "$dir/ca.pem" \
        -in "$dir/$name.csr" -out "$dir/$name.pem" -extfile "$dir/$name.ext" \
        -startdate "$(date -u -d '2 days ago' +%y%m%d%H%M%SZ)" -enddate "$(date -u -d '1 day ago' +%y%m%d%H%M%SZ)" \
        2>/dev/null || die "openssl ca could not sign an expired certificate for $name"
}

write_crl() {
    openssl ca -config "$dir/ca-db.cnf" -keyfile "$dir/ca.key" -cert "$dir/ca.pem" -gencrl \
        -out "$dir/ca.crl" 2>/dev/null
}

# Server-side leaves (members, gateways): loopback SANs plus --san ones.
server_leaf() {
    local kind="$1" name="$2"
    shift 2
    local sans="DNS:localhost,IP:127.0.0.1"
    while [[ $# -gt 0 ]]; do
        if [[ "$1" == "--no-loopback" ]]; then
            sans="${sans#DNS:localhost,IP:127.0.0.1}"
            sans="${sans#,}"
            shift
            continue
        fi
        [[ "$1" == "--san" && $# -ge 2 ]] || die "$kind: unexpected argument '$1' (use --san SAN or --no-loopback)"
        sans="${sans:+$sans,}$(san_entry "$2")"
        shift 2
    done
    # Members dial each other and gateways dial members: both roles.
    mint_leaf "$name" "serverAuth, clientAuth" "$sans"
}

client_leaf() {
    local name="$1"
    shift
    local sans=""
    while [[ $# -gt 0 ]]; do
        [[ "$1" == "--uri" && $# -ge 2 ]] || die "client: unexpected argument '$1' (use --uri URI)"
        sans="${sans:+$sans,}URI:$2"
        shift 2
    done
    mint_leaf "$name" "clientAuth" "$sans"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
    -d | --dir)
        [[ $# -ge 2 ]] || usage
        dir="$2"
        shift 2
        ;;
    --days)
        [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--days needs a positive number"
        days="$2"
        shift 2
        ;;
    --expired)
        expired=1
        shift
        ;;
    -h | --help) usage ;;
    *) break ;;
    esac
done
[[ $# -ge 1 ]] || usage
command -v openssl >/dev/null || die "the openssl command is not installed (apt-get install openssl)"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

command="$1"
shift
case "$command" in
ca) mint_ca "$@" ;;
member | gateway)
    [[ $# -ge 1 ]] || usage
    server_leaf "$command" "$@"
    ;;
client)
    [[ $# -ge 1 ]] || usage
    client_leaf "$@"
    ;;
revoke)
    [[ $# -eq 1 ]] || usage
    need_ca
    check_name "$1"
    [[ -f "$dir/$1.pem" ]] || die "no certificate $dir/$1.pem"
    openssl ca -config "$dir/ca-db.cnf" -keyfile "$dir/ca.key" -cert "$dir/ca.pem" -revoke "$dir/$1.pem" \
        2>/dev/null
    write_crl
    echo "$dir/ca.crl"
    ;;
crl)
    need_ca
    write_crl
    echo "$dir/ca.crl"
    ;;
*) usage ;;
esac
