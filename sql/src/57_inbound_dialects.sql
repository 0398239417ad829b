-------------------------------------------------------------------------------
-- Inbound dialects
--
-- Pure transformations of broker webhook bodies into inbound events; they read
-- no table. Each returns {"events": [...], "ignored": [{"reason", "ref"}...]}
-- where an event is one of
--   {"kind": "message", "envelope": <seed-000 MESSAGE_INBOUND envelope>}
--   {"kind": "status", "brokerMessageId", "status", "timestamp", "recipient",
--    "instanceId", "error"?}                 sent, delivered, read, played, failed
--   {"kind": "connection", "instanceId", "state", "statusReason"}
--   {"kind": "qrcode", "instanceId", "qrcode": {"base64"?, "code"?}}
--   {"kind": "echo", "instanceId", "brokerMessageId", "to", "message", "timestamp"}
--   {"kind": "history" | "state_sync" | "echoes", "phoneNumberId", "value"}
-- Malformed bodies are PW400 errors naming the path (entry[0].changes).
-------------------------------------------------------------------------------

-- Evolution API (v2, and v1 event names and shapes) webhook bodies.
CREATE FUNCTION pgwa.normalize_evolution(body jsonb) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'pgwa_normalize_evolution' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION pgwa.normalize_evolution(jsonb) IS
	'Evolution API webhook body -> {"events", "ignored"}: messages.upsert, send.message, messages.update, connection.update, qrcode.updated';

-- WhatsApp Cloud API webhook bodies: every entry and every change; also the
-- 360dialog envelope {"id", "event", "data"} and a bare change value.
CREATE FUNCTION pgwa.normalize_meta(body jsonb) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'pgwa_normalize_meta' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION pgwa.normalize_meta(jsonb) IS
	'WhatsApp Cloud API webhook body -> {"events", "ignored"}: messages, statuses, and the coexistence fields history, smb_app_state_sync, smb_message_echoes';

-- X-Hub-Signature-256 check: "sha256=" || hex HMAC-SHA256(app_secret, raw body),
-- compared in constant time. A NULL or empty argument is false.
CREATE FUNCTION pgwa.verify_meta_signature(raw_body text, signature_header text, app_secret text)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'pgwa_verify_meta_signature' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION pgwa.verify_meta_signature(text, text, text) IS
	'true when X-Hub-Signature-256 is the HMAC-SHA256 of the raw body keyed by the app secret';

-- The webhook subscription handshake: hub.challenge when hub.mode is
-- "subscribe" and hub.verify_token matches; PW403 otherwise.
CREATE FUNCTION pgwa.meta_verify_challenge(query jsonb, verify_token text) RETURNS text
	AS 'MODULE_PATHNAME', 'pgwa_meta_verify_challenge' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION pgwa.meta_verify_challenge(jsonb, text) IS
	'hub.challenge of a GET subscription request whose hub.verify_token matches; PW403 otherwise';
