#!/bin/sh
# Certificates and the MCP token key for the plain-manifest install (the Helm chart does this itself).
#
#   kubectl apply -k deploy/injector && deploy/injector/gen-certs.sh mcp-mesh-system shop
#
# 1. Makes a CA and a serving certificate for Service mcp-mesh-injector.<NAMESPACE>.svc (openssl),
#    stores them in Secret <NAMESPACE>/mcp-mesh-webhook-tls (ca.crt, tls.crt, tls.key),
# 2. patches the CA into both webhooks' caBundle of MutatingWebhookConfiguration mcp-mesh-injector,
# 3. writes Secret mcp-mesh-token-key (key tokenKey, 48 random characters, the same in all) into
#    NAMESPACE and each MESH_NAMESPACE; an existing key in NAMESPACE is reused.
# Run it again to renew the certificate (the injector pods then need a restart).
# KUBECTL overrides the kubectl command; OUT_DIR keeps the generated files (default: a temp folder, removed).
set -eu
NAMESPACE=${1:-mcp-mesh-system}
[ $# -gt 0 ] && shift
KUBECTL=${KUBECTL:-kubectl}
SERVICE=mcp-mesh-injector
DAYS=${DAYS:-3650}
if [ -n "${OUT_DIR:-}" ]; then DIR=$OUT_DIR; mkdir -p "$DIR"; else DIR=$(mktemp -d); trap 'rm -rf "$DIR"' EXIT; fi

openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$DAYS" -subj "/CN=mcp-mesh-webhook-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$DIR/ca.key" -out "$DIR/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=$SERVICE.$NAMESPACE.svc" \
  -keyout "$DIR/tls.key" -out "$DIR/tls.csr" 2>/dev/null
cat > "$DIR/ext.cnf" <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:$SERVICE,DNS:$SERVICE.$NAMESPACE,DNS:$SERVICE.$NAMESPACE.svc,DNS:$SERVICE.$NAMESPACE.svc.cluster.local
EXT
openssl x509 -req -sha256 -days "$DAYS" -in "$DIR/tls.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" \
  -CAcreateserial -extfile "$DIR/ext.cnf" -out "$DIR/tls.crt" 2>/dev/null

$KUBECTL -n "$NAMESPACE" create secret generic mcp-mesh-webhook-tls --type=kubernetes.io/tls \
  --from-file=ca.crt="$DIR/ca.crt" --from-file=tls.crt="$DIR/tls.crt" --from-file=tls.key="$DIR/tls.key" \
  --dry-run=client -o yaml | $KUBECTL apply -f -

CA_BUNDLE=$(base64 < "$DIR/ca.crt" | tr -d '\n')
$KUBECTL patch mutatingwebhookconfiguration mcp-mesh-injector --type=json -p \
  "[{\"op\":\"replace\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"$CA_BUNDLE\"},{\"op\":\"replace\",\"path\":\"/webhooks/1/clientConfig/caBundle\",\"value\":\"$CA_BUNDLE\"}]"

TOKEN_KEY=$($KUBECTL -n "$NAMESPACE" get secret mcp-mesh-token-key -o jsonpath='{.data.tokenKey}' 2>/dev/null | base64 -d 2>/dev/null || true)
[ -n "$TOKEN_KEY" ] || TOKEN_KEY=$(openssl rand -base64 36 | tr -d '\n' | tr '+/' '-_')
for ns in "$NAMESPACE" "$@"; do
  $KUBECTL -n "$ns" create secret generic mcp-mesh-token-key --from-literal=tokenKey="$TOKEN_KEY" \
    --dry-run=client -o yaml | $KUBECTL apply -f -
done
echo "mcp-mesh: webhook certificate (CA in caBundle) and token key ready in $NAMESPACE${*:+; token key also in: $*}"
