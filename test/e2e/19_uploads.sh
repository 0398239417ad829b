# Uploads (seed 000): a multipart file is stored by pgwa-http and described
# by the database; its signed URL serves it until it expires; the limits of
# each media type answer 413; a tampered or expired URL is refused; the
# expiry job ends uploads and the front's periodic sweep deletes their
# files; every upload leaves an audit row.
. "$(dirname "$0")/lib.sh"

KEY=$(new_tenant e2e-uploads)
TENANT=$(sql "SELECT id FROM pgwa.tenants WHERE name = 'e2e-uploads'")
DIR="$PGWA_E2E_WORK/uploads"
head -c 300000 /dev/urandom > "$E2E_TMP/photo.jpg"

up() { curl -s -o "$E2E_TMP/up.json" -w '%{http_code}' -H "X-API-Key: $KEY" "$@" "$PGWA_URL/api/whatsapp/uploads${Q:-}"; }

is "$(up -F "file=@$E2E_TMP/photo.jpg;type=image/jpeg")" 201 "an image is taken: 201"
ID=$(jq -r .uploadId "$E2E_TMP/up.json")
URL=$(jq -r .resourceUrl "$E2E_TMP/up.json")
ok "the URL is absolute, on the front ($URL)" grep -q "^$PGWA_URL/uploads/$ID?expires=" <<< "$URL"
URL=${URL#"$PGWA_URL"}
is "$(jq -r '.mediaType + " " + (.size|tostring) + " " + .fileName' "$E2E_TMP/up.json")" "image 300000 photo.jpg" \
	"with its media type, size and name"
ok "and an expiry a day from now" test "$(( $(date -d "$(jq -r .expiresAt "$E2E_TMP/up.json")" +%s) - $(date +%s) ))" -gt 86000
ok "the file is on the front's disk under its id" cmp -s "$E2E_TMP/photo.jpg" "$DIR/$ID"

code=$(curl -s -o "$E2E_TMP/back.jpg" -D "$E2E_TMP/back.h" -w '%{http_code}' "$PGWA_URL$URL")
is "$code" 200 "the signed URL serves it, without a key"
ok "byte for byte" cmp -s "$E2E_TMP/photo.jpg" "$E2E_TMP/back.jpg"
ok "as image/jpeg" grep -qi '^content-type: image/jpeg' "$E2E_TMP/back.h"
is "$(curl -s -o /dev/null -w '%{http_code}' "$PGWA_URL${URL%?}0")" 403 "a tampered signature: 403"
is "$(curl -s -o /dev/null -w '%{http_code}' "$PGWA_URL/uploads/$ID")" 403 "no signature: 403"
INST=$(new_instance "$KEY" uploads-e2e)
req POST "/v1/instances/$INST/messages" "{\"to\":\"5511975550201\",\"type\":\"image\",\"mediaUrl\":\"$PGWA_URL$URL\"}" "$KEY"
is "$STATUS" 202 "a message takes resourceUrl as its mediaUrl, as it is"

# limits: an image over 5 MiB is refused, the same bytes as a document are taken
head -c $((5 * 1048576 + 1)) /dev/zero > "$E2E_TMP/big.bin"
is "$(up -F "file=@$E2E_TMP/big.bin;type=image/png")" 413 "an image over 5 MiB: 413"
is "$(jq -r '.error.code + " " + .error.field' "$E2E_TMP/up.json")" "PAYLOAD_TOO_LARGE file" "naming the file"
ok "and nothing is left on disk" bash -c "[ \$(ls -A '$DIR' | grep -c '^\\.tmp') = 0 ]"
is "$(up -F "file=@$E2E_TMP/big.bin;type=application/pdf;filename=big.pdf")" 201 "as a document (100 MiB): 201"
is "$(jq -r .mediaType "$E2E_TMP/up.json")" document "a document"
DOC=$(jq -r .uploadId "$E2E_TMP/up.json")

# bad requests
is "$(up -H 'Content-Type: application/json' --data-binary '{"file":"x"}')" 400 "not multipart: 400"
is "$(jq -r .error.field "$E2E_TMP/up.json")" file "naming file"
is "$(up -F "other=@$E2E_TMP/photo.jpg")" 400 "no part named file: 400"
is "$(curl -s -o /dev/null -w '%{http_code}' -F "file=@$E2E_TMP/photo.jpg" "$PGWA_URL/api/whatsapp/uploads")" 401 "no key: 401"
is "$(Q='?expiresIn=10' up -F "file=@$E2E_TMP/photo.jpg;type=image/jpeg")" 400 "expiresIn under a minute: 400"

# expiry: the URL stops working, the job ends the upload, the front deletes the file
Q='?expiresIn=60' up -F "file=@$E2E_TMP/photo.jpg;type=image/jpeg" > /dev/null
SHORT=$(jq -r .uploadId "$E2E_TMP/up.json")
SURL=$(jq -r .resourceUrl "$E2E_TMP/up.json")
SURL=${SURL#"$PGWA_URL"}
sql "UPDATE pgwa.uploads SET expires_at = now() - interval '1 second' WHERE id IN ('$SHORT', '$ID')" > /dev/null
is "$(curl -s -o /dev/null -w '%{http_code}' "$PGWA_URL$URL")" 404 "an expired URL: 404"
is "$(sql "SELECT pgwa.expire_uploads()")" 2 "the expiry job ends both"
ok "the front's sweep deletes their files (PGWA_HTTP_UPLOAD_SWEEP, 1 s here)" \
	wait_for 5 bash -c "[ ! -e '$DIR/$ID' ] && [ ! -e '$DIR/$SHORT' ]"
ok "and only theirs" test -e "$DIR/$DOC"
is "$(sql "SELECT count(*) FROM pgwa.uploads WHERE id IN ('$ID', '$SHORT') AND file_removed")" 2 "recorded as removed"
is "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "X-API-Key: $KEY" "$PGWA_URL/uploads/sweep")" 404 \
	"the sweep is not a route for HTTP clients"
is "$(sql "SELECT count(*) FROM pgwa.audit_log WHERE tenant_id = '$TENANT' AND action = 'upload.created'")" 3 \
	"every upload has its audit row"
