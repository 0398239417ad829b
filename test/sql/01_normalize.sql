-- Outbound message validation: canonical form, and errors that name the field.
\set VERBOSITY default
SELECT pgwa.normalize_message('{"to":"+55 (11) 99999-9999","text":"Oi!","sessionId":"ignored"}');
SELECT pgwa.normalize_message('{"to":"5511999999999@c.us","type":"text","text":"x","previewUrl":true}');
SELECT pgwa.normalize_message('{"to":"120363025246125486@g.us","text":"group"}');
SELECT pgwa.normalize_message('{"to":"5511999999999","type":"image","mediaUrl":"https://x.test/a.jpg","caption":"c","mimeType":"image/jpeg"}');
SELECT pgwa.normalize_message('{"to":"5511999999999","type":"document","mediaUrl":"https://x.test/a.pdf","fileName":"a.pdf"}');
SELECT pgwa.normalize_message('{"to":"5511999999999","type":"location","location":{"latitude":-23.5,"longitude":-46.6,"name":"SP"}}');
SELECT pgwa.normalize_message('{"to":"5511999999999","type":"template","template":{"name":"hello","language":{"code":"pt_BR"}}}');
SELECT pgwa.normalize_message('{"to":"5511999999999","type":"reaction","reaction":{"messageId":"ABC","emoji":"👍"}}');
SELECT pgwa.normalize_message('{"to":"5511999999999","type":"contact","contact":{"name":"Ana","phone":"+55 11 98888-7777"}}');
SELECT pgwa.normalize_message('{"to":"5511999999999","type":"link","text":"see","linkUrl":"https://x.test"}');
SELECT pgwa.normalize_message('{"to":"5511999999999","type":"poll","poll":{"name":"Q?","options":["a",{"name":"b"}],"selectableCount":1}}');
SELECT pgwa.normalize_message('{"to":"5511999999999","text":"x","delayMessage":"5","delayTyping":2,"messageId":"k1","metadata":{"a":1}}');

-- Each of these fails with SQLSTATE PW400, the field in COLUMN_NAME.
CREATE FUNCTION pg_temp.err(m jsonb) RETURNS text LANGUAGE plpgsql AS $$
DECLARE s text; c text; t text;
BEGIN
	PERFORM pgwa.normalize_message(m);
	RETURN 'accepted';
EXCEPTION WHEN others THEN
	GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, c = COLUMN_NAME, t = MESSAGE_TEXT;
	RETURN s || ' [' || c || '] ' || t;
END $$;
SELECT pg_temp.err('[1,2]');
SELECT pg_temp.err('{"text":"no recipient"}');
SELECT pg_temp.err('{"to":"12345","text":"x"}');
SELECT pg_temp.err('{"to":"abc@s.whatsapp.net","text":"x"}');
SELECT pg_temp.err('{"to":"5511999999999@evil.com","text":"x"}');
SELECT pg_temp.err('{"to":"5511999999999","type":"sticker"}');
SELECT pg_temp.err('{"to":"5511999999999","text":""}');
SELECT pg_temp.err('{"to":"5511999999999","text":42}');
SELECT pg_temp.err(jsonb_build_object('to','5511999999999','text',repeat('x',4097)));
SELECT pg_temp.err('{"to":"5511999999999","type":"image"}');
SELECT pg_temp.err('{"to":"5511999999999","type":"video","mediaUrl":"ftp://x.test/v.mp4"}');
SELECT pg_temp.err('{"to":"5511999999999","type":"location","location":{"latitude":91,"longitude":0}}');
SELECT pg_temp.err('{"to":"5511999999999","type":"template","template":{"name":"t"}}');
SELECT pg_temp.err('{"to":"5511999999999","type":"poll","poll":{"name":"Q","options":["a","a"]}}');
SELECT pg_temp.err('{"to":"5511999999999","type":"poll","poll":{"name":"Q","options":["a"]}}');
SELECT pg_temp.err('{"to":"5511999999999","text":"x","delayMessage":16}');
SELECT pg_temp.err('{"to":"5511999999999","text":"x","delayMessage":1.5}');
SELECT pg_temp.err('{"to":"5511999999999","text":"x","metadata":[1]}');
