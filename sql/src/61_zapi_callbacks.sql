-------------------------------------------------------------------------------
-- Client webhooks in Z-API's shapes, for the subscriptions the Z-API
-- dialect's update-webhook-* routes made (78_http_zapi.sql): the delivery
-- path (62_client_webhooks.sql) sends this body instead of pgwa's own.
--   messages.new (inbound)          ReceivedCallback
--   message.status, kind delivery   DeliveryCallback for "sent", else
--   message.status                  MessageStatusCallback (SENT, RECEIVED, READ, PLAYED)
--   instance.status                 ConnectedCallback / DisconnectedCallback
-- Another event keeps pgwa's body.
-------------------------------------------------------------------------------

-- Digits of a chat address (phone@s.whatsapp.net, +55 11 ..., a group id).
CREATE FUNCTION pgwa._zapi_phone(p_remote text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN p_remote LIKE '%@g.us' THEN regexp_replace(split_part(p_remote, '@', 1), '[^0-9-]', '', 'g') || '-group'
            ELSE nullif(regexp_replace(split_part(p_remote, '@', 1), '[^0-9]', '', 'g'), '') END;

-- The Z-API body of an event for a subscription of p_kind; NULL when Z-API
-- has no shape for it (the caller then sends pgwa's body).
CREATE FUNCTION pgwa._zapi_callback(p_kind text, p_event text, p_data jsonb, p_instance uuid,
                                    p_created timestamptz) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT CASE
		WHEN p_event = 'messages.new' AND p_data->>'direction' = 'inbound' THEN jsonb_strip_nulls(jsonb_build_object(
			'type', 'ReceivedCallback', 'instanceId', p_instance, 'messageId', p_data->>'brokerMessageId',
			'phone', pgwa._zapi_phone(p_data->>'remote'), 'fromMe', false, 'momment', m.ms,
			'status', 'RECEIVED', 'isGroup', coalesce((p_data->>'isGroup')::boolean, false),
			'isNewsletter', false, 'broadcast', false, 'waitingMessage', false, 'isEdit', false,
			'text', CASE WHEN p_data->>'type' = 'text' THEN jsonb_build_object('message', p_data->>'text') END,
			'messageType', CASE WHEN p_data->>'type' <> 'text' THEN p_data->>'type' END,
			'caption', CASE WHEN p_data->>'type' <> 'text' THEN p_data->>'text' END))
		WHEN p_event = 'message.status' AND p_kind = 'delivery' AND p_data->>'status' = 'sent' THEN jsonb_build_object(
			'type', 'DeliveryCallback', 'instanceId', p_instance, 'phone', pgwa._zapi_phone(p_data->>'recipient'),
			'zaapId', p_data->>'messageId', 'messageId', p_data->>'brokerMessageId', 'momment', m.ms)
		WHEN p_event = 'message.status' THEN jsonb_strip_nulls(jsonb_build_object(
			'type', 'MessageStatusCallback', 'instanceId', p_instance,
			'status', CASE p_data->>'status' WHEN 'sent' THEN 'SENT' WHEN 'delivered' THEN 'RECEIVED'
			                                 WHEN 'read' THEN 'READ' WHEN 'played' THEN 'PLAYED'
			                                 ELSE upper(p_data->>'status') END,
			'ids', CASE WHEN p_data ? 'brokerMessageId' THEN jsonb_build_array(p_data->>'brokerMessageId') END,
			'phone', pgwa._zapi_phone(p_data->>'recipient'),
			'momment', m.ms, 'phoneDevice', 0, 'isGroup', coalesce(p_data->>'recipient' LIKE '%@g.us', false),
			'error', p_data->'error'))
		WHEN p_event = 'instance.status' AND p_data->>'state' = 'connected' THEN jsonb_build_object(
			'type', 'ConnectedCallback', 'instanceId', p_instance, 'connected', true, 'momment', m.ms)
		WHEN p_event = 'instance.status' AND p_data->>'state' = 'disconnected' THEN jsonb_build_object(
			'type', 'DisconnectedCallback', 'instanceId', p_instance, 'disconnected', true, 'momment', m.ms,
			'error', coalesce(p_data->>'statusReason', 'Device has been disconnected'))
		END
	FROM (SELECT (extract(epoch FROM coalesce((p_data->>'timestamp')::timestamptz, p_created)) * 1000)::bigint AS ms) m
$$;
