#!/usr/bin/env bash
# TLS for the sidecar injector's admission webhook (docs/kubernetes.md, "TLS for the webhook").
#
# The API server calls the injector over HTTPS at
# daprlite-sidecar-injector.<namespace>.svc and trusts it only if its certificate chains to
# the webhook's caBundle. This script:
#   1. makes a private CA and a serving certificate for that name with openssl (ECDSA P-256);
#   2. stores them in the Secret daprlite-sidecar-injector-tls (tls.crt, tls.key, ca.crt),
#      which the injector Deployment mounts;
#   3. sets caBundle of the MutatingWebhookConfiguration daprlite-sidecar-injector to the CA.
# The CA key is thrown away once the certificate is signed: the next rotation makes a new CA.
#
# Run it after `kubectl apply -k deploy/kubernetes`, and again (with --force) to rotate
# before the certificate expires; the injector reloads the new files without a restart.
#
# Usage: scripts/k8s-certs.sh [--namespace NS] [--days N] [--force] [--out-dir DIR] [--dry-run]
#   --namespace NS  the control-plane namespace (default daprlite-system)
#   --days N        validity of the serving certificate (default 365)
#   --force         make new certificates even if the Secret exists (rotation)
#   --out-dir DIR   only write ca.crt, tls.crt and tls.key to DIR; no cluster is touched
#   --dry-run       print the Secret and the caBundle JSON patch instead of applying them
# Without --force an existing Secret is kept and only caBundle is set again from its ca.crt.
set -euo pipefail

namespace=daprlite-system
days=365
force=false
out_dir=""
dry_run=false
kubectl="${KUBECTL:-kubectl}"
secret=daprlite-sidecar-injector-tls
service=daprlite-sidecar-injector
webhook=daprlite-sidecar-injector

die() { echo "k8s-certs: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --namespace) [ $# -ge 2 ] || die "--namespace needs a value"; namespace="$2"; shift 2 ;;
    --days) [ $# -ge 2 ] || die "--days needs a value"; days="$2"; shift 2 ;;
    --force) force=true; shift ;;
    --out-dir) [ $# -ge 2 ] || die "--out-dir needs a value"; out_dir="$2"; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
case "$days" in
  ''|*[!0-9]*) die "--days must be a whole number of days, got '$days'" ;;
esac
[ "$days" -ge 1 ] || die "--days must be at least 1, got '$days'"
command -v openssl >/dev/null 2>&1 || die "openssl is needed (apt-get install openssl)"

b64() { base64 | tr -d '\n'; }

# Everything this script writes, the CA key included, lives here until it exits.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# make_certs DIR: writes DIR/ca.crt, DIR/tls.crt, DIR/tls.key (and nothing else).
make_certs() {
  local dir="$1" work="$scratch/work"
  rm -rf "$work" && mkdir -p "$work"
  openssl req -x509 -new -noenc -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$work/ca.key" -out "$work/ca.crt" -days "$((days + 1))" \
    -subj "/O=daprlite/CN=daprlite-sidecar-injector CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -new -noenc -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$work/tls.key" -out "$work/tls.csr" \
    -subj "/O=daprlite/CN=$service.$namespace.svc" 2>/dev/null
  cat >"$work/ext.cnf" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:$service.$namespace.svc, DNS:$service.$namespace.svc.cluster.local, DNS:$service.$namespace, DNS:$service
EOF
  openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 \
    -extfile "$work/ext.cnf" -out "$work/tls.crt" 2>/dev/null
  openssl verify -CAfile "$work/ca.crt" "$work/tls.crt" >/dev/null ||
    die "the new certificate does not verify against its CA"
  mkdir -p "$dir"
  cp "$work/ca.crt" "$work/tls.crt" "$dir/"
  (umask 077 && cp "$work/tls.key" "$dir/")
}

if [ -n "$out_dir" ]; then
  make_certs "$out_dir"
  echo "k8s-certs: wrote $out_dir/ca.crt, $out_dir/tls.crt and $out_dir/tls.key" >&2
  exit 0
fi

command -v "$kubectl" >/dev/null 2>&1 || die "kubectl is needed (or set KUBECTL)"
files="$scratch/files"

secret_exists=false
if ! $dry_run && ! $force &&
   "$kubectl" get secret "$secret" -n "$namespace" -o name >/dev/null 2>&1; then
  secret_exists=true
fi

if $secret_exists; then
  echo "k8s-certs: keeping the existing Secret $namespace/$secret (use --force to rotate)" >&2
  ca_bundle="$("$kubectl" get secret "$secret" -n "$namespace" -o 'jsonpath={.data.ca\.crt}')"
  [ -n "$ca_bundle" ] || die "Secret $namespace/$secret has no ca.crt; run again with --force"
else
  make_certs "$files"
  ca_bundle="$(b64 <"$files/ca.crt")"
  secret_yaml="$("$kubectl" create secret generic "$secret" -n "$namespace" \
    --type=kubernetes.io/tls \
    --from-file=tls.crt="$files/tls.crt" --from-file=tls.key="$files/tls.key" \
    --from-file=ca.crt="$files/ca.crt" --dry-run=client -o yaml)"
  if $dry_run; then
    printf '%s\n' "$secret_yaml"
  else
    # Server-side apply keeps the key out of a last-applied-configuration annotation.
    printf '%s\n' "$secret_yaml" |
      "$kubectl" apply --server-side --force-conflicts --field-manager=daprlite-k8s-certs -f - >&2
  fi
fi

patch="[{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"$ca_bundle\"}]"
if $dry_run; then
  echo "---"
  echo "# kubectl patch mutatingwebhookconfiguration $webhook --type=json -p:"
  printf '# %s\n' "$patch"
  exit 0
fi
"$kubectl" patch mutatingwebhookconfiguration "$webhook" --type=json -p "$patch" >&2
echo "k8s-certs: webhook $webhook trusts the CA of Secret $namespace/$secret" >&2
